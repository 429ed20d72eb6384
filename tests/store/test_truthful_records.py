"""Results land where the user said and nothing is reported done that the database does not hold:
database paths kept character for character, a database deleted under a run, readers that meet
data convexp did not write, duplicate YAML keys, names and terminals of every kind, bad settings,
and a child process forked inside a tracked run."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import convexp
from convexp.errors import StoreError
from convexp.store import Store
from tests.conftest import TINY_DIGITS, run_cli, write_experiments

QUICK = {**TINY_DIGITS, "max_steps": 3, "snapshots": {"every": 1}}
NAMES = ["we?ird #1.db", "x.db?mode=ro", "a%20b.db", "with space.db", "été 数据.db", "semi;colon&amp.db", "hash#.db"]


def track_into(db: str, experiment: str = "walk", steps: int = 3) -> None:
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    with convexp.track(experiment, db=db) as run:
        for step in range(steps):
            run.log_kernels({"conv1": (kernel * np.float32(0.9**step), np.zeros(4, np.float32))}, step=step)
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)


# --- 1. a database path is a path ----------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_every_character_of_a_database_path_is_kept(tmp_path, name, monkeypatch):
    monkeypatch.chdir(tmp_path)
    track_into(name)
    made = sorted(p.name for p in tmp_path.iterdir())
    assert name in made, made
    assert all(p == name or p.startswith(name + ".") or p.startswith(name + "-") for p in made), made  # lock, WAL
    with Store(name) as store:
        assert store.location == str(tmp_path / name)
        assert [r.experiment for r in store.list_runs()] == ["walk"]
    with contextlib.closing(sqlite3.connect(tmp_path / name)) as connection:  # the very file, read without convexp
        assert connection.execute("SELECT count(*) FROM kernel_snapshots").fetchone() == (3,)


def test_the_cli_records_into_the_path_typed_and_its_hints_name_it_quoted(tmp_path):
    experiments = write_experiments(tmp_path / "e.yaml", {"quick": QUICK})
    for name in ("we?ird #1.db", "x.db?mode=ro"):
        result = run_cli("run", str(experiments), "--db", name, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / name).is_file()
        hint = f"recorded in {tmp_path / name}; next: `convexp show 1 --db '{name}'`"
        assert hint in result.stderr, result.stderr
        shown = run_cli("runs", "--db", name, "--format", "json", cwd=tmp_path)
        assert [r["experiment"] for r in json.loads(shown.stdout)] == ["quick"]
    assert not (tmp_path / "we").exists() and not (tmp_path / "x.db").exists()


def test_sqlite_url_parameters_are_refused_and_read_only_is_convexps_own(tmp_path):
    track_into(str(tmp_path / "x.db"))
    result = run_cli("runs", "--db", f"sqlite:///{tmp_path / 'x.db'}?mode=ro")
    assert result.returncode == 1
    assert "convexp takes no SQLite URL parameters (mode); give the file's path" in result.stderr
    assert run_cli("runs", "--db", f"sqlite:///{tmp_path / 'x.db'}").returncode == 0  # a plain URL is fine


# --- 2. a run finishes only if the database still holds it ----------------------------------


def test_a_database_deleted_under_a_tracked_run_is_an_error_not_a_success(tmp_path):
    db = tmp_path / "d.db"
    run = convexp.track("gone", db=str(db))
    run.log_metrics({"loss": 1.0}, step=1)
    db.unlink()
    with pytest.raises(
        StoreError, match=r"d\.db: the database file was deleted while run 1 was recording; what it recorded is lost"
    ):
        run.finish()


def test_a_database_replaced_under_a_tracked_run_is_an_error(tmp_path):
    db = tmp_path / "d.db"
    run = convexp.track("gone", db=str(db))
    run.log_metrics({"loss": 1.0}, step=1)
    db.unlink()
    track_into(str(db), "another")  # a new file at the same path
    with pytest.raises(StoreError, match="the database file was replaced while run 1 was recording"):
        run.finish()


def test_a_database_deleted_during_convexp_run_exits_non_zero(tmp_path):
    """`convexp run` must not say `recorded in d.db` when there is nothing at that path."""
    import time

    spec = {**QUICK, "epochs": 40, "max_steps": None, "batch_size": 32, "snapshots": {"every": 1}}
    experiments = write_experiments(tmp_path / "e.yaml", {"long": spec})
    db = tmp_path / "d.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "convexp", "run", str(experiments), "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(sqlite3.Error, TypeError):
            with contextlib.closing(sqlite3.connect(db)) as connection:
                if connection.execute("SELECT steps_completed FROM runs").fetchone()[0] > 0:
                    break
        time.sleep(0.1)
    assert process.poll() is None, "the run ended before the test could delete its database"
    for path in tmp_path.glob("d.db*"):
        path.unlink()
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1, (out, err)
    assert "the database file was deleted while run 1 was recording; what it recorded is lost" in err
    assert "Traceback" not in err and "recorded in" not in err


# --- 5. readers never trust the data ---------------------------------------------------------


@pytest.fixture(scope="module")
def tampered(tmp_path_factory) -> dict[str, Path]:
    """Two tracked runs, then copies whose run 1 holds what convexp never writes: a NaN kernel (with a
    matching checksum), a snapshot of another shape, and gaps in its steps."""
    folder = tmp_path_factory.mktemp("tampered")
    base = folder / "base.db"
    for _ in range(2):
        track_into(str(base), steps=12)
    bias = np.zeros(4, np.float32).tobytes()

    def nan(connection):
        kernel = np.full((4, 1, 3, 3), np.nan, np.float32).tobytes()
        connection.execute(
            "UPDATE kernel_snapshots SET kernel = ?, checksum = ? WHERE run_id = 1 AND step = 11",
            (kernel, zlib.crc32(bias, zlib.crc32(kernel))),
        )

    def mixed(connection):
        kernel = np.ones((4, 1, 2, 2), np.float32).tobytes()
        connection.execute(
            "UPDATE kernel_snapshots SET kernel = ?, shape = '[4, 1, 2, 2]', checksum = ? WHERE run_id = 1 AND step = 5",
            (kernel, zlib.crc32(bias, zlib.crc32(kernel))),
        )

    def gaps(connection):
        connection.execute("DELETE FROM kernel_snapshots WHERE run_id = 1 AND step IN (3, 4, 11)")

    made = {}
    for name, change in (("nan", nan), ("mixed", mixed), ("gaps", gaps)):
        made[name] = folder / f"{name}.db"
        shutil.copyfile(base, made[name])
        with contextlib.closing(sqlite3.connect(made[name])) as connection:
            change(connection)
            connection.commit()
    return made


READERS = [
    ("filters", "1"),
    ("filters", "1", "--step", "5"),
    ("compare", "1", "2"),
    ("show", "1"),
    ("plot", "filters", "1", "--out", "{out}/f.png"),
    ("plot", "evolution", "1", "--out", "{out}/e.png"),
    ("report", "1", "--out", "{out}/r.html"),
]


@pytest.mark.parametrize("kind", ["nan", "mixed", "gaps"])
def test_readers_meet_data_convexp_never_writes_with_one_line(tampered, kind, tmp_path):
    expected = {
        "nan": "run 1, layer conv1: the kernel at step 11 holds NaN or infinity",
        "mixed": "run 1, layer conv1: the snapshot at step 5 has shape [4, 1, 2, 2], the one at step 0 [4, 1, 3, 3]",
        "gaps": None,  # a thinned run has gaps too: they are read as the steps there are
    }[kind]
    for args in READERS:
        args = tuple(a.format(out=tmp_path) for a in args)
        result = run_cli(*args, "--db", str(tampered[kind]))
        assert "Traceback" not in result.stderr + result.stdout, (args, result.stderr)
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert len(lines) == 1, (args, result.stderr)
            assert expected is not None and expected in lines[0], (args, lines)
    nan_or_mixed_refused = run_cli("filters", "1", "--db", str(tampered[kind]))
    assert (nan_or_mixed_refused.returncode != 0) == (kind == "nan" or kind == "mixed")

    from starlette.testclient import TestClient

    from convexp.ui import create_app

    with TestClient(create_app(str(tampered[kind]))) as client:
        for path in (
            "/api/runs/1/layers/conv1/kernels?step=last",
            "/api/runs/1/layers/conv1/kernels?step=5&count=8",
            "/api/runs/1/layers/conv1/filters/0",
            "/api/runs/1/layers/conv1/analysis",
            "/runs/1",
            "/compare?runs=1,2",
        ):
            response = client.get(path)
            assert response.status_code in (200, 400, 404), (path, response.status_code, response.text[:300])


# --- 7. duplicate YAML keys ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "experiments:\n  a: {dataset: digits}\n  b: {dataset: digits}\n  a: {dataset: mnist}\n",
            ":4: 'a' is given twice (lines 2 and 4)",
        ),
        (
            "experiments:\n  a:\n    dataset: digits\n    epochs: 1\n    epochs: 2\n",
            ":5: 'epochs' is given twice (lines 4 and 5)",
        ),
        (
            "experiments:\n  a:\n    layers: [{type: conv, filters: 1, filters: 2}]\n",
            ":3: 'filters' is given twice (lines 3 and 3)",
        ),
        ("default: a\ndefault: b\nexperiments: {}\n", ":2: 'default' is given twice (lines 1 and 2)"),
    ],
)
def test_a_key_given_twice_is_an_error_naming_it_and_both_lines(tmp_path, text, message):
    path = tmp_path / "e.yaml"
    path.write_text(text)
    result = run_cli("validate", str(path))
    assert result.returncode == 2
    assert f"Error: {path}{message}; keep one" in result.stderr


def test_yaml_merge_keys_still_override_on_purpose(tmp_path):
    text = (
        "experiments:\n  a: &base\n    dataset: digits\n    backend: numpy\n    epochs: 2\n"
        "    layers: [{type: conv, filters: 4, kernel_size: 3}, {type: flatten}, {type: dense, units: 10}]\n"
        "  b:\n    <<: *base\n    epochs: 1\n"
    )
    path = tmp_path / "e.yaml"
    path.write_text(text)
    result = run_cli("validate", str(path))
    assert result.returncode == 0, result.stderr


# --- 8. names ------------------------------------------------------------------------------------


def test_a_colon_in_an_experiment_name_is_refused(tmp_path):
    path = write_experiments(tmp_path / "e.yaml", {"a:b": QUICK})
    result = run_cli("validate", str(path))
    assert result.returncode == 2
    assert "experiment 'a:b': a name cannot hold ':' (EXPERIMENT:BACKEND uses it to name a backend); rename it" in result.stderr
    with pytest.raises(ValueError, match="a name cannot hold ':'"):
        convexp.track("a:b", db=str(tmp_path / "t.db"))
    assert not (tmp_path / "t.db").exists()


def test_user_text_is_never_read_as_markup_or_emoji(tmp_path):
    db = tmp_path / "m.db"
    track_into(str(db), "[bold]x[/bold] [red]y")
    missing = run_cli("show", "a:b:numpy", "--db", str(db))
    assert "no run matches 'a:b:numpy'" in missing.stderr, missing.stderr
    listed = run_cli("runs", "--db", str(db))
    assert "[bold]x[/bold] [red]y" in listed.stdout
    shown = run_cli("show", "[bold]x[/bold] [red]y:nope", "--db", str(db))
    assert "no run matches '[bold]x[/bold] [red]y:nope'" in shown.stderr, shown.stderr


# --- 9. any terminal, any setting -------------------------------------------------------------------


@pytest.mark.parametrize("environment", [{"LC_ALL": "C", "LANG": "C"}, {"PYTHONIOENCODING": "ascii"}])
def test_output_degrades_instead_of_failing_on_an_ascii_terminal(tmp_path, environment):
    db = tmp_path / "u.db"
    track_into(str(db), "été—数据")
    experiments = write_experiments(tmp_path / "e.yaml", {"été": QUICK})
    for args in (("runs",), ("show", "1"), ("query", "SELECT experiment FROM runs"), ("run", str(experiments))):
        result = run_cli(*args, "--db", str(db), env=environment)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr and "UnicodeEncodeError" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CONVEXP_CONFIRM_BYTES", "lots", "CONVEXP_CONFIRM_BYTES='lots' is not a whole number >= 0"),
        ("CONVEXP_CONFIRM_RUNS", "-3", "CONVEXP_CONFIRM_RUNS='-3' is not a whole number >= 0"),
        ("CONVEXP_MALLOC_TUNING", "yes", "CONVEXP_MALLOC_TUNING='yes': use 1"),
        ("CONVEXP_SNAPSHOT_ENCODING", "gzip", "CONVEXP_SNAPSHOT_ENCODING='gzip' is not a snapshot encoding"),
        ("CONVEXP_WRITER", "nope", "CONVEXP_WRITER='nope' is not a writer"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable_and_the_value(tmp_path, variable, value, message):
    experiments = write_experiments(tmp_path / "e.yaml", {"quick": QUICK})
    result = run_cli("run", str(experiments), "--db", str(tmp_path / "r.db"), env={variable: value})
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    if (tmp_path / "r.db").exists():
        with contextlib.closing(sqlite3.connect(tmp_path / "r.db")) as connection:
            assert connection.execute("SELECT count(*) FROM runs").fetchone() == (0,)


# --- 10. a forked child ------------------------------------------------------------------------------


def test_a_child_forked_inside_a_tracked_run_neither_writes_nor_closes_it(tmp_path):
    db = tmp_path / "f.db"
    script = tmp_path / "fork.py"
    script.write_text(
        "import os, sys, convexp\n"
        f"with convexp.track('forky', db={str(db)!r}) as run:\n"
        "    for step in range(3):\n"
        "        run.log_metrics({'loss': 1.0}, step=step)\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        run.log_metrics({'loss': 2.0}, step=10)\n"
        "        run.flush()\n"
        "        sys.exit(0)  # unwinds the with block in the child\n"
        "    _, status = os.waitpid(pid, 0)\n"
        "    print('child exit', os.waitstatus_to_exitcode(status))\n"
        "    for step in range(3, 6):\n"
        "        run.log_metrics({'loss': 1.0}, step=step)\n"
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "child exit 0" in result.stdout, result.stderr
    assert "Traceback" not in result.stderr and "has stopped" not in result.stderr, result.stderr
    with contextlib.closing(sqlite3.connect(db)) as connection:
        assert connection.execute("SELECT status FROM runs").fetchall() == [("finished",)]
        assert [s for (s,) in connection.execute("SELECT step FROM metrics ORDER BY step")] == [0, 1, 2, 3, 4, 5]
