"""Grids are counted from their sizes and expanded lazily: validating, sizing and asking about a
billion-run grid takes constant memory, and the sizes agree with the runs one by one."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest
import yaml

from convexp.experiments import estimate_disk
from convexp.experiments.estimate_memory import check_grids, estimate_memory
from convexp.experiments.grids import Grid, resolve_grids
from tests.conftest import REPO, run_cli

SMALL_NET = [{"type": "conv", "filters": 4, "kernel_size": 3}, {"type": "flatten"}, {"type": "dense", "units": 10}]


def brute_force_snapshot_steps(total: int, per_epoch: int, every: int | None, epoch_end: bool) -> int:
    """Count the recorded steps by walking them, as the recorder decides them step by step."""
    recorded = {0}
    for step in range(1, total + 1):
        if every and step % every == 0:
            recorded.add(step)
        if epoch_end and (step % per_epoch == 0 or step == total):
            recorded.add(step)
    return len(recorded)


def test_snapshot_steps_count_what_the_recorder_records():
    for total in range(1, 60):
        for per_epoch in range(1, 13):
            for every in (None, 1, 2, 3, 5, 7):
                for epoch_end in (True, False):
                    expected = brute_force_snapshot_steps(total, per_epoch, every, epoch_end)
                    assert estimate_disk.snapshot_steps(total, per_epoch, every, epoch_end) == expected, (
                        total,
                        per_epoch,
                        every,
                        epoch_end,
                    )


def test_a_grid_is_sized_as_the_sum_of_its_runs():
    raw = {
        "dataset": "digits",
        "backend": "numpy",
        "layers": SMALL_NET,
        "epochs": [1, 2, 3],
        "batch_size": [7, 32, 100],
        "max_steps": [None, 50, 13],
        "train_examples": [None, 500],
        "seed": [0, 1],
        "log_every": [1, 3],
        "initializer": ["glorot_uniform", "he_normal"],
        "snapshots": [
            {"every": 1},
            {"every": 5, "epoch_end": True},
            {"every": None, "epoch_end": True},
            {"every": 7, "epoch_end": False},
        ],
    }
    grid = Grid("grid.yaml", "rich", raw)
    grid.check()
    runs = list(grid)
    assert len(grid) == len(runs) == 3 * 3 * 3 * 2 * 2 * 2 * 2 * 4
    assert estimate_disk.estimate_grid(grid) == estimate_disk.estimate(r.spec for r in runs)
    assert check_grids([grid]) == max(estimate_memory(r.spec).total for r in runs)
    # in file order, the last axis fastest, as itertools.product and the old expansion gave them
    assert [(r.spec.epochs, r.spec.batch_size) for r in runs[:2]] == [(1, 7), (1, 7)]
    assert runs[0].spec.snapshots.every == 1 and runs[1].spec.snapshots.every == 5


def billion(tmp_path):
    path = tmp_path / "huge.yaml"
    spec = {
        "dataset": "digits",
        "backend": "numpy",
        "layers": SMALL_NET,
        "seed": list(range(1000)),
        "epochs": list(range(1, 1001)),
        "batch_size": list(range(1, 1001)),
    }
    path.write_text(yaml.safe_dump({"experiments": {"huge": spec}}))
    return path


def capped(limit_bytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return apply


def test_a_billion_run_grid_validates_and_is_refused_in_bounded_memory(tmp_path):
    """Expanding it would take hundreds of GB; counted, it fits in a 1.5 GB address space."""
    path = billion(tmp_path)
    for args, status in ((["validate", str(path)], 0), (["run", str(path), "--db", str(tmp_path / "h.db")], 1)):
        result = subprocess.run(
            [sys.executable, "-m", "convexp", *args], capture_output=True, text=True, timeout=300,
            preexec_fn=capped(3 * 1024**3), cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == status, (args, result.stderr[-2000:])
        assert "MemoryError" not in result.stderr and "Traceback" not in result.stderr
        if args[0] == "validate":
            assert "huge: 1,000,000,000 run(s)" in result.stdout
        else:
            assert "the runs would write up to" in result.stderr
    assert not (tmp_path / "h.db").exists()


def test_each_value_of_each_axis_is_checked_before_any_run_starts(tmp_path):
    path = tmp_path / "e.yaml"
    spec = {
        "dataset": "digits",
        "backend": "numpy",
        "layers": SMALL_NET,
        "epochs": 1,
        "seed": list(range(100)),
        "batch_size": [32, 64, 0],
    }
    path.write_text(yaml.safe_dump({"experiments": {"bad": spec}}))
    result = run_cli("run", str(path), "--db", str(tmp_path / "r.db"))
    assert result.returncode == 2 and "experiment 'bad': field 'batch_size'" in result.stderr, result.stderr
    assert not (tmp_path / "r.db").exists()


def test_the_examples_count_as_they_expand():
    for grid in resolve_grids(REPO / "experiments.yaml", ["digits-grid", "edge-detectors", "cross-backend-agreement"]):
        assert len(grid) == len(list(grid))


def test_a_grid_confirms_before_it_starts_and_writes_nothing_when_told_no(tmp_path):
    path = tmp_path / "e.yaml"
    spec = {"dataset": "digits", "backend": "numpy", "layers": SMALL_NET, "epochs": 1, "max_steps": 2, "seed": list(range(150))}
    path.write_text(yaml.safe_dump({"experiments": {"many": spec}}))
    result = run_cli("run", str(path), "--db", str(tmp_path / "r.db"), input="n\n")
    assert result.returncode == 1 and "start 150 run(s)" in result.stderr and "nothing was run" in result.stderr
    if (tmp_path / "r.db").exists():
        import sqlite3

        assert sqlite3.connect(tmp_path / "r.db").execute("SELECT count(*) FROM runs").fetchone() == (0,)


del pytest
