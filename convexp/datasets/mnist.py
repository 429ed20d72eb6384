"""MNIST from its four standard IDX files (gzip-compressed or plain), verified by checksum: the ``mnist``
collection of :mod:`convexp.datasets.idx` (where the files are looked for, and how they are checked),
with the functions convexp's examples and tests have always called.
"""

from __future__ import annotations

from pathlib import Path

from convexp.datasets.dataset import Dataset
from convexp.datasets.idx import MNIST, IdxFile

__all__ = ["FILES", "import_files", "load", "locate"]

FILES: dict[str, IdxFile] = MNIST.files


def locate(data_dir: Path | None = None) -> dict[str, Path]:
    """Paths of the four files; raises :class:`DatasetError` naming where it looked and how to get them."""
    return MNIST.locate(data_dir)


def load(data_dir: Path | None = None) -> Dataset:
    """MNIST with pixels scaled to [0, 1], images shaped (N, 1, 28, 28)."""
    return MNIST.load(data_dir)


def import_files(source: Path, destination: Path | None = None) -> dict[str, Path]:
    """Copy the four MNIST files from ``source`` into the cache after verifying every checksum."""
    return MNIST.import_files(source, destination)
