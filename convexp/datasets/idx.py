"""Datasets in the IDX format of MNIST: MNIST, Fashion-MNIST and Kuzushiji-MNIST, each four files (train and test
images and labels), read from a folder and verified against the published checksums.

Where a collection's files are looked for (only the first of these that is set):

1. ``--data-dir DIR`` (the files in DIR/NAME, or in DIR itself),
2. the ``CONVEXP_DATA_DIR`` environment variable (same rule),
3. else the user cache, ``$XDG_CACHE_HOME/convexp/NAME`` (default ``~/.cache/convexp/NAME``), where
   ``convexp data fetch NAME`` and ``convexp data import DIR --dataset NAME`` put them.

MNIST's files are checked against the MD5 and size of their decompressed bytes, so plain and gzip files are
both checked. Fashion-MNIST and KMNIST publish the MD5 of their ``.gz`` files only (as torchvision and the
datasets' own pages list them): their files are read as published, gzip, and a plain file is refused rather
than read unchecked. A truncated, corrupt or different file is refused, naming it.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convexp.datasets.dataset import Dataset, cache_root
from convexp.datasets.download import Progress, fetch_verified
from convexp.errors import DatasetError

DATA_DIR_ENV = "CONVEXP_DATA_DIR"
KEYS = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True)
class IdxFile:
    """One file of a collection: its name, what the IDX header must say, and the published checksums known for it:
    the MD5 and size of its decompressed bytes (``md5``, ``size``), or the MD5 of the published ``.gz`` (``gz_md5``)."""

    filename: str
    magic: int
    dims: tuple[int, ...]
    md5: str | None = None
    size: int | None = None
    gz_md5: str | None = None

    @property
    def expected_bytes(self) -> int:
        """The size of the file's decompressed bytes, from its header's dims: the most a read of it may allocate."""
        return 4 + 4 * len(self.dims) + math.prod(self.dims)

    @property
    def most_stored_bytes(self) -> int:
        """The most bytes its stored copy (plain, or gzip, which adds at most a little to data it cannot shrink) can
        have: a larger file is refused before it is read."""
        return self.expected_bytes + self.expected_bytes // 100 + 4096


@dataclass(frozen=True)
class IdxCollection:
    """An IDX dataset: its name, what it is, its four files and the mirrors it is published on."""

    name: str
    title: str
    files: dict[str, IdxFile]
    mirrors: tuple[str, ...]
    classes: tuple[str, ...]

    @property
    def how_to_get(self) -> str:
        names = ", ".join(f.filename + ".gz" for f in self.files.values())
        return (
            f"run `convexp data fetch {self.name}`, or get the four IDX files ({names}) and run "
            f"`convexp data import DIR --dataset {self.name}`, or pass --data-dir DIR / set {DATA_DIR_ENV}"
        )

    def cache_dir(self) -> Path:
        """Where ``convexp data fetch/import`` keep this collection for this user."""
        return cache_root() / self.name

    def find_in(self, directory: Path) -> dict[str, Path] | None:
        """The four files in ``directory``/NAME or ``directory`` (the first that holds all four), or None."""
        for candidate in (directory / self.name, directory):
            found = {}
            for key, idx in self.files.items():
                for name in (idx.filename + ".gz", idx.filename):
                    if (candidate / name).is_file():
                        found[key] = candidate / name
                        break
            if len(found) == len(self.files):
                return found
        return None

    def locate(self, data_dir: Path | None = None) -> dict[str, Path]:
        """Paths of the four files; raises :class:`DatasetError` naming where it looked and how to get them."""
        directory, why = where_to_look(data_dir, self.cache_dir())
        found = self.find_in(directory)
        if found:
            return found
        raise DatasetError(f"{self.title} not found in {directory} ({why}): {self.how_to_get}")

    def verify(self, key: str, path: Path, raw: bytes) -> bytes:
        """The decompressed bytes of file ``key`` read from ``path`` (its bytes as stored: ``raw``), once they are
        shown to be the published file; raises :class:`DatasetError` naming the file otherwise."""
        idx = self.files[key]
        packed = raw[:2] == b"\x1f\x8b"
        if idx.gz_md5 is not None and idx.md5 is None:
            if not packed:
                raise DatasetError(
                    f"{path}: {self.title} publishes checksums of its .gz files only; "
                    f"use the published {idx.filename}.gz so that it can be checked"
                )
            digest = hashlib.md5(raw).hexdigest()
            if digest != idx.gz_md5:
                raise DatasetError(f"{path}: MD5 is {digest}, expected {idx.gz_md5} (checksum mismatch)")
        data = _decompress(path, raw, idx.expected_bytes) if packed else raw
        if idx.md5 is not None:
            if idx.size is not None and len(data) != idx.size:
                raise DatasetError(
                    f"{path}: {len(data)} bytes after decompression, expected {idx.size} for {idx.filename} "
                    f"(truncated or not the standard {self.title} file)"
                )
            digest = hashlib.md5(data).hexdigest()
            if digest != idx.md5:
                raise DatasetError(f"{path}: MD5 of the decompressed data is {digest}, expected {idx.md5} (checksum mismatch)")
        return data

    def parse(self, key: str, path: Path, data: bytes) -> np.ndarray:
        """The array stored in an IDX file of unsigned bytes, after checking its header."""
        idx = self.files[key]
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

    def read_verified(self, key: str, path: Path) -> np.ndarray:
        """Read, verify and parse one file."""
        return self.parse(key, path, self.verify(key, path, read_raw(path, self.files[key].most_stored_bytes)))

    def load(self, data_dir: Path | None = None) -> Dataset:
        """The collection with pixels scaled to [0, 1], images shaped (N, 1, 28, 28)."""
        paths = self.locate(data_dir)
        arrays = {key: self.read_verified(key, path) for key, path in paths.items()}

        def images(key: str) -> np.ndarray:
            return (arrays[key].astype(np.float32) / np.float32(255.0))[:, None, :, :]

        labels = {key: arrays[key].astype(np.int64) for key in ("train_labels", "test_labels")}
        for key, values in labels.items():
            if values.size and not 0 <= values.min() <= values.max() < len(self.classes):
                raise DatasetError(
                    f"{paths[key]}: labels from {values.min()} to {values.max()}; {self.title} has {len(self.classes)} classes"
                )
        return Dataset(
            self.name,
            images("train_images"),
            labels["train_labels"],
            images("test_images"),
            labels["test_labels"],
            len(self.classes),
        )

    def fetch(
        self,
        mirrors: list[str] | None = None,
        destination: Path | None = None,
        *,
        attempts: int = 3,
        timeout: float = 30.0,
        progress=None,
    ) -> dict[str, Path]:
        """Download the four files into the cache (or ``destination``), each verified (:func:`fetch`)."""
        return fetch(self, mirrors, destination, attempts=attempts, timeout=timeout, progress=progress)

    def import_files(self, source: Path, destination: Path | None = None) -> dict[str, Path]:
        """Copy the four files from ``source`` into the cache after verifying every checksum.

        Nothing is written unless all four verify; each file is written to a temporary name and renamed into
        place, so a failure never leaves a half-written file."""
        found = self.find_in(Path(source))
        if not found:
            names = ", ".join(f.filename + "[.gz]" for f in self.files.values())
            raise DatasetError(f"{source}: does not hold the four {self.title} files ({names})")
        for key, path in found.items():
            self.verify(key, path, read_raw(path, self.files[key].most_stored_bytes))
        destination = Path(destination) if destination else self.cache_dir()
        destination.mkdir(parents=True, exist_ok=True)
        written = {}
        for key, path in found.items():
            target = destination / path.name
            for stale in (destination / self.files[key].filename, destination / (self.files[key].filename + ".gz")):
                if stale != target and stale.exists():
                    stale.unlink()
            copy_into_place(path, target)
            written[key] = target
        return written


def copy_into_place(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` through a temporary file beside it, synced and then renamed, so that ``target``
    is either the whole copy or untouched."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def where_to_look(data_dir: Path | None, cache_dir: Path) -> tuple[Path, str]:
    """The folder a dataset's files are looked for in, and why there: ``--data-dir``, else ``$CONVEXP_DATA_DIR``,
    else the dataset's folder in the user cache."""
    if data_dir is not None:
        return Path(data_dir), "--data-dir"
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]), DATA_DIR_ENV
    return cache_dir, "the convexp cache"


