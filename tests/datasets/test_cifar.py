"""CIFAR-10 (issue 30, datasets): an archive of the real python-version format generated here, served on 127.0.0.1,
fetched, verified, refused when wrong, and a one-epoch colour run on it end to end (run, filters in colour with
per-channel measures, report). The generated archive cannot carry the published checksums, so the archive under
test is the real one with its checksums and sizes swapped for the generated file's -- the only things changed; the
CLI, which only knows the published ones, is shown to refuse it. The real archive cannot be downloaded on the
machine these tests were written on: no test here has seen it."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from convexp.datasets import cifar
from convexp.errors import DatasetError
from tests.conftest import TINY_DIGITS, run_cli, write_experiments
from tests.datasets.test_download import serve

PER_BATCH, TEST = 60, 100
#: a colour per class: the images are noise plus a square of their class's colour, so colour filters can learn
COLOURS = np.array(
    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]]
)


def _batch(rng, count: int) -> tuple[dict, np.ndarray, np.ndarray]:
    labels = rng.integers(0, 10, count)
    images = rng.integers(0, 60, (count, 3, 32, 32))
    for n, label in enumerate(labels):
        images[n, :, 8:24, 8:24] = (COLOURS[label] * 255).astype(int)[:, None, None]
    images = images.astype(np.uint8)
    # the published layout: (N, 3072), each row the 1024 red, then green, then blue values, row by row
    entry = {b"batch_label": b"generated", b"labels": labels.tolist(), b"data": images.reshape(count, 3072)}
    return entry, images, labels


def generated(folder: Path, seed: int = 0, poisoned: bool = False) -> tuple[cifar.CifarArchive, dict[str, np.ndarray]]:
    """A cifar-10-python.tar.gz of the published layout in ``folder`` and the CIFAR-10 archive with its checksums.
    ``poisoned``: the test batch is a pickle that would call a function when loaded."""
    rng = np.random.default_rng(seed)
    members, md5s, arrays = {}, {}, {"train_images": [], "train_labels": []}
    for name in (*cifar.TRAIN_BATCHES, cifar.TEST_BATCH):
        entry, images, labels = _batch(rng, TEST if name == cifar.TEST_BATCH else PER_BATCH)
        raw = pickle.dumps(entry, protocol=2)
        if poisoned and name == cifar.TEST_BATCH:
            raw = pickle.dumps(Exploit(), protocol=2)
        members[name], md5s[name] = raw, hashlib.md5(raw).hexdigest()
        if name == cifar.TEST_BATCH:
            arrays["test_images"], arrays["test_labels"] = images, labels
        else:
            arrays["train_images"].append(images)
            arrays["train_labels"].append(labels)
    arrays["train_images"] = np.concatenate(arrays["train_images"])
    arrays["train_labels"] = np.concatenate(arrays["train_labels"])
    members["batches.meta"] = pickle.dumps({b"label_names": [c.encode() for c in cifar.CIFAR10.classes]}, protocol=2)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(f"{cifar.FOLDER}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / cifar.CIFAR10.filename).write_bytes(buffer.getvalue())
    archive = dataclasses.replace(
        cifar.CIFAR10,
        md5=hashlib.md5(buffer.getvalue()).hexdigest(),
        batch_md5=md5s,
        train_examples=5 * PER_BATCH,
        test_examples=TEST,
    )
    return archive, arrays


class Exploit:
    """What a malicious batch would hold: unpickling it calls a function."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_fetched_archive_is_verified_and_read_as_the_published_layout(tmp_path):
    archive, arrays = generated(tmp_path / "served")
    server, url, _ = serve(tmp_path / "served")
    try:
        written = archive.fetch([url], tmp_path / "cache", attempts=1, timeout=5)
    finally:
        server.shutdown()
    assert written == {"archive": tmp_path / "cache" / "cifar-10-python.tar.gz"}
    data = archive.load(tmp_path / "cache")
    assert data.name == "cifar10" and data.num_classes == 10 and data.train_images.shape == (5 * PER_BATCH, 3, 32, 32)
    np.testing.assert_array_equal(data.train_images, arrays["train_images"].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(data.test_labels, arrays["test_labels"])
    assert data.train_images[0, :, 16, 16].tolist() == pytest.approx(COLOURS[arrays["train_labels"][0]].tolist(), abs=0.01)
    with pytest.raises(DatasetError, match=r"MD5 is [0-9a-f]{32}, expected c58f30108f718f92721af3b95e74349a"):
        cifar.CIFAR10.load(tmp_path / "cache")  # the real archive's checksum: the generated file is not CIFAR-10


def test_a_batch_that_would_run_code_is_refused_even_past_its_checksum(tmp_path, capsys):
    archive, _ = generated(tmp_path, poisoned=True)
    with pytest.raises(DatasetError, match=r"(__builtin__|builtins)\.print is not allowed in a CIFAR batch"):
        archive.load(tmp_path)
    assert "this must never run" not in capsys.readouterr().out


def test_the_command_line_knows_only_the_published_checksum(tmp_path):
    generated(tmp_path / "served")
    server, url, _ = serve(tmp_path / "served")
    try:
        env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
        result = run_cli("data", "fetch", "cifar10", "--mirror", url, "--attempts", "1", env=env)
    finally:
        server.shutdown()
    assert result.returncode == 1
    assert "could not download cifar-10-python.tar.gz" in result.stderr and "not the published" in result.stderr
    assert not list((tmp_path / "xdg").rglob("*.tar.gz*"))  # nothing half-written, nothing kept
    imported = run_cli("data", "import", str(tmp_path / "served"), "--dataset", "cifar10", env=env)
    assert imported.returncode == 1 and "expected c58f30108f718f92721af3b95e74349a" in imported.stderr
    missing = run_cli("run", "-e", "cifar10-convnet", "--epochs", "1", "--db", str(tmp_path / "r.db"), env=env)
    assert missing.returncode != 0 and "convexp data fetch cifar10" in missing.stderr


def test_a_one_epoch_colour_run_end_to_end_draws_its_filters_in_colour(tmp_path, monkeypatch):
    from PIL import Image

    from convexp.analysis.report import write_report
    from convexp.experiments.runner import execute, prepare_runs
    from convexp.store import Store

    archive, _ = generated(tmp_path / "data")
    monkeypatch.setitem(cifar.ARCHIVES, "cifar10", archive)
    spec = {
        **TINY_DIGITS,
        "dataset": "cifar10",
        "layers": [
            {"type": "conv", "filters": 6, "kernel_size": 5, "stride": 2, "activation": "relu"},
            {"type": "global_avgpool"},
            {"type": "dense", "units": 10},
        ],
        "optimizer": {"name": "adam", "learning_rate": 0.02},
        "epochs": 3,
        "batch_size": 30,
    }
    experiments = write_experiments(tmp_path / "experiments.yaml", {"colour": spec})
    db = tmp_path / "r.db"
    with Store(str(db)) as store:
        (outcome,) = execute(prepare_runs(experiments, data_dir=tmp_path / "data"), store, data_dir=tmp_path / "data")
        assert outcome.status == "finished"
        run = store.get_run(outcome.run_id)
        assert run.test_accuracy > 0.3  # colours are easy to tell apart: well above the 10% of guessing
        kernel = store.snapshot(run.id, "conv1", run.steps_completed).kernel_array
        report = write_report(store, [run], tmp_path / "report.html", data_dir=tmp_path / "data")
    assert "cifar10" in report.read_text()
    measured = run_cli("filters", "1", "--format", "json", "--db", str(db))
    assert measured.returncode == 0, measured.stderr
    first = json.loads(measured.stdout)["filters"][0]
    share = float(np.square(kernel[0] - kernel[0].mean(axis=0)).sum() / np.square(kernel[0]).sum())
    assert first["chromatic_share"] == pytest.approx(share, rel=1e-6)
    from convexp.analysis.filters import best_operator

    assert first["green_operator"] == best_operator(kernel[0][1].astype(np.float64))[0]
    drawn = run_cli("plot", "filters", "1", "--out", str(tmp_path / "f.png"), "--db", str(db))
    assert drawn.returncode == 0, drawn.stderr
    pixels = np.asarray(Image.open(tmp_path / "f.png").convert("RGB")).astype(int)
    assert (np.ptp(pixels, axis=2) > 60).sum() > 100  # coloured, not grey: the filters are drawn in colour
    from tests.ui.test_ui_api import browsing

    # the web UI draws the same filters in colour: the pixel of each weight is 0.5 + w / (2 limit) per channel
    with browsing(db) as session:
        page = session["new_page"]()
        page.goto(session["url"] + "runs/1")
        page.wait_for_function(f"() => document.getElementById('kernel-canvas').dataset.step == '{run.steps_completed}'")
        assert page.eval_on_selector("#view", "v => v.value") == "colour"
        limit = float(np.abs(kernel).max())
        for filter_index, row, col in ((0, 0, 0), (3, 2, 4), (5, 4, 1)):
            centre = page.evaluate("a => window.cxRun.state.grid.centre(...a)", [filter_index, 0, row, col])
            pixel = page.evaluate(
                "c => Array.from(document.getElementById('kernel-canvas').getContext('2d')"
                ".getImageData(Math.floor(c.x), Math.floor(c.y), 1, 1).data)",
                centre,
            )
            expected = np.round((0.5 + kernel[filter_index, :, row, col] / (2 * limit)) * 255)
            assert pixel[:3] == pytest.approx(expected.tolist(), abs=1)
