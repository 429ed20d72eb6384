"""Storage that grows on purpose: estimates before runs start (checked against what real runs
write), confirmation and free-space refusals, thinning and vacuuming runs, run sizes, and Ctrl-C
reaching a run started with SIGINT ignored."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from convexp.experiments import estimate_disk
from convexp.experiments.grids import resolve_runs
from tests.conftest import REPO, TINY_DIGITS, run_cli, sha256, write_experiments
from tests.experiments.test_run_outcomes import _one_error_line, mounted  # noqa: F401  (a fixture)


def payload(db, run_id: int | None = None) -> tuple[int, int, int]:
    """Snapshot rows, their kernel + bias bytes, and metric rows, as plain SQL counts them."""
    where = "" if run_id is None else f" WHERE run_id = {run_id}"
    with contextlib.closing(sqlite3.connect(db)) as connection:  # closed: an open reader would hold the log
        rows, data = connection.execute(
            f"SELECT count(*), coalesce(sum(length(kernel) + coalesce(length(bias), 0)), 0) FROM kernel_snapshots{where}"
        ).fetchone()
        (metrics,) = connection.execute(f"SELECT count(*) FROM metrics{where}").fetchone()
    return rows, data, metrics


@pytest.mark.parametrize(
    "settings",
    [
        {"snapshots": {"every": 7}, "epochs": 2},  # every-7 steps and epoch ends (23 steps an epoch)
        {"snapshots": {"every": 1}, "epochs": 1, "max_steps": 10},  # cut short mid-epoch
        {"snapshots": {"epoch_end": False, "every": 5}, "epochs": 2, "log_every": 4, "batch_size": 100},
        {"snapshots": {"layers": ["conv1"]}, "epochs": 3},
    ],
)
def test_the_estimate_is_what_a_real_run_writes(tmp_path, settings):
    spec = {**TINY_DIGITS, "layers": [{"type": "conv", "filters": 3, "kernel_size": 3}, *TINY_DIGITS["layers"]], **settings}
    path = write_experiments(tmp_path / "e.yaml", {"sized": spec})
    (run,) = resolve_runs(path)
    expected = estimate_disk.estimate([run.spec])
    db = tmp_path / "r.db"
    # stored raw, the bytes are exactly the estimate's
    result = run_cli("run", str(path), "--db", str(db), env={"CONVEXP_SNAPSHOT_ENCODING": "raw"})
    assert result.returncode == 0, result.stderr
    rows, data, metrics = payload(db)
    assert (expected.snapshot_rows, expected.metric_rows) == (rows, metrics)
    assert expected.snapshot_bytes == data + rows * estimate_disk.SNAPSHOT_ROW_OVERHEAD
    assert f"this selection: 1 run(s), {expected.steps} steps, {rows} kernel snapshot(s)" in result.stderr
    # stored as XOR deltas (the default), they are fewer: the estimate is an upper bound
    encoded = tmp_path / "encoded.db"
    assert run_cli("run", str(path), "--db", str(encoded)).returncode == 0
    encoded_rows, encoded_data, _ = payload(encoded)
    assert encoded_rows == rows and encoded_data <= data


def test_the_estimate_is_near_the_file_size_of_an_every_step_run(tmp_path):
    # 64 5x5 filters: kernels enough to fill pages, so that what grows is the rows, not an empty file's pages
    wide = [{**TINY_DIGITS["layers"][0], "filters": 64, "kernel_size": 5}, *TINY_DIGITS["layers"][1:]]
    spec = {**TINY_DIGITS, "layers": wide, "epochs": 3, "snapshots": {"every": 1}}
    path = write_experiments(tmp_path / "e.yaml", {"every-step": spec})
    db = tmp_path / "r.db"
    assert run_cli("run", str(path), "--db", str(db)).returncode == 0
    grown = db.stat().st_size + sum(p.stat().st_size for p in tmp_path.glob("r.db-*"))
    expected = estimate_disk.estimate(r.spec for r in resolve_runs(path)).total_bytes
    empty = tmp_path / "empty.db"
    assert run_cli("db", "upgrade", "--db", str(empty)).returncode == 0
    assert 0.7 < expected / (grown - empty.stat().st_size) < 1.3


GRID = {
    **TINY_DIGITS,
    "snapshots": {"every": 1},
    "seed": list(range(2500)),
    "initializer": ["glorot_uniform", "he_normal"],
    "batch_size": [32, 64],
}


def test_a_ten_thousand_run_grid_is_counted_and_sized_before_anything_runs(tmp_path):
    path = write_experiments(tmp_path / "e.yaml", {"grid": GRID})
    result = run_cli("validate", str(path), "--db", str(tmp_path / "r.db"))
    assert result.returncode == 0, result.stderr
    single = {b: estimate_disk.estimate_run(resolve_runs(path)[0].spec.model_copy(update={"batch_size": b})) for b in (32, 64)}
    total = 5000 * (single[32].total_bytes + single[64].total_bytes)
    assert "grid: 10,000 run(s), digits" in result.stdout
    assert f"up to {estimate_disk.format_bytes(total)}" in result.stdout
    assert "free space where" in result.stdout and str(tmp_path / "r.db") in result.stdout


def test_a_big_selection_asks_first_and_answered_no_writes_nothing(tmp_path):
    path = write_experiments(tmp_path / "e.yaml", {"grid": GRID})
    db = tmp_path / "r.db"
    assert run_cli("run", str(path), "--db", str(db)).returncode == 1  # asked, and no answer is no
    assert not db.exists()
    run_cli("db", "upgrade", "--db", str(db))
    before = sha256(db)
    result = run_cli("run", str(path), "--db", str(db), input="n\n")
    assert result.returncode == 1
    assert "start 10,000 run(s) writing up to" in result.stderr
    assert "nothing was run (pass --yes to start without asking)" in result.stderr
    assert sha256(db) == before


def test_thresholds_come_from_the_environment_and_yes_skips_the_question(tmp_path):
    path = write_experiments(tmp_path / "e.yaml", {"pair": {**TINY_DIGITS, "seed": [0, 1], "max_steps": 2}})
    db = tmp_path / "r.db"
    env = {"CONVEXP_CONFIRM_RUNS": "1"}
    asked = run_cli("run", str(path), "--db", str(db), env=env, input="y\n")
    assert asked.returncode == 0 and "start 2 run(s)" in asked.stderr
    quiet = run_cli("run", str(path), "--db", str(db), "--yes", env=env)
    assert quiet.returncode == 0 and "start 2 run(s)" not in quiet.stderr
    assert sqlite3.connect(db).execute("SELECT count(*) FROM runs WHERE status = 'finished'").fetchone() == (4,)


def test_more_than_the_disk_holds_is_refused_in_one_line(tmp_path, mounted):  # noqa: F811
    small = tmp_path / "small"
    small.mkdir()
    mounted("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small))
    wide = [{"type": "conv", "filters": 32, "kernel_size": 3}, *TINY_DIGITS["layers"][1:]]
    big = {**TINY_DIGITS, "layers": wide, "epochs": 200, "snapshots": {"every": 1}}  # about 7 MB
    path = write_experiments(tmp_path / "e.yaml", {"big": big})
    db = small / "r.db"
    line = _one_error_line(run_cli("run", str(path), "--db", str(db)))
    assert line.startswith(f"Error: {db}: the runs would write up to ") and "free on its disk" in line, line
    assert not db.exists()


#: The every-step run's last update: not a multiple of the thinning's 10, so keeping the last step shows.
LAST = 125


def every_step_steps(db) -> list[int]:
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return [s for (s,) in connection.execute("SELECT DISTINCT step FROM kernel_snapshots ORDER BY step")]


@pytest.fixture(scope="module")
def every_step_mnist(tmp_path_factory):
    """mnist-keras-convnet (torch) on MNIST with kernels at every step, stopped after 125 updates: 126 snapshot steps."""
    from tests.conftest import mnist_folder

    folder = mnist_folder()
    if folder is None:
        pytest.skip("MNIST IDX files not found: set CONVEXP_TEST_MNIST or put them in ../shared/data/mnist")
    base = tmp_path_factory.mktemp("every-step")
    path = write_experiments(
        base / "e.yaml",
        {"every-step": {**_keras_example(), "backend": "torch", "epochs": 1, "max_steps": LAST, "snapshots": {"every": 1}}},
    )
    db = base / "r.db"
    result = run_cli("run", str(path), "--db", str(db), "--data-dir", str(folder))
    assert result.returncode == 0, result.stderr
    return db


def _keras_example() -> dict:
    import yaml

    spec = yaml.safe_load((REPO / "experiments.yaml").read_text())["experiments"]["mnist-keras-convnet"]
    return {k: v for k, v in spec.items() if k != "description"}


def test_thinning_keeps_every_kth_step_and_the_last_and_frees_what_it_says(every_step_mnist, tmp_path):
    db = tmp_path / "thin.db"
    db.write_bytes(every_step_mnist.read_bytes())
    assert every_step_steps(db) == list(range(LAST + 1))
    rows_before, bytes_before, metrics_before = payload(db)
    kept = [*range(0, LAST + 1, 10), LAST]  # every 10th step and the last (the run's only epoch end)
    deleted = 2 * (LAST + 1 - len(kept))  # conv1's and conv2's rows

    dry = run_cli("db", "thin", "1", "--keep-every", "10", "--dry-run", "--db", str(db))
    assert dry.returncode == 0 and f"run 1: would delete {deleted} snapshot row(s)" in dry.stdout, dry.stdout + dry.stderr
    assert every_step_steps(db) == list(range(LAST + 1))

    assert run_cli("db", "vacuum", "--db", str(db)).returncode == 0
    size_before = db.stat().st_size
    result = run_cli("db", "thin", "1", "--keep-every", "10", "--vacuum", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert every_step_steps(db) == kept
    rows, data, metrics = payload(db)
    freed = bytes_before - data
    assert rows_before - rows == deleted and metrics == metrics_before
    assert (
        f"deleted {deleted} snapshot row(s), {estimate_disk.format_bytes(freed)} of kernels; {len(kept)} step(s) kept"
        in result.stdout
    )
    shrunk = size_before - db.stat().st_size
    # never less than it says; more by the pages' slack around the rows it deleted (16 KB pages)
    assert freed <= shrunk <= freed * 1.10 + 2**16, (freed, shrunk)

    # everything that reads snapshots works on the steps that remain, and names them when asked for a gone one
    assert run_cli("compare", "1", "1", "--db", str(db)).returncode == 0
    assert run_cli("plot", "filters", "1", "--step", str(LAST), "--db", str(db), "--out", str(tmp_path / "f.png")).returncode == 0
    assert run_cli("plot", "evolution", "1", "--db", str(db), "--out", str(tmp_path / "e.png")).returncode == 0
    gone = _one_error_line(run_cli("filters", "1", "--step", "5", "--db", str(db)))
    assert f"no snapshot of conv1 at step 5 (recorded steps: 0, 10, 20, 30, 40, ..., {LAST})" in gone
    shown = json.loads(run_cli("show", "1", "--db", str(db), "-f", "json").stdout)
    assert shown["snapshots"]["conv2"]["count"] == len(kept)
    assert shown["storage"]["snapshot_bytes"] == data and shown["storage"]["snapshot_rows"] == rows


def test_thinning_refuses_a_running_run_and_keeps_epoch_ends(tmp_path):
    path = write_experiments(tmp_path / "e.yaml", {"tiny": {**TINY_DIGITS, "epochs": 3, "snapshots": {"every": 1}}})
    db = tmp_path / "r.db"
    assert run_cli("run", str(path), "--db", str(db)).returncode == 0
    assert run_cli("db", "thin", "1", "--db", str(db)).returncode == 0
    assert every_step_steps(db) == [0, 23, 46, 69]  # step 0 and the three epoch ends (23 steps an epoch)
    with sqlite3.connect(db) as connection:
        connection.execute(  # this test's process as the owner (its start time unknown: judged by the heartbeat)
            "UPDATE runs SET status = 'running', pid = ?, host = ?, owner_started_at = NULL, heartbeat_at = datetime('now')",
            (os.getpid(), os.uname().nodename),
        )
    line = _one_error_line(run_cli("db", "thin", "1", "--db", str(db)))
    assert line == "Error: run 1 is running; thin it once it has stopped (nothing was deleted)"


def test_runs_and_show_give_each_runs_size(tmp_path):
    path = write_experiments(tmp_path / "e.yaml", {"tiny": {**TINY_DIGITS, "seed": [0, 1], "snapshots": {"every": 2}}})
    db = tmp_path / "r.db"
    assert run_cli("run", str(path), "--db", str(db)).returncode == 0
    listed = json.loads(run_cli("runs", "--db", str(db), "-f", "json").stdout)
    with sqlite3.connect(db) as connection:
        (state,) = connection.execute("SELECT length(state) FROM checkpoints WHERE run_id = 2").fetchone()
    for run in listed:
        rows, data, metrics = payload(db, run["id"])
        shown = json.loads(run_cli("show", str(run["id"]), "--db", str(db), "-f", "json").stdout)["storage"]
        assert (shown["snapshot_rows"], shown["snapshot_bytes"], shown["metric_rows"]) == (rows, data, metrics)
        assert run["size_mb"] == round(shown["total_bytes"] / 1e6, 2)
    assert shown["checkpoint_bytes"] == state
    text = run_cli("show", "2", "--db", str(db)).stdout
    assert f"  storage     {estimate_disk.format_bytes(shown['total_bytes'])}: {rows} kernel snapshot(s)" in text


def test_ctrl_c_stops_a_run_started_with_sigint_ignored(tmp_path):
    """A shell script's background job starts with SIGINT ignored; kill -INT still stops convexp, as interrupted."""
    path = write_experiments(tmp_path / "e.yaml", {"long": {**TINY_DIGITS, "epochs": 500, "snapshots": {"every": 1}}})
    db = tmp_path / "r.db"
    script = f"{sys.executable} -m convexp run {path} --db {db} --yes & echo $!; wait $!; echo exit=$?"
    shell = subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = int(shell.stdout.readline())
    # what such a job inherits: SIGINT ignored (checked on a probe started the same way)
    probe = f"{sys.executable} -c 'import signal; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)' & wait"
    assert subprocess.run(["bash", "-c", probe], capture_output=True, text=True).stdout.strip() == "True"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # until it is training
        try:
            if db.exists() and sqlite3.connect(db).execute("SELECT count(*) FROM metrics").fetchone()[0] > 50:
                break
        except sqlite3.OperationalError:  # the schema is still being created
            pass
        time.sleep(0.2)
    os.kill(pid, signal.SIGINT)
    out, err = shell.communicate(timeout=600)
    assert out.strip().endswith("exit=130"), out + err
    assert "interrupted: the current run is marked 'interrupted'" in err
    with sqlite3.connect(db) as connection:
        status, steps = connection.execute("SELECT status, steps_completed FROM runs").fetchone()
        recorded = [s for (s,) in connection.execute("SELECT DISTINCT step FROM kernel_snapshots ORDER BY step")]
    assert status == "interrupted" and steps > 0
    assert recorded[: steps + 1] == list(range(steps + 1))  # whole steps, none missing
