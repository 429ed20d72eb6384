"""Runs that diverge or are stopped keep what they recorded and say what happened."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_DIGITS, decode_kernels, write_experiments

EXPLODING = {
    **TINY_DIGITS,
    "layers": [{"type": "conv", "filters": 4, "kernel_size": 3}, {"type": "flatten"}, {"type": "dense", "units": 10}],
    "optimizer": {"name": "sgd", "learning_rate": 1.0e30},
    "snapshots": {"every": 1},
    "epochs": 3,
}


_started: list[subprocess.Popen] = []


def _default_sigint() -> None:
    # A shell starting a job in the background (`pytest &`, some CI runners) sets SIGINT to
    # ignored, and children inherit that: give convexp the Ctrl-C a terminal would deliver.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(*args: str) -> subprocess.Popen:
    """Start ``convexp ARGS`` as a user would; whatever a test leaves running is killed after it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "convexp", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint if os.name == "posix" else None,
    )
    _started.append(process)
    return process


@pytest.fixture(autouse=True)
def _kill_leftover_processes():
    yield
    while _started:
        process = _started.pop()
        if process.poll() is None:
            process.kill()
            process.communicate()


#: Epochs for a run that a test stops: so many that it never finishes on its own (a 500-epoch digits
#: run takes ~5 s, and one whose Ctrl-C was lost, ignored as in a background shell, then simply
#: finished, failing the test for a reason it did not name).
ENDLESS = 100_000