def read_raw(path: Path, most_bytes: int | None = None) -> bytes:
    """A file's bytes as stored; :class:`DatasetError` naming it if it cannot be read, or (before anything is read)
    if it is larger than ``most_bytes``."""
    try:
        if most_bytes is not None and (size := path.stat().st_size) > most_bytes:
            raise DatasetError(f"{path}: {size:,} bytes, more than the {most_bytes:,} the file it stands for can have")
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _decompress(path: Path, raw: bytes, expected: int) -> bytes:
    """The gzip data ``raw`` decompressed, refused as soon as it would exceed ``expected`` bytes (a small file may
    inflate to gigabytes: nothing beyond what the file should hold is allocated)."""
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflate.decompress(raw, expected + 1)
    except zlib.error as exc:
        raise DatasetError(f"{path}: cannot be read as gzip or IDX data ({exc})") from None
    if len(data) > expected or inflate.unconsumed_tail:
        raise DatasetError(f"{path}: decompresses to more than the {expected:,} bytes the file it stands for has")
    if not inflate.eof:
        raise DatasetError(f"{path}: cannot be read as gzip or IDX data (the compressed data ends early: truncated)")
    return data


def _files(sizes: dict[str, tuple[int, ...]], gz_md5: dict[str, str]) -> dict[str, IdxFile]:
    """The four files of a collection published as .gz files with these MD5s."""
    names = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte"}
    names |= {"test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
    return {
        key: IdxFile(names[key], 2051 if key.endswith("images") else 2049, dims, gz_md5=gz_md5[key])
        for key, dims in sizes.items()
    }


_SIZES = {"train_images": (60000, 28, 28), "train_labels": (60000,), "test_images": (10000, 28, 28), "test_labels": (10000,)}
_DIGITS = tuple(str(d) for d in range(10))

MNIST = IdxCollection(
    "mnist",
    "MNIST",
    {
        "train_images": IdxFile("train-images-idx3-ubyte", 2051, (60000, 28, 28), "6bbc9ace898e44ae57da46a324031adb", 47040016),
        "train_labels": IdxFile("train-labels-idx1-ubyte", 2049, (60000,), "a25bea736e30d166cdddb491f175f624", 60008),
        "test_images": IdxFile("t10k-images-idx3-ubyte", 2051, (10000, 28, 28), "2646ac647ad5339dbf082846283269ea", 7840016),
        "test_labels": IdxFile("t10k-labels-idx1-ubyte", 2049, (10000,), "27ae3e4e09519cfbb04c329615203637", 10008),
    },
    # the original yann.lecun.com site now refuses downloads
    ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    _DIGITS,
)
#: Zalando's Fashion-MNIST (MIT licence): the MD5s of its .gz files as its repository and torchvision publish them.
FASHION_MNIST = IdxCollection(
    "fashion-mnist",
    "Fashion-MNIST",
    _files(
        _SIZES,
        gz_md5={
            "train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
            "test_images": "bef4ecab320f06d8554ea6380940ec79",
            "test_labels": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    (
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
)
#: ROIS-CODH's Kuzushiji-MNIST (CC BY-SA 4.0): the MD5s of its .gz files as its page and torchvision publish them.
KMNIST = IdxCollection(
    "kmnist",
    "Kuzushiji-MNIST",
    _files(
        _SIZES,
        gz_md5={
            "train_images": "bdb82020997e1d708af4cf47b453dcf7",
            "train_labels": "e144d726b3acfaa3e44228e80efcd344",
            "test_images": "5c965bf0a639b31b8f53240b1b52f4d7",
            "test_labels": "7320c461ea6c1c855c0b718fb2a4b134",
        },
    ),
    ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
    ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
)
#: Every IDX collection by name (what ``convexp data fetch`` and experiments' ``dataset`` name).
COLLECTIONS: dict[str, IdxCollection] = {c.name: c for c in (MNIST, FASHION_MNIST, KMNIST)}


def fetch_file(
    key: str,
    mirrors: list[str],
    destination: Path,
    *,
    attempts: int = 3,
    timeout: float = 30.0,
    progress: Progress | None = None,
    wait: float = 1.0,
    collection: IdxCollection | None = None,
) -> Path:
    """Download one file of ``collection`` (MNIST unless given: ``train_images`` ...) into ``destination``, verified;
    raises DatasetError."""
    collection = collection or MNIST
    idx = collection.files[key]
    return fetch_verified(
        idx.filename + ".gz",
        lambda path: collection.verify(key, path, read_raw(path, idx.most_stored_bytes)),
        mirrors,
        destination,
        attempts=attempts,
        timeout=timeout,
        progress=progress,
        wait=wait,
        most_bytes=idx.most_stored_bytes,
    )


def fetch(
    collection: IdxCollection,
    mirrors: list[str] | None = None,
    destination: Path | None = None,
    *,
    attempts: int = 3,
    timeout: float = 30.0,
    progress: Progress | None = None,
) -> dict[str, Path]:
    """Download the four files of ``collection`` into the cache (or ``destination``), each verified by its MD5;
    ``mirrors`` default to the collection's own."""
    destination = Path(destination) if destination else collection.cache_dir()
    destination.mkdir(parents=True, exist_ok=True)
    chosen = list(mirrors or collection.mirrors)
    return {
        key: fetch_file(key, chosen, destination, attempts=attempts, timeout=timeout, progress=progress, collection=collection)
        for key in collection.files
    }
