"""`convexp db copy`: runs move between SQLite and PostgreSQL whole, once, with identical bytes."""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import create_engine

from tests.conftest import TINY_DIGITS, run_cli, write_experiments


def _digest(url: str) -> dict[str, str]:
    """A digest of each table's contents in a database-neutral order (ids of rows left out)."""
    queries = {
        "kernel_snapshots": "SELECT run_id, layer, step, epoch, shape, kernel, bias, encoding, base_step FROM kernel_snapshots ORDER BY run_id, layer, step",
        "metrics": "SELECT run_id, name, step, epoch, value FROM metrics ORDER BY run_id, name, step",
        "checkpoints": "SELECT run_id, epoch, step, state FROM checkpoints ORDER BY run_id",
    }
    engine = create_engine(url)
    digests = {}
    with engine.connect() as connection:
        for table, sql in queries.items():
            digest = hashlib.sha256()
            for row in connection.exec_driver_sql(sql):
                for value in row:
                    digest.update(bytes(value) if isinstance(value, (bytes, memoryview)) else repr(value).encode())
            digests[table] = digest.hexdigest()
    engine.dispose()
    return digests


def _runs(url: str) -> list[dict]:
    result = run_cli("runs", "--db", url, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_copy_to_postgresql_and_back_is_identical_and_never_duplicates(tmp_path, postgres_url):
    path = write_experiments(
        tmp_path / "e.yaml", {"grid": {**TINY_DIGITS, "seed": [0, 1, 2], "epochs": 2, "snapshots": {"every": 1}}}
    )
    laptop, back = f"sqlite:///{tmp_path / 'laptop.db'}", str(tmp_path / "back.db")
    assert run_cli("run", str(path), "--db", laptop).returncode == 0

    first = run_cli("db", "copy", laptop, postgres_url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"copied 3 run(s) from {tmp_path / 'laptop.db'} to postgresql+psycopg://")
    again = run_cli("db", "copy", laptop, postgres_url)
    assert "copied 0 run(s)" in again.stdout and "skipped 3 run(s) already there: 1, 2, 3" in again.stdout
    assert run_cli("db", "copy", postgres_url, back).returncode == 0

    assert _runs(laptop) == _runs(postgres_url) == _runs(back)
    assert _digest(laptop) == _digest(postgres_url) == _digest(f"sqlite:///{back}")


def test_a_copied_run_whose_id_is_taken_gets_a_new_one(tmp_path):
    path = write_experiments(tmp_path / "e.yaml", {"tiny": TINY_DIGITS})
    a, b = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    assert run_cli("run", str(path), "--db", a).returncode == 0
    assert run_cli("run", str(path), "--db", b, "--seed", "5").returncode == 0  # b's run 1 is another run
    result = run_cli("db", "copy", a, b)
    assert result.returncode == 0 and result.stdout.strip().endswith(": 1 as 2"), result.stdout
    runs = _runs(b)
    assert [(r["id"], r["status"]) for r in runs] == [(1, "finished"), (2, "finished")]
    engine = create_engine(f"sqlite:///{b}")
    with engine.connect() as connection:
        seeds = connection.exec_driver_sql(
            "SELECT id, seed, (SELECT count(*) FROM kernel_snapshots k WHERE k.run_id = r.id) FROM runs r"
        ).all()
    assert [tuple(s) for s in seeds] == [(1, 5, 2), (2, 0, 2)]
    missing = run_cli("db", "copy", a, b, "--run", "9")
    assert missing.returncode == 1 and "no run with id 9" in missing.stderr and "Traceback" not in missing.stderr


def test_copy_reports_its_progress_run_by_run(tmp_path):
    from convexp.store import Store
    from convexp.store.copy import copy_runs

    path = write_experiments(tmp_path / "e.yaml", {"grid": {**TINY_DIGITS, "seed": [0, 1, 2]}})
    assert run_cli("run", str(path), "--db", str(tmp_path / "a.db")).returncode == 0
    calls = []
    with Store(tmp_path / "a.db") as source, Store(tmp_path / "b.db") as destination:
        report = copy_runs(source, destination, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)] and [a for a, _ in report.copied] == [1, 2, 3]


def test_a_sweep_s_trials_are_copied_with_their_sweep_once(tmp_path):
    """Trials keep their sweep and numbers in the destination, whose own sweep 1 is another; copying part of a sweep
    and then the rest puts every trial under one sweep, and --resume-sweep there sees all of it."""
    sweep = {"method": "grid", "parameters": {"seed": {"int": [0, 2]}}}
    path = write_experiments(
        tmp_path / "e.yaml", {"s": {**TINY_DIGITS, "sweep": sweep}, "other": {**TINY_DIGITS, "sweep": sweep}}
    )
    a, b = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    assert run_cli("run", str(path), "-e", "s", "--db", a).returncode == 0
    assert run_cli("run", str(path), "-e", "other", "--db", b).returncode == 0  # b's sweep 1 is another sweep
    assert run_cli("db", "copy", a, b, "--run", "1").returncode == 0
    assert run_cli("db", "copy", a, b).returncode == 0

    def trials(url: str) -> list[tuple]:
        engine = create_engine(url)
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT s.uid, s.experiment, r.trial, r.seed FROM runs r JOIN sweeps s ON s.id = r.sweep_id "
                "WHERE r.experiment = 's' ORDER BY r.trial"
            ).all()
            sweeps = connection.exec_driver_sql("SELECT count(*) FROM sweeps").scalar()
        engine.dispose()
        return [tuple(r) for r in rows], sweeps

    (source, _), (copied, sweeps) = trials(f"sqlite:///{a}"), trials(f"sqlite:///{b}")
    assert copied == source and [t[2] for t in copied] == [1, 2, 3] and sweeps == 2
    resumed = run_cli("run", str(path), "-e", "s", "--db", b, "--resume-sweep")
    assert resumed.returncode == 0 and "sweep 2 of 's': 3/3 trial(s) (3 finished)" in resumed.stdout, resumed.stdout