def wait_for(db: Path, sql: str, at_least: int, timeout: float = 600) -> int:
    """Poll a SQLite file (without creating it) until ``sql``'s single value reaches ``at_least``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            connection = sqlite3.connect(db, timeout=30)
            try:
                row = connection.execute(sql).fetchone()
            except sqlite3.OperationalError:  # tables not created yet
                row = None
            finally:
                connection.close()
            if row is not None and row[0] >= at_least:
                return row[0]
        time.sleep(0.02)  # often enough to catch a moment as short as "no step recorded yet"
    raise AssertionError(f"{db}: {sql} did not reach {at_least} within {timeout} s")


def test_a_run_whose_loss_becomes_nan_is_marked_diverged_and_keeps_its_snapshots(tmp_path):
    from tests.conftest import run_cli

    path = write_experiments(tmp_path / "e.yaml", {"boom": EXPLODING, "fine": TINY_DIGITS})
    db = tmp_path / "r.db"
    result = run_cli("run", str(path), "-e", "boom", "-e", "fine", "--db", str(db))
    assert result.returncode == 1  # not every run finished
    connection = sqlite3.connect(db)
    runs = connection.execute("SELECT experiment, status, steps_completed, message FROM runs ORDER BY id").fetchall()
    (_, status, step, message), fine = runs
    assert status == "diverged" and message == f"train_loss became nan at step {step} (epoch 1)"
    assert fine[1] == "finished"  # the next run went on
    steps = [s for (s,) in connection.execute("SELECT step FROM kernel_snapshots WHERE run_id = 1 ORDER BY step")]
    assert steps == list(range(step))  # every step before the one that diverged
    assert connection.execute("SELECT count(*) FROM metrics WHERE run_id = 1 AND name = 'train_loss'").fetchone()[0] == step - 1
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_sigterm_stops_a_run_cleanly(tmp_path):
    body = {**TINY_DIGITS, "epochs": ENDLESS, "snapshots": {"every": 1}}
    path = write_experiments(tmp_path / "e.yaml", {"long": body})
    db = tmp_path / "r.db"
    process = start("run", str(path), "--db", str(db))
    recorded = wait_for(db, "SELECT count(*) FROM kernel_snapshots", 50)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr, stderr
    connection = sqlite3.connect(db)
    status, message, steps = connection.execute("SELECT status, message, steps_completed FROM runs").fetchone()
    assert status == "interrupted" and "SIGTERM" in message
    assert connection.execute("SELECT count(*) FROM kernel_snapshots").fetchone()[0] >= recorded
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_ctrl_c_is_the_same_as_sigterm(tmp_path):
    body = {**TINY_DIGITS, "epochs": ENDLESS}
    path = write_experiments(tmp_path / "e.yaml", {"long": body})
    db = tmp_path / "r.db"
    process = start("run", str(path), "--db", str(db))
    wait_for(db, "SELECT epochs_completed FROM runs", 2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=600)
    # the run's status and message, and what was printed on both streams, say how it ended if it did not end here
    ended = sqlite3.connect(db).execute("SELECT status, message FROM runs").fetchone()
    assert process.returncode == 130, (ended, stdout, stderr)
    assert ended[0] == "interrupted"


def test_concurrent_runs_into_one_sqlite_file_lose_nothing(tmp_path):
    body = {**TINY_DIGITS, "epochs": 2, "snapshots": {"every": 1}}
    db = tmp_path / "shared.db"
    paths = [write_experiments(tmp_path / f"e{i}.yaml", {f"p{i}": {**body, "seed": i}}) for i in range(4)]
    writers = [start("run", str(p), "--db", str(db)) for p in paths]
    readers_ok = 0
    while any(w.poll() is None for w in writers):
        if db.exists():
            reader = start("runs", "--db", str(db), "--format", "json")
            out, err = reader.communicate(timeout=600)
            readers_ok += reader.returncode == 0
            assert "locked" not in err, err
        time.sleep(0.2)
    for writer in writers:
        _, err = writer.communicate()
        assert writer.returncode == 0, err
        assert "locked" not in err
    connection = sqlite3.connect(db)
    assert connection.execute("SELECT count(*), min(status), max(status) FROM runs").fetchone() == (4, "finished", "finished")
    steps = 2 * -(-1437 // 64)
    per_run = connection.execute("SELECT run_id, count(*) FROM kernel_snapshots GROUP BY run_id ORDER BY run_id").fetchall()
    assert [count for _, count in per_run] == [steps + 1] * 4
    losses = connection.execute("SELECT count(*) FROM metrics WHERE name = 'train_loss' GROUP BY run_id").fetchall()
    assert losses == [(steps,)] * 4
    assert connection.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)
    assert readers_ok >= 1


def _tables(url: str) -> set[str]:
    from sqlalchemy import create_engine, inspect

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def test_many_processes_migrate_a_new_database_exactly_once(db_url):
    from sqlalchemy import create_engine

    from convexp.store.database import head_revision

    processes = [start("db", "upgrade", "--db", db_url) for _ in range(8)]
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
    engine = create_engine(db_url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [(head_revision(),)]
        if engine.dialect.name == "sqlite":
            assert connection.exec_driver_sql("PRAGMA integrity_check").one() == ("ok",)
    engine.dispose()


def test_a_failed_migration_leaves_the_old_revision(db_url, monkeypatch):
    """The upgrade runs in one transaction: if it fails part-way, nothing of it remains. (A new SQLite
    file is created from the models without migrations, so there the database starts at 0005.)"""
    from alembic import command
    from sqlalchemy import create_engine

    from convexp.errors import StoreError
    from convexp.store import Store
    from convexp.store.database import _alembic_config

    real_upgrade = command.upgrade
    sqlite = db_url.startswith("sqlite")
    if sqlite:
        engine = create_engine(db_url)
        with engine.begin() as connection:
            real_upgrade(_alembic_config(connection), "0005")
        engine.dispose()
    before = _tables(db_url)

    def upgrade_then_fail(config, revision):
        real_upgrade(config, revision)  # creates or alters every table...
        config.attributes["connection"].exec_driver_sql("SELECT * FROM no_such_table")  # ...then fails

    monkeypatch.setattr(command, "upgrade", upgrade_then_fail)
    with pytest.raises(StoreError, match="migration failed"):
        Store(db_url)
    assert _tables(db_url) == before  # rolled back: no table, or the old ones, as they were
    if sqlite:
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as connection:
            assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [("0005",)]
    monkeypatch.setattr(command, "upgrade", real_upgrade)
    Store(db_url).close()  # and a later open migrates it properly
    assert "runs" in _tables(db_url)


def test_a_killed_run_shows_as_stale_and_its_database_is_intact(tmp_path):
    body = {**TINY_DIGITS, "epochs": ENDLESS, "snapshots": {"every": 1}}
    path = write_experiments(tmp_path / "e.yaml", {"long": body})
    db = tmp_path / "r.db"
    process = start("run", str(path), "--db", str(db))
    wait_for(db, "SELECT epochs_completed FROM runs", 2)
    process.kill()  # SIGKILL: no handler runs, nothing is flushed
    process.communicate(timeout=600)
    connection = sqlite3.connect(db)
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert connection.execute("SELECT status FROM runs").fetchone() == ("running",)  # as the process left it
    # every recorded step is complete: the last batch was written whole or not at all
    steps, snapshots, losses = connection.execute(
        "SELECT steps_completed, (SELECT count(*) FROM kernel_snapshots), "
        "(SELECT count(*) FROM metrics WHERE name = 'train_loss') FROM runs"
    ).fetchone()
    assert snapshots == steps + 1 and losses == steps
    runs = json.loads(
        subprocess.run(
            [sys.executable, "-m", "convexp", "runs", "--db", str(db), "--format", "json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert runs[0]["status"] == "stale"


RESUMABLE = {
    **TINY_DIGITS,
    "layers": [
        {"type": "conv", "filters": 8, "kernel_size": 3, "activation": "relu"},
        {"type": "maxpool", "pool_size": 2},
        {"type": "dropout", "rate": 0.25},  # dropout masks: the generator's state must be checkpointed too
        {"type": "flatten"},
        {"type": "dense", "units": 10},
    ],
    "optimizer": {"name": "adam", "learning_rate": 0.01},  # and Adam's moments and step count
    "batch_size": 8,
    "epochs": 40,
    "snapshots": {"every": 1},
}


def _series(db, run_id: int) -> tuple[list, list]:
    connection = sqlite3.connect(db)
    rows = connection.execute(
        "SELECT layer, step, epoch, encoding, kernel, bias FROM kernel_snapshots WHERE run_id = ? ORDER BY layer, step",
        (run_id,),
    ).fetchall()
    # the kernels decoded (a resumed run starts a new chain of deltas where it resumed, so its stored bytes differ)
    kernels = {layer: decode_kernels((r[1], r[3], r[4]) for r in rows if r[0] == layer) for layer in {r[0] for r in rows}}
    snapshots = [(layer, step, epoch, kernels[layer][step].tobytes(), bias) for layer, step, epoch, _, _, bias in rows]
    metrics = connection.execute(
        "SELECT name, step, epoch, value FROM metrics WHERE run_id = ? AND name != 'epoch_seconds' ORDER BY name, step",
        (run_id,),
    ).fetchall()
    return snapshots, metrics


@pytest.mark.parametrize(
    "moment",
    [
        "steps_completed = 0",
        "epochs_completed >= 1",
        "epochs_completed >= 7",
        "steps_completed >= 3000",
        "epochs_completed >= 30",
    ],
)
def test_a_run_killed_at_any_moment_resumes_to_the_same_kernels(tmp_path, moment):
    """SIGKILL, then `convexp run --resume`: the database is intact, recorded steps are whole, and the
    resumed numpy run ends bit-identical (every snapshot and metric) to the same run left alone."""
    path = write_experiments(tmp_path / "e.yaml", {"resumable": RESUMABLE})
    reference_db, db = tmp_path / "reference.db", tmp_path / "killed.db"
    from tests.conftest import run_cli

    assert run_cli("run", str(path), "--db", str(reference_db)).returncode == 0
    process = start("run", str(path), "--db", str(db))
    wait_for(db, f"SELECT count(*) FROM runs WHERE {moment}", 1)
    process.kill()
    process.communicate(timeout=600)
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    connection = sqlite3.connect(db)
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    steps, epochs = connection.execute("SELECT steps_completed, epochs_completed FROM runs").fetchone()
    per_layer = connection.execute("SELECT count(*) FROM kernel_snapshots GROUP BY layer").fetchall()
    assert per_layer in ([], [(steps + 1,)]), f"snapshots {per_layer} for {steps} whole steps"
    checkpoint = connection.execute("SELECT epoch, step FROM checkpoints").fetchall()
    assert checkpoint == ([(epochs, epochs * 180)] if epochs else [])
    connection.close()
    runs = json.loads(run_cli("runs", "--db", str(db), "--format", "json").stdout)
    assert runs[0]["status"] == "stale"

    resumed = run_cli("run", "--resume", "1", "--db", str(db))
    assert resumed.returncode == 0, resumed.stderr
    assert (f"resuming after epoch {epochs}" in resumed.stderr) == bool(epochs), resumed.stderr
    connection = sqlite3.connect(db)
    assert connection.execute("SELECT status, epochs_completed FROM runs").fetchone() == ("finished", 40)
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    killed_snapshots, killed_metrics = _series(db, 1)
    reference_snapshots, reference_metrics = _series(reference_db, 1)
    assert len(killed_snapshots) == len(reference_snapshots) == 40 * 180 + 1
    assert killed_snapshots == reference_snapshots  # bit-identical kernels and biases at every step
    assert killed_metrics == reference_metrics


def test_resume_refuses_a_finished_or_running_run_and_changes_nothing(tmp_path):
    from tests.conftest import run_cli, sha256

    path = write_experiments(tmp_path / "e.yaml", {"tiny": TINY_DIGITS})
    db = tmp_path / "r.db"
    assert run_cli("run", str(path), "--db", str(db)).returncode == 0
    before = sha256(db)
    result = run_cli("run", "--resume", "1", "--db", str(db))
    assert result.returncode == 1 and result.stderr.strip() == "Error: run 1 is finished: there is nothing to resume"
    result = run_cli("run", "--resume", "7", "--db", str(db))
    assert result.returncode == 1 and "no run with id 7" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("run", "--resume", "1", "--epochs", "3", "--db", str(db))
    assert result.returncode == 1 and "cannot be combined with --epochs" in result.stderr
    assert sha256(db) == before

    connection = sqlite3.connect(db)
    connection.execute(  # this test's process as the owner (its start time unknown: judged by the heartbeat)
        "UPDATE runs SET status = 'running', pid = ?, owner_started_at = NULL, heartbeat_at = datetime('now')", (os.getpid(),)
    )
    connection.commit()
    connection.close()
    before = sha256(db)
    result = run_cli("run", "--resume", "1", "--db", str(db))
    assert result.returncode == 1 and "run 1 is still running (pid" in result.stderr, result.stderr
    assert sha256(db) == before


@pytest.fixture
def mounted(tmp_path):
    """Mount file systems for a test (a small tmpfs, a read-only bind): needs root, as in CI; else skip."""
    mounts = []

    def mount(*args: str) -> None:
        target = args[-1]
        result = subprocess.run(["mount", *args], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount file systems here ({result.stderr.strip()}): the test needs root")
        mounts.append(target)

    yield mount
    for target in reversed(mounts):
        subprocess.run(["umount", "-l", target], capture_output=True)


def _one_error_line(result) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_full_disk_stops_the_run_keeps_whole_steps_and_resumes_once_there_is_space(tmp_path, mounted):
    from tests.conftest import run_cli, sha256

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted("-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk))
    path = write_experiments(tmp_path / "e.yaml", {"long": {**TINY_DIGITS, "epochs": 20, "snapshots": {"every": 1}}})
    db = disk / "r.db"
    line = _one_error_line(run_cli("run", str(path), "--db", str(db)))
    assert line.startswith(f"Error: {db}: the disk is full") and "--resume" in line, line
    connection = sqlite3.connect(db)
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    status, steps = connection.execute("SELECT status, steps_completed FROM runs").fetchone()
    assert status == "failed" and 0 < steps < 20 * 23
    assert connection.execute("SELECT count(*) FROM kernel_snapshots").fetchone() == (steps + 1,)  # whole steps only
    connection.close()

    before = sha256(db)  # the disk stays full: a new run is refused before it starts, and the file is left as it was
    with contextlib.suppress(OSError), open(disk / "filler", "wb") as filler:
        while True:
            filler.write(b"\0" * 4096)
            filler.flush()
    line = _one_error_line(run_cli("run", str(path), "--db", str(db)))
    assert "the runs would write up to" in line and "more than the 0 B free on its disk" in line, line
    assert sha256(db) == before

    (disk / "filler").unlink()
    subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
    resumed = run_cli("run", "--resume", "1", "--db", str(db))
    assert resumed.returncode == 0, resumed.stderr
    connection = sqlite3.connect(db)
    assert connection.execute("SELECT status, steps_completed FROM runs").fetchone() == ("finished", 20 * 23)
    assert connection.execute("SELECT count(*), count(DISTINCT step) FROM kernel_snapshots").fetchone() == (20 * 23 + 1,) * 2


def test_a_read_only_directory_can_be_read_but_not_recorded_into(tmp_path, mounted):
    from tests.conftest import run_cli, sha256

    source, read_only = tmp_path / "source", tmp_path / "read-only"
    source.mkdir()
    read_only.mkdir()
    path = write_experiments(tmp_path / "e.yaml", {"tiny": TINY_DIGITS})
    assert run_cli("run", str(path), "--db", str(source / "r.db")).returncode == 0
    mounted("--bind", str(source), str(read_only))
    mounted("-o", "remount,ro,bind", str(read_only))
    db = read_only / "r.db"
    before = sha256(db)
    line = _one_error_line(run_cli("run", str(path), "--db", str(db)))
    assert (
        line
        == f"Error: {db}: cannot record here: its directory {read_only} is read-only (SQLite writes its journal files beside the database)"
    )
    line = _one_error_line(run_cli("run", str(path), "--db", str(read_only / "new.db")))
    assert line.startswith(f"Error: {read_only / 'new.db'}: cannot create the database: its directory")
    # reading needs no writing
    runs = json.loads(run_cli("runs", "--db", str(db), "--format", "json").stdout)
    assert [r["status"] for r in runs] == ["finished"]
    query = run_cli("query", "SELECT count(*) AS n FROM runs", "--db", str(db), "--format", "json")
    assert json.loads(query.stdout) == [{"n": 1}], query.stderr
    assert sha256(db) == before


def test_a_read_only_database_file_is_refused_for_recording(tmp_path, mounted):
    """The file itself is read-only (bound read-only over itself: chmod does not stop root), its folder is not."""
    from tests.conftest import run_cli, sha256

    path = write_experiments(tmp_path / "e.yaml", {"tiny": TINY_DIGITS})
    db = tmp_path / "r.db"
    assert run_cli("run", str(path), "--db", str(db)).returncode == 0
    mounted("--bind", str(db), str(db))
    mounted("-o", "remount,ro,bind", str(db))
    before = sha256(db)
    line = _one_error_line(run_cli("run", str(path), "--db", str(db)))
    assert line == f"Error: {db}: cannot record here: the database file is read-only"
    listed = run_cli("runs", "--db", str(db))
    assert listed.returncode == 0 and "finished" in listed.stdout, listed.stderr
    assert sha256(db) == before
