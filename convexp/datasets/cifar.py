"""CIFAR-10: 60,000 32x32 colour photos in 10 classes, from the "python version" archive its authors publish
(``cifar-10-python.tar.gz``: five training batches and a test batch, each a pickled dict of a (10000, 3072)
uint8 array, 1024 red then 1024 green then 1024 blue values row by row, and a list of labels).

The archive is found where the IDX datasets are (``--data-dir``, ``CONVEXP_DATA_DIR``, else the user cache,
``~/.cache/convexp/cifar10``), and read only after its MD5 and every batch's MD5 match the published ones
(Krizhevsky's page; torchvision checks the same). The batches are unpickled by an unpickler that builds
nothing but numpy arrays, dicts, lists and strings, so even a file that got past the checksums could not run
code.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convexp.datasets.dataset import Dataset, cache_root
from convexp.datasets.download import fetch_verified
from convexp.datasets.idx import copy_into_place, where_to_look
from convexp.errors import DatasetError

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{n}" for n in range(1, 6))
TEST_BATCH = "test_batch"


@dataclass(frozen=True)
class CifarArchive:
    """A CIFAR python-version archive: its file name and MD5, each batch's MD5, how many images each split has, and
    the mirrors it is published on."""

    name: str
    title: str
    filename: str
    md5: str
    batch_md5: dict[str, str]
    train_examples: int
    test_examples: int
    mirrors: tuple[str, ...]
    classes: tuple[str, ...]
    #: The published archive's size in bytes: a download stops there (None: not bounded).
    size: int | None = None

    @property
    def how_to_get(self) -> str:
        return (
            f"run `convexp data fetch {self.name}`, or download {self.filename} and run "
            f"`convexp data import DIR --dataset {self.name}`, or pass --data-dir DIR / set CONVEXP_DATA_DIR"
        )

    def cache_dir(self) -> Path:
        """Where ``convexp data fetch/import`` keep the archive for this user."""
        return cache_root() / self.name

    def find_in(self, directory: Path) -> Path | None:
        """The archive in ``directory``/NAME or ``directory``, or None."""
        for candidate in (directory / self.name / self.filename, directory / self.filename):
            if candidate.is_file():
                return candidate
        return None

    def locate(self, data_dir: Path | None = None) -> dict[str, Path]:
        """{"archive": its path}; raises :class:`DatasetError` naming where it looked and how to get it."""

        directory, why = where_to_look(data_dir, self.cache_dir())
        found = self.find_in(directory)
        if found is None:
            raise DatasetError(f"{self.title} ({self.filename}) not found in {directory} ({why}): {self.how_to_get}")
        return {"archive": found}

    def verify(self, path: Path) -> None:
        """Raise :class:`DatasetError` naming ``path`` unless its MD5 is the published archive's."""
        digest = _md5_of(path)
        if digest != self.md5:
            raise DatasetError(f"{path}: MD5 is {digest}, expected {self.md5} (not the published {self.filename})")

    def load(self, data_dir: Path | None = None) -> Dataset:
        """The six batches as (N, 3, 32, 32) float32 images in [0, 1] and int64 labels, once every checksum matches."""
        path = self.locate(data_dir)["archive"]
        self.verify(path)
        batches = _read_batches(path, self)
        train = [batches[name] for name in TRAIN_BATCHES]
        images = np.concatenate([b[0] for b in train])
        labels = np.concatenate([b[1] for b in train])
        test_images, test_labels = batches[TEST_BATCH]
        for split, found, expected in (
            ("training", len(labels), self.train_examples),
            ("test", len(test_labels), self.test_examples),
        ):
            if found != expected:
                raise DatasetError(f"{path}: {found} {split} images, expected {expected}")
        return Dataset(self.name, _scaled(images), labels, _scaled(test_images), test_labels, len(self.classes))

    def fetch(
        self,
        mirrors: list[str] | None = None,
        destination: Path | None = None,
        *,
        attempts: int = 3,
        timeout: float = 30.0,
        progress=None,
    ) -> dict[str, Path]:
        """Download the archive into the cache (or ``destination``) from the first mirror that delivers it with the
        published MD5, resuming broken transfers; nothing is left behind on failure."""

        destination = Path(destination) if destination else self.cache_dir()
        destination.mkdir(parents=True, exist_ok=True)
        chosen = list(mirrors or self.mirrors)
        target = fetch_verified(
            self.filename,
            self.verify,
            chosen,
            destination,
            attempts=attempts,
            timeout=timeout,
            progress=progress,
            most_bytes=self.size,
        )
        return {"archive": target}

    def import_files(self, source: Path, destination: Path | None = None) -> dict[str, Path]:
        """Copy the archive from ``source`` into the cache once its MD5 matches; written under a temporary name and
        renamed, so a failure leaves nothing half-written."""
        found = self.find_in(Path(source))
        if found is None:
            raise DatasetError(f"{source}: does not hold {self.filename}")
        self.verify(found)
        destination = Path(destination) if destination else self.cache_dir()
        destination.mkdir(parents=True, exist_ok=True)
        target = destination / self.filename
        copy_into_place(found, target)
        return {"archive": target}


