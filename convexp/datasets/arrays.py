"""Your own images as a dataset: a NumPy ``.npz`` file with the four arrays of a train/test split.

An experiment names it ``dataset: {path: my-images.npz}`` (a path relative to the experiments file), which
convexp records as ``npz:`` and the file's absolute path. The file holds ``train_images``, ``train_labels``,
``test_images`` and ``test_labels`` (or Keras's names ``x_train``, ``y_train``, ``x_test``, ``y_test``):

- images (N, H, W) for one channel, or (N, C, H, W) or (N, H, W, C) with C 1 or 3 (channels first when the
  second axis is 1 or 3); ``uint8`` (scaled to [0, 1] by 255) or floating point, finite;
- labels one whole number per image, from 0 to :data:`MAX_CLASSES` - 1; the classes are 0 to the largest label in
  either split.

Both splits hold at least one image. Each array's size is read from its header and checked against the memory
there is before it is read (a small compressed file may hold gigabytes of zeros).

Everything is checked when the experiment is validated, each problem one line naming the file and the array.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convexp import machine
from convexp.datasets.dataset import Dataset
from convexp.errors import DatasetError

if TYPE_CHECKING:
    import numpy as np

    from convexp.datasets.dataset import Dataset

PREFIX = "npz:"
KEYS = {"train_images": "x_train", "train_labels": "y_train", "test_images": "x_test", "test_labels": "y_test"}
#: The longest dataset name a run records (``runs.dataset``): ``npz:`` and the file's path.
MAX_NAME = 100
#: The most classes a dataset may have (ImageNet-21k has 21,841): a larger label is a mistake, not a class.
MAX_CLASSES = 100_000


def dataset_name(path: str | Path, relative_to: Path | None = None) -> str:
    """The dataset name an experiment's ``{path: ...}`` stands for: ``npz:`` and the absolute path."""
    file = Path(path).expanduser()
    if not file.is_absolute() and relative_to is not None:
        file = relative_to / file
    name = PREFIX + str(file.resolve())
    if len(name) > MAX_NAME:
        raise DatasetError(
            f"{file}: a dataset path of at most {MAX_NAME - len(PREFIX)} characters is recorded with a run; move the file"
        )
    return name


def file_of(name: str) -> Path:
    """The file a ``npz:`` dataset name stands for."""
    return Path(name[len(PREFIX) :])


def _key(file: Path, present: list[str], key: str) -> str:
    if key in present:
        return key
    if KEYS[key] in present:
        return KEYS[key]
    raise DatasetError(f"{file}: holds no '{key}' (or '{KEYS[key]}') array; it holds {', '.join(sorted(present)) or 'none'}")


