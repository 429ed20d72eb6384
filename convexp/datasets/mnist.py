"""MNIST from its four standard IDX files (gzip-compressed or plain), verified by checksum: the ``mnist``
collection of :mod:`convexp.datasets.idx`, with the functions convexp has always offered for it.

Where the files are looked for (only the first of these that is set):

1. ``--data-dir DIR`` (the files in DIR/mnist, or in DIR),
2. the ``CONVEXP_DATA_DIR`` environment variable (same rule),
3. else the user cache, ``$XDG_CACHE_HOME/convexp/mnist`` (default ``~/.cache/convexp/mnist``),
   where ``convexp data import DIR`` puts them.

Every file is checked against the published MD5 of its decompressed bytes, so a
truncated, corrupt or different file is refused with its name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convexp.datasets import Dataset
from convexp.datasets.idx import DATA_DIR_ENV, MNIST, IdxFile, read_bytes

__all__ = ["DATA_DIR_ENV", "FILES", "HOW_TO_GET", "IdxFile", "cache_dir", "import_files", "load", "locate", "read_bytes"]

FILES: dict[str, IdxFile] = MNIST.files
HOW_TO_GET = MNIST.how_to_get


def cache_dir() -> Path:
    """Where ``convexp data import`` keeps MNIST for this user."""
    return MNIST.cache_dir()


def locate(data_dir: Path | None = None) -> dict[str, Path]:
    """Paths of the four files; raises :class:`DatasetError` naming where it looked and how to get them."""
    return MNIST.locate(data_dir)


def verify(key: str, path: Path, data: bytes) -> None:
    """Raise :class:`DatasetError` unless ``data`` (decompressed) is the published MNIST file ``key``."""
    MNIST.verify(key, path, data)


def parse_idx(key: str, path: Path, data: bytes) -> np.ndarray:
    """The array stored in an IDX file of unsigned bytes, after checking its header."""
    return MNIST.parse(key, path, data)


def read_verified(key: str, path: Path) -> np.ndarray:
    """Read, verify and parse one MNIST file."""
    return MNIST.read_verified(key, path)


def load(data_dir: Path | None = None) -> Dataset:
    """MNIST with pixels scaled to [0, 1], images shaped (N, 1, 28, 28)."""
    return MNIST.load(data_dir)


def import_files(source: Path, destination: Path | None = None) -> dict[str, Path]:
    """Copy the four MNIST files from ``source`` into the cache after verifying every checksum."""
    return MNIST.import_files(source, destination)