def _md5_of(path: Path) -> str:
    digest = hashlib.md5()
    try:
        with open(path, "rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return digest.hexdigest()


def _scaled(images: np.ndarray) -> np.ndarray:
    return images.reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255.0)


class _ArraysOnly(pickle.Unpickler):
    """Builds numpy arrays (and bytes, which a protocol-2 pickle written by Python 3 makes with codecs.encode), and
    refuses every other callable a pickle names: nothing else can run."""

    ALLOWED = {
        ("_codecs", "encode"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def _read_batches(path: Path, archive: CifarArchive) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each batch's (images (N, 3072) uint8, labels int64), every batch checked against its published MD5."""
    out = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for name in (*TRAIN_BATCHES, TEST_BATCH):
                member = tar.extractfile(f"{FOLDER}/{name}")
                if member is None:
                    raise DatasetError(f"{path}: {FOLDER}/{name} is not a file")
                raw = member.read()
                digest = hashlib.md5(raw).hexdigest()
                if digest != archive.batch_md5[name]:
                    raise DatasetError(f"{path}: {name} has MD5 {digest}, expected {archive.batch_md5[name]}")
                entry = _ArraysOnly(io.BytesIO(raw), encoding="bytes").load()
                data = np.asarray(entry[b"data"], dtype=np.uint8)
                labels = np.asarray(entry[b"labels"], dtype=np.int64)
                if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
                    raise DatasetError(f"{path}: {name} holds {data.shape} pixels for {len(labels)} labels, not (N, 3072)")
                if labels.size and (labels.min() < 0 or labels.max() >= len(archive.classes)):
                    raise DatasetError(f"{path}: {name} has labels outside 0..{len(archive.classes) - 1}")
                out[name] = (data, labels)
    except (tarfile.TarError, OSError, EOFError, KeyError, pickle.UnpicklingError) as exc:
        raise DatasetError(f"{path}: cannot be read as the CIFAR-10 archive ({exc})") from None
    return out


#: Krizhevsky's CIFAR-10, python version: the archive's MD5 and its batches' as his page and torchvision publish them.
CIFAR10 = CifarArchive(
    "cifar10",
    "CIFAR-10",
    "cifar-10-python.tar.gz",
    "c58f30108f718f92721af3b95e74349a",
    {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
    },
    50000,
    10000,
    ("https://www.cs.toronto.edu/~kriz/",),
    ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    170_498_071,
)
#: Every archive dataset by name (what ``convexp data fetch`` and experiments' ``dataset`` name).
ARCHIVES: dict[str, CifarArchive] = {CIFAR10.name: CIFAR10}
