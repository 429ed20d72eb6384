"""`convexp run --resume` finds the data the run used, and refuses different data."""

from __future__ import annotations

import json
import sqlite3

from tests.conftest import TINY_DIGITS, mnist_folder, run_cli, write_experiments


def interrupt(db, run_id: int = 1) -> None:
    """Mark a finished run interrupted after its first epoch, as if it had been stopped there."""
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE runs SET status = 'interrupted' WHERE id = ?", (run_id,))


def test_resume_finds_the_data_folder_the_run_recorded(mnist_dir, tmp_path):
    body = {
        **TINY_DIGITS,
        "dataset": "mnist",
        "train_examples": 640,
        "epochs": 2,
        "batch_size": 128,
        "layers": [
            {"type": "conv", "filters": 4, "kernel_size": 3, "activation": "relu"},
            {"type": "maxpool", "pool_size": 2},
            {"type": "flatten"},
            {"type": "dense", "units": 10},
        ],
    }
    path = write_experiments(tmp_path / "e.yaml", {"small": body})
    db = tmp_path / "r.db"
    elsewhere = {"CONVEXP_DATA_DIR": "", "XDG_CACHE_HOME": str(tmp_path / "empty-cache")}
    first = run_cli("run", str(path), "--db", str(db), "--data-dir", str(mnist_dir), env=elsewhere)
    assert first.returncode == 0, first.stderr
    with sqlite3.connect(db) as connection:
        source = json.loads(connection.execute("SELECT data_source FROM runs WHERE id = 1").fetchone()[0])
    assert source["dir"] == str(mnist_folder().resolve()) and len(source["fingerprint"]) == 32
    interrupt(db)
    resumed = run_cli("run", "--resume", "1", "--db", str(db), env=elsewhere)  # no --data-dir, nothing in the cache
    assert resumed.returncode == 0, resumed.stderr
    (row,) = json.loads(run_cli("runs", "--format", "json", "--db", str(db)).stdout)
    assert row["status"] == "finished" and row["attempts"] == 2


def test_resume_refuses_data_that_differs_from_what_the_run_trained_on(tmp_path):
    path = write_experiments(tmp_path / "e.yaml", {"tiny": {**TINY_DIGITS, "epochs": 2}})
    db = tmp_path / "r.db"
    assert run_cli("run", str(path), "--db", str(db)).returncode == 0
    with sqlite3.connect(db) as connection:
        (raw,) = connection.execute("SELECT data_source FROM runs WHERE id = 1").fetchone()
        source = json.loads(raw)
        assert source["dir"] is None  # the digits come with scikit-learn
        source["fingerprint"] = "0" * 32
        connection.execute("UPDATE runs SET data_source = ?, status = 'interrupted' WHERE id = 1", (json.dumps(source),))
    result = run_cli("run", "--resume", "1", "--db", str(db))
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    assert "run 1 trained on digits data with fingerprint 0000" in result.stderr and "differs" in result.stderr
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT status, attempts FROM runs WHERE id = 1").fetchone() == ("interrupted", 1)
