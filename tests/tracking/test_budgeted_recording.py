"""Recording at a stated cost, end to end: a budgeted run keeps step 0, the first steps, every epoch's end and the
last step exactly (checked against copies of the weights the test takes itself), records which steps it kept and
why, and costs the training loop about its budget."""

from __future__ import annotations

import json
import sqlite3
import time

import numpy as np
import pytest

import convexp
from tests.conftest import run_cli, stored_kernels

torch = pytest.importorskip("torch")
nn = torch.nn


class Net(nn.Module):  # the user's own model, defined in their script
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3)
        self.conv2 = nn.Conv2d(16, 32, 3)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


def recording(db) -> dict:
    with sqlite3.connect(db) as connection:
        return json.loads(connection.execute("SELECT recording FROM runs").fetchone()[0])


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_budgeted_torch_loop_keeps_start_epoch_ends_and_last_step_exactly(tmp_path, monkeypatch, writer):
    import convexp.torch

    monkeypatch.setenv("CONVEXP_WRITER", writer)
    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(8, 1, 10, 10), torch.randint(0, 10, (8,))
    db = tmp_path / "b.db"
    weights = {}  # the test's own copies of conv1's weights, by step
    with convexp.torch.record(model, "budgeted", str(db), budget=0.001, quiet=True) as recorder:
        weights[0] = model.conv1.weight.detach().clone().numpy()
        for _epoch in range(2):
            for _ in range(25):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
                recorder.step()
                weights[recorder.steps] = model.conv1.weight.detach().clone().numpy()
            recorder.end_epoch()
        for _ in range(7):  # a last stretch that ends no epoch: its last step is read when the run finishes
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            recorder.step()
            weights[recorder.steps] = model.conv1.weight.detach().clone().numpy()
    stored = stored_kernels(db, "conv1")
    assert {0, 1, 2, 25, 50, 57} <= set(stored)
    assert len(stored) < 58  # a 0.1% budget leaves most steps out
    for step, kernel in stored.items():
        assert np.array_equal(kernel, weights[step]), step
    summary = recording(db)
    assert summary["budget"] == 0.001 and summary["steps_offered"] == 58
    assert summary["always_kept"]["start"] == [0] and summary["always_kept"]["first"] == [1, 2]
    assert summary["always_kept"]["epoch end"] == [25, 50] and summary["always_kept"]["last"] == [57]
    assert summary["snapshots_kept"] == len(stored) == 6 + summary["kept_by_cadence"]
    assert summary["snapshot_ms"] > 0 and summary["step_ms"] > 0
    # the writer (in this process or its own) reported its time for the snapshot rows, and their bytes
    seconds, size = recorder.run.writer.written
    assert seconds > 0 and size == len(stored) * 4 * (16 * 9 + 16 + 32 * 16 * 9 + 32)


def test_a_failed_run_does_not_read_a_last_step_the_budget_left_out(tmp_path):
    import convexp.torch

    model = Net()
    db = tmp_path / "f.db"
    with pytest.raises(RuntimeError, match="boom"), convexp.torch.record(model, "f", str(db), budget=0.001, quiet=True) as r:
        for _ in range(40):
            r.step()
        with torch.no_grad():
            model.conv1.weight.add_(1.0)  # a half-done update, then the failure
        raise RuntimeError("boom")
    stored = stored_kernels(db, "conv1")
    assert 40 not in stored and {0, 1, 2} <= set(stored)


def test_a_mapping_left_out_is_kept_as_logged_for_the_last_step(tmp_path):
    db = tmp_path / "m.db"
    kernel = np.zeros((2, 1, 3, 3), np.float32)
    with convexp.track("m", str(db), budget=0.001, quiet=True) as run:
        for step in range(30):
            kernel += 1.0
            run.log_kernels({"conv": kernel}, step=step)
        logged_last = kernel.copy()
        kernel += 100.0  # the user's array changes in place after the last log: what was logged is what counts
    stored = stored_kernels(db, "conv")
    assert np.array_equal(stored[29], logged_last)
    assert recording(db)["always_kept"]["last"] == [29]


def test_the_loop_pays_about_its_budget(tmp_path):
    """Loosely: the training thread's time inside convexp's calls, measured by the test around them, stays within a
    few times the budget of the loop's own time (the benchmark has the numbers)."""
    import convexp.torch

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 256, 3, padding=1), nn.Flatten())
    x = torch.randn(4, 1, 8, 8)
    inside = outside = 0.0
    with convexp.torch.record(model, "cost", str(tmp_path / "c.db"), budget=0.05, quiet=True) as recorder:
        for _ in range(300):
            began = time.perf_counter()
            model(x).square().mean().backward()
            middle = time.perf_counter()
            recorder.step()
            outside, inside = outside + middle - began, inside + time.perf_counter() - middle
    summary = recording(tmp_path / "c.db")
    assert summary["snapshots_kept"] < 300  # 600 KB of kernels a step is more than 5% of this loop
    assert inside <= 0.25 * outside + 0.5, (inside, outside, summary)


def test_a_keras_fit_with_a_budget_keeps_its_epoch_ends(tmp_path):
    keras = pytest.importorskip("keras")
    import convexp.keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="conv"), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = np.random.default_rng(0).standard_normal((60, 8, 8, 1)).astype("float32"), np.arange(60) % 3
    db = tmp_path / "k.db"
    recorder = convexp.keras.KernelRecorder("k", str(db), budget=0.0001, quiet=True)
    model.fit(x, y, batch_size=6, epochs=2, verbose=0, callbacks=[recorder])
    stored = stored_kernels(db, "conv")
    assert {0, 1, 2, 10, 20} <= set(stored) and len(stored) < 21
    final = np.asarray(keras.ops.convert_to_numpy(model.get_layer("conv").kernel)).transpose(3, 2, 0, 1)
    assert np.array_equal(stored[20], final)
    assert recording(db)["always_kept"]["epoch end"] == [10, 20]


def test_convexp_run_with_a_budget_records_what_it_kept_and_show_says_so(tmp_path):
    db = tmp_path / "q.db"
    ran = run_cli("run", "-e", "quickstart", "--epochs", "2", "--budget", "0.0001", "--db", str(db))
    assert ran.returncode == 0, ran.stderr
    assert "to stay within the 0.01% budget" in ran.stderr  # said once, with the budget as given
    summary = recording(db)
    assert summary["budget"] == 0.0001
    assert summary["always_kept"]["start"] == [0] and summary["always_kept"]["epoch end"] == [45, 90]
    stored = stored_kernels(db, "conv1")
    assert {0, 1, 2, 45, 90} <= set(stored) and len(stored) == summary["snapshots_kept"] < 91
    shown = run_cli("show", "1", "--db", str(db))
    assert f"kept {len(stored)} of 91 steps' kernels" in shown.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--budget", "1.5"],
            "field 'snapshots.budget': Input should be less than 1 (got 1.5) (given on the command line as --budget)",
        ),
        (["--budget", "0"], "field 'snapshots.budget': Input should be greater than 0"),
        (["--set", "snapshots.every=null", "--budget", "0.05"], "budget thins the snapshots taken every N steps"),
    ],
)
def test_a_bad_budget_is_one_line_and_writes_nothing(tmp_path, arguments, message):
    db = tmp_path / "bad.db"
    ran = run_cli("run", "-e", "quickstart", *arguments, "--db", str(db))
    assert ran.returncode != 0
    assert message in ran.stderr and len(ran.stderr.strip().splitlines()) == 1, ran.stderr
    assert not db.exists()
