"""Fashion-MNIST and KMNIST (issue 30, datasets): files of the real IDX format generated here, served by an HTTP
server on 127.0.0.1, fetched, verified, refused when wrong, and a one-epoch run on them end to end (run, filters,
report). The generated files cannot carry the published checksums, so the collection under test is the real one
with its checksum table swapped for theirs -- the only thing changed; the CLI, which only knows the published
checksums, is shown to refuse them."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from convexp.datasets import idx
from convexp.errors import DatasetError
from tests.conftest import TINY_DIGITS, run_cli, write_experiments
from tests.datasets.test_download import serve

TRAIN, TEST = 600, 200


def _idx_bytes(array: np.ndarray) -> bytes:
    magic = 2051 if array.ndim == 3 else 2049
    return magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape) + array.astype(np.uint8).tobytes()


def generated(folder: Path, seed: int = 0) -> tuple[idx.IdxCollection, dict[str, np.ndarray]]:
    """Fashion-MNIST-format files in ``folder`` (.gz, as published): images of bright bars whose orientation is the
    label's, so a conv layer has something to learn; and the Fashion-MNIST collection with their sizes and MD5s."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in (("train", TRAIN), ("test", TEST)):
        labels = rng.integers(0, 10, count)
        images = rng.integers(0, 40, (count, 28, 28))
        for n, label in enumerate(labels):
            if label % 2:
                images[n, :, 2 + 2 * label] = 255  # a vertical bar whose column is the label's
            else:
                images[n, 2 + 2 * label, :] = 255  # a horizontal one
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for key, array in arrays.items():
        real = idx.FASHION_MNIST.files[key]
        packed = gzip.compress(_idx_bytes(array), mtime=0)
        (folder / f"{real.filename}.gz").write_bytes(packed)
        files[key] = dataclasses.replace(real, dims=array.shape, gz_md5=hashlib.md5(packed).hexdigest())
    return dataclasses.replace(idx.FASHION_MNIST, files=files), arrays


def test_fetched_files_are_verified_loaded_and_a_wrong_one_is_refused(tmp_path):
    from convexp.datasets.idx import fetch

    collection, arrays = generated(tmp_path / "served")
    server, url, _ = serve(tmp_path / "served")
    try:
        written = fetch(collection, [url], tmp_path / "cache", attempts=1, timeout=5)
    finally:
        server.shutdown()
    assert sorted(p.name for p in written.values()) == sorted(f"{f.filename}.gz" for f in collection.files.values())
    data = collection.load(tmp_path / "cache")
    assert data.name == "fashion-mnist" and data.num_classes == 10 and data.train_images.shape == (TRAIN, 1, 28, 28)
    np.testing.assert_array_equal(data.train_images[:, 0], arrays["train_images"].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(data.test_labels, arrays["test_labels"])
    # the real collection knows only the published checksums: the generated files are not Fashion-MNIST
    with pytest.raises(
        DatasetError, match=r"train-images-idx3-ubyte.gz: MD5 is [0-9a-f]{32}, expected 8d4fb7e6c68d591d4c3dfef9ec88bf0d"
    ):
        idx.FASHION_MNIST.load(tmp_path / "cache")
    # a plain (decompressed) file has no published checksum to be checked against: refused, not read unchecked
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in collection.files.values():
        (plain / f.filename).write_bytes(gzip.decompress((tmp_path / "cache" / f"{f.filename}.gz").read_bytes()))
    with pytest.raises(DatasetError, match="publishes checksums of its .gz files only"):
        collection.load(plain)


def test_the_command_line_fetches_against_the_published_checksums_only(tmp_path):
    generated(tmp_path / "served")
    server, url, _ = serve(tmp_path / "served")
    try:
        result = run_cli(
            "data", "fetch", "fashion-mnist", "--mirror", url, "--attempts", "1", env={"XDG_CACHE_HOME": str(tmp_path / "xdg")}
        )
    finally:
        server.shutdown()
    assert result.returncode == 1
    assert "could not download train-images-idx3-ubyte.gz" in result.stderr and "checksum mismatch" in result.stderr
    assert not list((tmp_path / "xdg").rglob("*ubyte*"))  # nothing half-written, nothing kept
    unknown = run_cli("data", "fetch", "fashion")
    assert unknown.returncode != 0 and "fashion-mnist" in unknown.stderr  # did you mean


def test_a_one_epoch_fashion_mnist_format_run_end_to_end(tmp_path, monkeypatch):
    """Fetch from the local server, run one epoch on every backend's reference (numpy), analyse the filters, write a report."""
    from convexp.analysis.filters import analyse_layer
    from convexp.analysis.report import write_report
    from convexp.datasets.idx import fetch
    from convexp.experiments.runner import execute, prepare_runs
    from convexp.store import Store

    collection, _ = generated(tmp_path / "served")
    monkeypatch.setitem(idx.COLLECTIONS, "fashion-mnist", collection)
    server, url, _ = serve(tmp_path / "served")
    try:
        fetch(collection, [url], tmp_path / "data", attempts=1, timeout=5)
    finally:
        server.shutdown()
    spec = {
        **TINY_DIGITS,
        "dataset": "fashion-mnist",
        "layers": [
            {"type": "conv", "filters": 4, "kernel_size": 5, "activation": "relu"},
            {"type": "maxpool", "pool_size": 4},
            {"type": "flatten"},
            {"type": "dense", "units": 10},
        ],
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "batch_size": 50,
    }
    experiments = write_experiments(tmp_path / "experiments.yaml", {"fashion": spec})
    with Store(str(tmp_path / "r.db")) as store:
        (outcome,) = execute(prepare_runs(experiments, data_dir=tmp_path / "data"), store, data_dir=tmp_path / "data")
        assert outcome.status == "finished"
        run = store.get_run(outcome.run_id)
        assert run.dataset == "fashion-mnist" and run.steps_completed == TRAIN // 50
        assert run.test_accuracy > 0.5  # bars are easy: well above the 10% of guessing
        last = store.snapshot(run.id, "conv1", run.steps_completed)
        assert len(analyse_layer(last.kernel_array, last.step).filters) == 4
        report = write_report(store, [run], tmp_path / "report.html", data_dir=tmp_path / "data")
    text = report.read_text()
    assert "fashion-mnist" in text and "<img" in text
    assert run.data_source["dir"] == str((tmp_path / "data").resolve())  # where its files were found, for --resume
