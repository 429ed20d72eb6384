"""MNIST from its four standard IDX files (gzip-compressed or plain), verified by checksum.

Where the files are looked for (only the first of these that is set):

1. ``--data-dir DIR`` (the files in DIR, or in DIR/mnist),
2. the ``CONVEXP_DATA_DIR`` environment variable (same rule),
3. else the user cache, ``$XDG_CACHE_HOME/convexp/mnist`` (default ``~/.cache/convexp/mnist``),
   where ``convexp data import DIR`` puts them.

Every file is checked against the published MD5 of its decompressed bytes, so a
truncated, corrupt or different file is refused with its name.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convexp.datasets import Dataset, cache_root
from convexp.errors import DatasetError

DATA_DIR_ENV = "CONVEXP_DATA_DIR"


@dataclass(frozen=True)
class IdxFile:
    """One of the four MNIST files, with the published MD5 and size of its decompressed bytes."""

    filename: str
    md5: str
    size: int
    magic: int
    dims: tuple[int, ...]


FILES: dict[str, IdxFile] = {
    "train_images": IdxFile("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb", 47040016, 2051, (60000, 28, 28)),
    "train_labels": IdxFile("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624", 60008, 2049, (60000,)),
    "test_images": IdxFile("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea", 7840016, 2051, (10000, 28, 28)),
    "test_labels": IdxFile("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637", 10008, 2049, (10000,)),
}

HOW_TO_GET = (
    "run `convexp data fetch mnist`, or get the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) and run `convexp data import DIR`, "
    f"or pass --data-dir DIR / set {DATA_DIR_ENV}"
)


def cache_dir() -> Path:
    """Where ``convexp data import`` keeps MNIST for this user."""
    return cache_root() / "mnist"


def _find_in(directory: Path) -> dict[str, Path] | None:
    for candidate in (directory, directory / "mnist"):
        found = {}
        for key, idx in FILES.items():
            for name in (idx.filename + ".gz", idx.filename):
                if (candidate / name).is_file():
                    found[key] = candidate / name
                    break
        if len(found) == len(FILES):
            return found
    return None


def locate(data_dir: Path | None = None) -> dict[str, Path]:
    """Paths of the four files; raises :class:`DatasetError` naming where it looked and how to get them."""
    if data_dir is not None:
        directory, why = Path(data_dir), "--data-dir"
    elif os.environ.get(DATA_DIR_ENV):
        directory, why = Path(os.environ[DATA_DIR_ENV]), DATA_DIR_ENV
    else:
        directory, why = cache_dir(), "the convexp cache"
    found = _find_in(directory)
    if found:
        return found
    raise DatasetError(f"MNIST not found in {directory} ({why}): {HOW_TO_GET}")


def read_bytes(path: Path) -> bytes:
    """The decompressed bytes of an IDX file, gzip or plain; raises :class:`DatasetError` if corrupt."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: cannot be read as gzip or IDX data ({exc})") from None


def verify(key: str, path: Path, data: bytes) -> None:
    """Raise :class:`DatasetError` unless ``data`` is the published MNIST file ``key``."""
    idx = FILES[key]
    if len(data) != idx.size:
        raise DatasetError(
            f"{path}: {len(data)} bytes after decompression, expected {idx.size} for {idx.filename} "
            "(truncated or not the standard MNIST file)"
        )
    digest = hashlib.md5(data).hexdigest()
    if digest != idx.md5:
        raise DatasetError(f"{path}: MD5 of the decompressed data is {digest}, expected {idx.md5} (checksum mismatch)")


def parse_idx(key: str, path: Path, data: bytes) -> np.ndarray:
    """The array stored in an IDX file of unsigned bytes, after checking its header."""
    idx = FILES[key]
    header = 4 + 4 * len(idx.dims)
    if len(data) < header:
        raise DatasetError(f"{path}: truncated IDX file ({len(data)} bytes, shorter than its header)")
    magic = int.from_bytes(data[:4], "big")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(len(idx.dims)))
    if magic != idx.magic or dims != idx.dims:
        raise DatasetError(f"{path}: IDX header says magic {magic}, dims {dims}; expected {idx.magic}, {idx.dims}")
    body = np.frombuffer(data, dtype=np.uint8, offset=header)
    if body.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: truncated IDX file ({body.size} values, header says {int(np.prod(dims))})")
    return body.reshape(dims)


def read_verified(key: str, path: Path) -> np.ndarray:
    """Read, verify and parse one MNIST file."""
    data = read_bytes(path)
    verify(key, path, data)
    return parse_idx(key, path, data)


def load(data_dir: Path | None = None) -> Dataset:
    """MNIST with pixels scaled to [0, 1], images shaped (N, 1, 28, 28)."""
    paths = locate(data_dir)
    arrays = {key: read_verified(key, path) for key, path in paths.items()}

    def images(key: str) -> np.ndarray:
        return (arrays[key].astype(np.float32) / np.float32(255.0))[:, None, :, :]

    return Dataset(
        "mnist",
        images("train_images"),
        arrays["train_labels"].astype(np.int64),
        images("test_images"),
        arrays["test_labels"].astype(np.int64),
        10,
    )


def import_files(source: Path, destination: Path | None = None) -> dict[str, Path]:
    """Copy the four MNIST files from ``source`` into the cache after verifying every checksum.

    Nothing is written unless all four verify; each file is written to a temporary
    name and renamed into place, so a failure never leaves a half-written file.
    """
    found = _find_in(Path(source))
    if not found:
        names = ", ".join(f.filename + "[.gz]" for f in FILES.values())
        raise DatasetError(f"{source}: does not hold the four MNIST files ({names})")
    for key, path in found.items():
        verify(key, path, read_bytes(path))
    destination = Path(destination) if destination else cache_dir()
    destination.mkdir(parents=True, exist_ok=True)
    written = {}
    for key, path in found.items():
        target = destination / path.name
        for stale in (destination / FILES[key].filename, destination / (FILES[key].filename + ".gz")):
            if stale != target and stale.exists():
                stale.unlink()
        fd, tmp = tempfile.mkstemp(dir=destination, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                shutil.copyfileobj(src, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written[key] = target
    return written
