"""Datasets convexp trains on, each as numpy arrays: images (N, C, H, W) float32 in [0, 1], labels int64.

``digits`` is scikit-learn's bundled 8x8 digits (no download, the embedded default);
``mnist``, ``fashion-mnist`` and ``kmnist`` are 60,000/10,000 28x28 images read from their four IDX files
(:mod:`convexp.datasets.idx`); ``cifar10`` is 50,000/10,000 32x32 colour photos from the python-version archive
(:mod:`convexp.datasets.cifar`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from convexp.datasets.dataset import Dataset, cache_root

__all__ = [
    "Dataset",
    "DatasetInfo",
    "DATASET_NAMES",
    "cache_root",
    "dataset_info",
    "load_dataset",
    "data_source",
    "downloadable",
    "fingerprint",
]
import hashlib

from convexp.errors import unknown_name


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a dataset without loading it: enough to validate an experiment."""

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    #: Size of the training split (what storage estimates count steps from).
    train_examples: int
    description: str
    load: Callable[[Path | None], Dataset]
    #: Raises :class:`~convexp.errors.DatasetError` saying how to get the data when it is missing.
    check_available: Callable[[Path | None], object]


def _digits_info() -> DatasetInfo:
    from convexp.datasets import digits  # a dataset's module only once that dataset is named

    return DatasetInfo(
        "digits",
        (1, 8, 8),
        10,
        1437,
        "scikit-learn's 8x8 handwritten digits (1,797 images; fixed 1,437/360 split)",
        digits.load,
        lambda data_dir: None,
    )


_IDX_DESCRIPTIONS = {
    "mnist": "MNIST 28x28 handwritten digits (60,000 train / 10,000 test, IDX files)",
    "fashion-mnist": "Fashion-MNIST 28x28 photos of clothing, 10 kinds (60,000 train / 10,000 test, IDX files)",
    "kmnist": "Kuzushiji-MNIST 28x28 cursive Japanese characters, 10 classes (60,000 train / 10,000 test, IDX files)",
}


def _idx_info(name: str) -> Callable[[], DatasetInfo]:
    def info() -> DatasetInfo:
        from convexp.datasets.idx import COLLECTIONS  # a dataset's module only once that dataset is named

        collection = COLLECTIONS[name]  # looked up when asked: the collection's files and checksums in one place
        channels_height_width = (1, *collection.files["train_images"].dims[1:])
        return DatasetInfo(
            name,
            channels_height_width,  # type: ignore[arg-type]
            len(collection.classes),
            collection.files["train_images"].dims[0],
            _IDX_DESCRIPTIONS[name],
            collection.load,
            collection.locate,
        )

    return info


def _cifar_info() -> DatasetInfo:
    from convexp.datasets.cifar import ARCHIVES  # a dataset's module only once that dataset is named

    archive = ARCHIVES["cifar10"]  # looked up when asked, like the IDX collections
    return DatasetInfo(
        "cifar10",
        (3, 32, 32),
        len(archive.classes),
        archive.train_examples,
        "CIFAR-10 32x32 colour photos, 10 classes (50,000 train / 10,000 test, the python-version archive)",
        archive.load,
        archive.locate,
    )


_REGISTRY: dict[str, Callable[[], DatasetInfo]] = {
    "digits": _digits_info,
    **{name: _idx_info(name) for name in _IDX_DESCRIPTIONS},
    "cifar10": _cifar_info,
}
DATASET_NAMES: tuple[str, ...] = tuple(_REGISTRY)
"""Every dataset name an experiment's ``dataset`` accepts."""


def downloadable(name: str):
    """What ``convexp data fetch/import`` gets for dataset ``name``: an IDX collection or an archive, each with
    ``fetch``, ``import_files``, ``title`` and ``cache_dir``; raises with the names there are."""
    from convexp.datasets.cifar import ARCHIVES  # a dataset's module only once that dataset is named
    from convexp.datasets.idx import COLLECTIONS  # a dataset's module only once that dataset is named

    sources = {**COLLECTIONS, **ARCHIVES}
    if name not in sources:
        raise unknown_name("downloadable dataset", name, list(sources))
    return sources[name]


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of dataset ``name`` (a named one, or ``npz:PATH``: your own arrays, see
    :mod:`convexp.datasets.arrays`); raises with the known names if there is none."""
    if name.startswith("npz:"):
        return _arrays_info(name)
    if name not in _REGISTRY:
        raise unknown_name("dataset", name, DATASET_NAMES)
    return _REGISTRY[name]()


def _arrays_info(name: str) -> DatasetInfo:
    from convexp.datasets import arrays  # a dataset's module only once that dataset is named

    file = arrays.file_of(name)
    stat = file.stat() if file.is_file() else None
    shape, classes, examples = _described(name, None if stat is None else (stat.st_mtime_ns, stat.st_size))
    return DatasetInfo(
        name,
        shape,
        classes,
        examples,
        f"your own arrays in {file}",
        lambda data_dir: arrays.load(name),
        lambda data_dir: {"file": file} if file.is_file() else arrays.load(name),
    )


@functools.lru_cache(maxsize=32)
def _described(name: str, version: tuple[int, int] | None) -> tuple[tuple[int, int, int], int, int]:
    """The file's shape, classes and size, read once per version of the file (``version``: its mtime and size)."""
    from convexp.datasets import arrays  # a dataset's module only once that dataset is named

    return arrays.describe(name)


def fingerprint(data: Dataset) -> str:
    """A digest of a dataset's arrays (BLAKE2b, 128 bits): equal only for the same images and labels in the same order."""

    import numpy as np  # numpy on first use: the store and the spec load without it

    digest = hashlib.blake2b(digest_size=16)
    for array in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(array.data)
    return digest.hexdigest()


def data_source(data: Dataset, data_dir: Path | None = None) -> dict[str, str | None]:
    """What a run records about its data: the folder its files were found in (None for a bundled dataset) and
    the :func:`fingerprint`."""
    found = dataset_info(data.name).check_available(data_dir)
    folder = None
    if isinstance(found, dict) and found:
        folder = str(Path(next(iter(found.values()))).resolve().parent)
    return {"dir": folder, "fingerprint": fingerprint(data)}


def load_dataset(name: str, data_dir: Path | None = None) -> Dataset:
    """Load dataset ``name``; ``data_dir`` is where to look for files of datasets that need them."""
    return dataset_info(name).load(data_dir)
