"""MNIST: reading and verifying the IDX files, importing them into the cache, and the Keras example's accuracy."""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pytest

from convexp.datasets import mnist
from convexp.errors import DatasetError
from tests.conftest import run_cli


def test_loads_the_standard_split(mnist_dir):
    data = mnist.load(mnist_dir)
    assert data.train_images.shape == (60000, 1, 28, 28) and data.test_images.shape == (10000, 1, 28, 28)
    assert data.train_images.dtype == np.float32 and 0.0 == data.train_images.min() and data.train_images.max() == 1.0
    assert np.bincount(data.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def decompressed_copy(mnist_dir, tmp_path):
    """The four files, decompressed, in a folder of their own (the plain IDX form also works)."""
    folder = tmp_path / "plain"
    folder.mkdir()
    for idx in mnist.FILES.values():
        with gzip.open(mnist_dir / f"{idx.filename}.gz") as src, open(folder / idx.filename, "wb") as out:
            shutil.copyfileobj(src, out)
    return folder


def test_plain_idx_files_load_too(mnist_dir, tmp_path):
    folder = decompressed_copy(mnist_dir, tmp_path)
    np.testing.assert_array_equal(mnist.load(folder).test_labels, mnist.load(mnist_dir).test_labels)


def test_import_verifies_and_fills_the_cache(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CONVEXP_DATA_DIR", raising=False)
    with pytest.raises(DatasetError, match="MNIST not found"):
        mnist.locate()
    written = mnist.import_files(mnist_dir)
    assert all(path.parent == tmp_path / "cache" / "convexp" / "mnist" for path in written.values())
    assert mnist.locate() == written
    assert len(mnist.load().train_labels) == 60000


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda data: data[: len(data) // 2], "truncated or not the standard MNIST file"),
        (lambda data: data[:100] + bytes([data[100] ^ 1]) + data[101:], "checksum mismatch"),
    ],
)
def test_damaged_files_are_refused_by_load_and_import(mnist_dir, tmp_path, monkeypatch, damage, message):
    folder = decompressed_copy(mnist_dir, tmp_path)
    labels = folder / "t10k-labels-idx1-ubyte"
    labels.write_bytes(damage(labels.read_bytes()))
    with pytest.raises(DatasetError, match=message) as info:
        mnist.load(folder)
    assert "t10k-labels-idx1-ubyte" in str(info.value)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match=message):
        mnist.import_files(folder)
    assert not (tmp_path / "cache" / "convexp" / "mnist").exists()  # nothing half-imported


def test_corrupt_gzip_is_refused(mnist_dir, tmp_path):
    folder = tmp_path / "gz"
    shutil.copytree(mnist_dir, folder)
    target = folder / "t10k-labels-idx1-ubyte.gz"
    data = target.read_bytes()
    target.chmod(0o644)
    target.write_bytes(data[: len(data) - 200])
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz"):
        mnist.load(folder)


def test_data_import_command(mnist_dir, tmp_path):
    result = run_cli("data", "import", str(mnist_dir), env={"XDG_CACHE_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "MNIST is ready in" in result.stdout
    assert len(list((tmp_path / "convexp" / "mnist").iterdir())) == 4


@pytest.mark.slow
def test_keras_example_reaches_975_after_one_epoch_on_numpy(mnist_keras_run):
    (run,) = json.loads(run_cli("runs", "--format", "json", "--db", str(mnist_keras_run)).stdout)
    assert run["test_accuracy"] >= 0.975
