"""Downloading a dataset's file: from a list of mirrors, resuming dropped transfers, verifying what arrives.

A file is fetched from the first mirror that delivers it whole and that the dataset's own check accepts (the
published MD5: :meth:`convexp.datasets.idx.IdxCollection.fetch`, :meth:`convexp.datasets.cifar.CifarArchive.fetch`).
A transfer that breaks off is resumed with an HTTP Range request (or restarted where the server ignores ranges), a few times, before the next
mirror is tried. Bytes land in a ``.partial`` file beside the cache and are renamed into place
only once verified; whatever fails leaves no partial file behind.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from convexp.errors import DatasetError

CHUNK = 1 << 16

#: progress(file name, bytes so far, total bytes or None)
Progress = Callable[[str, int, "int | None"], None]


class TooLarge(Exception):
    """A mirror sent (or announced) more bytes than the file it stands for has."""


def _transfer(url: str, partial: Path, timeout: float, progress: Progress | None, most_bytes: int | None = None) -> None:
    """Append the rest of ``url`` to ``partial`` (resuming from its size when the server allows), stopping with
    :class:`TooLarge` past ``most_bytes`` (a mirror that streams without end is not read without end)."""
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if have and response.status != 206:  # the server sent everything again
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        if most_bytes is not None and total is not None and total > most_bytes:
            raise TooLarge(f"it announced {total:,} bytes; the file has at most {most_bytes:,}")
        with open(partial, "ab" if have else "wb") as out:
            done = have
            while chunk := response.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
                if most_bytes is not None and done > most_bytes:
                    raise TooLarge(f"it sent more than the {most_bytes:,} bytes the file has; stopped there")
                if progress:
                    progress(partial.name.removesuffix(".partial"), done, total)
        if total is not None and done < total:
            raise ConnectionError(f"{url}: connection closed after {done} of {total} bytes")


def _download(
    url: str, partial: Path, attempts: int, timeout: float, progress: Progress | None, wait: float, most_bytes: int | None = None
) -> str | None:
    """Fetch ``url`` into ``partial``, resuming after a broken transfer; None on success, else why it failed."""
    error = "no attempt"
    for attempt in range(1, attempts + 1):
        try:
            _transfer(url, partial, timeout, progress, most_bytes)
            return None
        except TooLarge as exc:  # not this mirror's file: no point in retrying
            return str(exc)
        except urllib.error.HTTPError as exc:
            if exc.code in (403, 404, 410):  # this mirror does not have it: no point in retrying
                return f"HTTP {exc.code}"
            error = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out, cut short
            error = str(getattr(exc, "reason", exc))
        if attempt < attempts:
            time.sleep(wait * attempt)
    return error


def fetch_verified(
    name: str,
    verify: Callable[[Path], object],
    mirrors: list[str],
    destination: Path,
    *,
    attempts: int = 3,
    timeout: float = 30.0,
    progress: Progress | None = None,
    wait: float = 1.0,
    most_bytes: int | None = None,
) -> Path:
    """Download file ``name`` into ``destination`` from the first mirror whose copy ``verify`` (raising
    :class:`DatasetError` on a wrong file) accepts, reading at most ``most_bytes`` from each; a copy already there
    and verified is kept. Raises DatasetError naming every mirror's failure; no partial file is left behind, also
    when the download is stopped (Ctrl-C)."""
    target, partial = destination / name, destination / f".{name}.partial"
    if target.exists():
        try:
            verify(target)
            return target  # already here and correct
        except DatasetError:
            pass
    failures = []
    try:
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            partial.unlink(missing_ok=True)
            error = _download(url, partial, attempts, timeout, progress, wait, most_bytes)
            if error is None:
                try:
                    verify(partial)
                    partial.replace(target)
                    return target
                except DatasetError as exc:
                    error = str(exc).split(": ", 1)[-1]
            failures.append(f"{url}: {error}")
    finally:
        partial.unlink(missing_ok=True)
    raise DatasetError(f"could not download {name}: " + "; ".join(failures))