def _chw(file: Path, key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Where each axis of an images array of ``shape`` goes in (N, C, H, W): the transposition to apply."""
    if len(shape) == 3:
        return (0, 1, 2)
    if len(shape) == 4 and shape[1] in (1, 3):
        return (0, 1, 2, 3)
    if len(shape) == 4 and shape[3] in (1, 3):
        return (0, 3, 1, 2)
    raise DatasetError(
        f"{file}: '{key}' has shape {list(shape)}; images are (N, H, W), (N, C, H, W) or (N, H, W, C) with C 1 or 3"
    )


def describe(name: str) -> tuple[tuple[int, int, int], int, int]:
    """(input shape (C, H, W), classes, training examples) of a ``npz:`` dataset, every array read and checked
    (so that a bad file is refused when the experiment is validated, before anything runs)."""
    data = load(name)
    return data.train_images.shape[1:], data.num_classes, len(data.train_labels)  # type: ignore[return-value]


def _classes(file: Path, train: np.ndarray, test: np.ndarray) -> int:
    classes = int(max(train.max(initial=0), test.max(initial=0))) + 1
    if classes < 2:
        raise DatasetError(f"{file}: every label is 0; a classifier needs two classes or more")
    return classes


def _images(file: Path, key: str, array: np.ndarray) -> np.ndarray:
    import numpy as np  # numpy on first use: the store and the spec load without it

    order = _chw(file, key, array.shape)
    array = array[:, None] if len(order) == 3 else array.transpose(order)
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array, dtype=np.float32) / np.float32(255.0)
    if not np.issubdtype(array.dtype, np.floating):
        raise DatasetError(f"{file}: '{key}' holds {array.dtype}; images are uint8 (0-255) or floating point")
    images = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(images).all():
        raise DatasetError(f"{file}: '{key}' holds NaN or infinity")
    return images


def _labels(file: Path, key: str, array: np.ndarray, count: int) -> np.ndarray:
    import numpy as np  # numpy on first use: the store and the spec load without it

    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise DatasetError(
            f"{file}: '{key}' is {array.dtype} of shape {list(array.shape)}; labels are one whole number per image"
        )
    if len(array) != count:
        raise DatasetError(f"{file}: '{key}' has {len(array)} labels for {count} images")
    if len(array) and array.min() < 0:
        raise DatasetError(f"{file}: '{key}' holds the label {int(array.min())}; labels count from 0")
    if len(array) and array.max() >= MAX_CLASSES:  # checked in its own type: int64 would wrap a large uint64
        raise DatasetError(f"{file}: '{key}' holds the label {int(array.max())}; labels are below {MAX_CLASSES:,}")
    return array.astype(np.int64)


def _check_sizes(file: Path, arrays: Any, names: list[str]) -> None:
    """Refuse arrays whose headers declare more than the memory there is (read as float32, as training holds them),
    or more bytes than their zip entry holds, before any is read."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    total = 0
    for name in names:
        member = arrays.zip.getinfo(name + ".npy")
        with arrays.zip.open(member) as stream:
            version = np.lib.format.read_magic(stream)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(stream)
        count = math.prod(shape)
        if count * dtype.itemsize > member.file_size:
            raise DatasetError(f"{file}: '{name}' declares {list(shape)} {dtype}, more than its {member.file_size:,} bytes")
        total += count * max(dtype.itemsize, 4) * 2  # as read, and as the float32 copy training uses
    available = machine.available_memory()  # looked up on the module: a test stands in a small machine
    if available is not None and total > available:
        raise DatasetError(
            f"{file}: its arrays need about {total / 2**30:.1f} GiB to read; this machine has {available / 2**30:.1f} GiB free"
        )


def load(name: str) -> Dataset:
    """The dataset in a ``npz:`` file, each array checked (see the module's docs)."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    file = file_of(name)
    if not file.is_file():
        raise DatasetError(f"{file}: no such file (the experiment's dataset path)")
    try:
        loaded = np.load(file, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DatasetError(
                f"{file}: a .npy file of one array; convexp reads a .npz of four arrays "
                "(np.savez(path, train_images=..., train_labels=..., test_images=..., test_labels=...))"
            )
        with loaded as arrays:
            keys = {key: _key(file, arrays.files, key) for key in KEYS}
            _check_sizes(file, arrays, list(keys.values()))
            train = _images(file, keys["train_images"], arrays[keys["train_images"]])
            test = _images(file, keys["test_images"], arrays[keys["test_images"]])
            train_labels = _labels(file, keys["train_labels"], arrays[keys["train_labels"]], len(train))
            test_labels = _labels(file, keys["test_labels"], arrays[keys["test_labels"]], len(test))
    except (OSError, zipfile.BadZipFile, ValueError) as exc:  # not an .npz, or an array that needs pickle
        raise DatasetError(f"{file}: cannot be read as a NumPy .npz file ({exc})") from None
    if train.shape[1:] != test.shape[1:]:
        raise DatasetError(f"{file}: train images are {list(train.shape[1:])} (C, H, W), test images {list(test.shape[1:])}")
    for key, images in (("train_images", train), ("test_images", test)):
        if not len(images):  # an empty test split would fail only after a whole epoch
            raise DatasetError(f"{file}: '{keys[key]}' holds no images; each split needs at least one")
    return Dataset(name, train, train_labels, test, test_labels, _classes(file, train_labels, test_labels))
