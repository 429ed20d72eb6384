"""The results database: migrations agree with the models, upgrades, refusals, and round trips of data."""

from __future__ import annotations

import os
import signal
import sqlite3
import time

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from convexp.errors import SchemaTooNewError, StoreError
from convexp.store import MetricRecord, SnapshotToWrite, Store
from convexp.store.database import _alembic_config, head_revision, resolve_url
from convexp.store.models import Base
from tests.conftest import decode_kernels, sha256

RUN_FIELDS = dict(
    experiment="e",
    backend="numpy",
    seed=0,
    dataset="digits",
    kernel_initializer="glorot_uniform",
    bias_initializer="zeros",
    spec={"epochs": 1},
    convexp_version="0",
    backend_version="0",
    framework="numpy",
    framework_version="0",
)


def test_migrations_have_a_single_head():
    script = ScriptDirectory.from_config(_alembic_config())
    assert len(script.get_heads()) == 1


def test_empty_database_upgrades_to_head_and_matches_the_models(db_url):
    Store(db_url).close()
    engine = create_engine(db_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert context.get_current_revision() == head_revision()
        assert compare_metadata(context, Base.metadata) == []
        tables = set(inspect(connection).get_table_names())
    engine.dispose()
    assert {"runs", "metrics", "kernel_snapshots", "checkpoints", "alembic_version"} <= tables


def schema_of(url: str) -> dict:
    """Every table's columns (in order, with type, nullability, default), keys, indexes and constraints."""
    engine = create_engine(url)
    described = {}
    with engine.connect() as connection:
        found = inspect(connection)
        for table in sorted(found.get_table_names()):
            described[table] = (
                [(c["name"], str(c["type"]), c["nullable"], c["default"]) for c in found.get_columns(table)],
                found.get_pk_constraint(table)["constrained_columns"],
                sorted(
                    (f["constrained_columns"], f["referred_table"], f["referred_columns"], f.get("options"))
                    for f in found.get_foreign_keys(table)
                ),
                sorted((i["name"], i["column_names"], bool(i["unique"])) for i in found.get_indexes(table)),
                sorted(u["column_names"] for u in found.get_unique_constraints(table)),
                sorted(c["sqltext"] for c in found.get_check_constraints(table)),
            )
    engine.dispose()
    return described


def alembic_modules_imported_by(statement: str) -> str:
    """The Alembic modules a fresh interpreter has imported after ``statement`` (with Store imported)."""
    import subprocess
    import sys

    code = f"import sys; from convexp.store import Store; {statement}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_new_sqlite_file_gets_the_schema_the_migrations_make_without_alembic(tmp_path):
    """A new SQLite file is created from the models and stamped at head (no Alembic import, no six
    migrations); it must be the very schema that running every migration makes."""

    from alembic import command

    created = tmp_path / "created.db"
    assert alembic_modules_imported_by(f"Store({str(created)!r}).close()") == "[]"
    migrated = f"sqlite:///{tmp_path / 'migrated.db'}"
    engine = create_engine(migrated)
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "head")
    engine.dispose()
    assert schema_of(f"sqlite:///{created}") == schema_of(migrated)
    assert set(schema_of(migrated)) == {"alembic_version", "runs", "metrics", "kernel_snapshots", "checkpoints", "sweeps"}
    with Store(str(created)) as store:  # and it is a database like any other
        run_id = store.create_run(**RUN_FIELDS)
        store.record(run_id, [MetricRecord(1, 1, "train_loss", 0.5)])
        assert [m.value for m in store.metrics(run_id)] == [0.5]


def test_an_old_database_with_data_upgrades_and_keeps_it(db_url):
    from alembic import command

    engine = create_engine(db_url)
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "0001")  # the first schema
        connection.exec_driver_sql(
            "INSERT INTO runs (experiment, backend, status, seed, dataset, kernel_initializer, bias_initializer, spec,"
            " convexp_version, backend_version, framework, framework_version, epochs_completed, steps_completed,"
            " started_at) VALUES ('old', 'numpy', 'finished', 3, 'digits', 'he_normal', 'zeros', '{}', '0.0', '0.0',"
            " 'numpy', '1', 2, 90, '2026-01-01 00:00:00')"
        )
        connection.exec_driver_sql(
            "INSERT INTO metrics (run_id, step, epoch, name, value) VALUES (1, 90, 2, 'test_accuracy', 0.5)"
        )
    with Store(db_url) as store:
        (run,) = store.list_runs()
        assert store.latest_checkpoint(run.id) is None  # table added by 0003
    assert (run.experiment, run.seed, run.test_accuracy, run.steps_completed) == ("old", 3, 0.5, 90)
    assert (run.heartbeat_at, run.pid, run.host) == (None, None, None)  # columns added by 0002
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head_revision()
    engine.dispose()


def test_every_migration_downgrades_and_upgrades_again(db_url):
    from alembic import command

    Store(db_url).close()
    engine = create_engine(db_url)
    with engine.begin() as connection:
        command.downgrade(_alembic_config(connection), "base")
    with engine.connect() as connection:
        assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    Store(db_url).close()


def test_sqlite_file_uses_wal(db_path):
    Store(str(db_path)).close()
    assert sqlite3.connect(db_path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_metrics_and_snapshots_round_trip_as_float32_little_endian(db_url):
    store = Store(db_url)
    run_id = store.create_run(**RUN_FIELDS)
    rng = np.random.default_rng(0)
    kernels = [rng.standard_normal((16, 32, 3, 3)).astype(np.float32)]
    for _ in range(2):  # small steps, as training takes: the stored deltas are smaller than the kernels
        kernels.append(kernels[-1] - np.float32(1e-4) * rng.standard_normal((16, 32, 3, 3)).astype(np.float32))
    store.record(
        run_id,
        [MetricRecord(1, 1, "train_loss", 0.5), MetricRecord(2, 1, "train_loss", 0.25), MetricRecord(2, 1, "test_accuracy", 0.9)],
        [SnapshotToWrite("conv1", step, 0, k, np.arange(16, dtype=np.float32)) for step, k in enumerate(kernels)],
        epochs_completed=1,
        steps_completed=2,
    )
    store.finish_run(run_id, "finished")
    series = store.kernel_series(run_id, "conv1")
    np.testing.assert_array_equal(series.kernels, np.stack(kernels))
    np.testing.assert_array_equal(series.steps, [0, 1, 2])
    assert [m.value for m in store.metrics(run_id, ["train_loss"])] == [0.5, 0.25]
    run = store.get_run(run_id)
    assert (run.status, run.test_accuracy, run.epochs_completed, run.steps_completed) == ("finished", 0.9, 1, 2)
    store.close()
    # the bytes, read without convexp, are little-endian float32 in (out, in, kh, kw) order
    engine = create_engine(db_url)
    with engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT step, encoding, kernel, shape FROM kernel_snapshots ORDER BY step").all()
    engine.dispose()
    assert {r.shape for r in rows} == {"[16, 32, 3, 3]"}
    # step 0 starts the chain as plain float32 bytes; the steps after it are XOR deltas
    assert [r.encoding for r in rows] == ["raw", "xor-zstd", "xor-zstd"]
    assert np.frombuffer(bytes(rows[0].kernel), "<f4").reshape(16, 32, 3, 3).tolist() == kernels[0].tolist()
    decoded = decode_kernels((r.step, r.encoding, r.kernel) for r in rows)
    for step in (1, 2):
        np.testing.assert_array_equal(decoded[step].reshape(16, 32, 3, 3), kernels[step])


def test_duplicate_snapshot_is_refused_and_the_batch_rolls_back(db_url):
    store = Store(db_url)
    run_id = store.create_run(**RUN_FIELDS)
    k = np.zeros((1, 1, 3, 3), np.float32)
    store.record(run_id, [], [SnapshotToWrite("conv1", 0, 0, k, None)])
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        store.record(run_id, [MetricRecord(1, 1, "train_loss", 1.0)], [SnapshotToWrite("conv1", 0, 0, k, None)])
    assert store.metrics(run_id) == []  # the metric of the failed batch was not written either
    store.close()


def test_a_checkpoint_is_replaced_and_reopening_drops_what_came_after_it(db_url):
    from convexp.model.weights import Checkpoint

    store = Store(db_url)
    run_id = store.create_run(**RUN_FIELDS)
    k = np.zeros((1, 1, 3, 3), np.float32)
    store.record(
        run_id,
        [MetricRecord(s, 1, "train_loss", 1.0) for s in (1, 2)],
        [SnapshotToWrite("conv1", s, 1, k, None) for s in (0, 1, 2)],
        checkpoint=Checkpoint(1, 2, b"first"),
        epochs_completed=1,
        steps_completed=2,
    )
    store.record(
        run_id,
        [MetricRecord(s, 2, "train_loss", 1.0) for s in (3, 4)],
        [SnapshotToWrite("conv1", s, 2, k, None) for s in (3, 4)],
        checkpoint=Checkpoint(2, 4, b"second \x00 bytes"),
        epochs_completed=2,
        steps_completed=4,
    )
    store.record(run_id, [MetricRecord(5, 3, "train_loss", 1.0)], [SnapshotToWrite("conv1", 5, 3, k, None)], steps_completed=5)
    store.finish_run(run_id, "interrupted")
    assert store.reopen_run(run_id) == Checkpoint(2, 4, b"second \x00 bytes")
    assert list(store.kernel_series(run_id, "conv1").steps) == [0, 1, 2, 3, 4]
    assert [m.step for m in store.metrics(run_id)] == [1, 2, 3, 4]
    run = store.get_run(run_id)
    assert (run.status, run.steps_completed, run.epochs_completed, run.finished_at) == ("running", 4, 2, None)
    store.close()


def test_database_from_a_newer_convexp_is_refused_and_left_unchanged(db_url):
    Store(db_url).close()
    engine = create_engine(db_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_future'")
    with pytest.raises(SchemaTooNewError, match="9999_future.*newer than this convexp"):
        Store(db_url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [("9999_future",)]
        assert "checkpoints" in inspect(connection).get_table_names()
    engine.dispose()


def test_a_newer_sqlite_file_is_left_byte_identical(db_path):
    Store(str(db_path)).close()
    connection = sqlite3.connect(db_path)
    connection.execute("UPDATE alembic_version SET version_num = '9999_future'")
    connection.commit()
    connection.close()
    before = sha256(db_path)
    with pytest.raises(SchemaTooNewError):
        Store(str(db_path))
    assert sha256(db_path) == before


def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("this is not a database\n" * 100)
    with pytest.raises(StoreError, match="not a usable database"):
        Store(str(path))
    assert path.read_text().startswith("this is not a database")


def test_a_foreign_sqlite_database_is_not_migrated(tmp_path):
    path = tmp_path / "other.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE customers (id INTEGER)")
    connection.commit()
    connection.close()
    with pytest.raises(StoreError, match="not a convexp database"):
        Store(str(path))


def test_missing_database_is_an_error_when_it_must_exist(tmp_path):
    with pytest.raises(StoreError, match="no such database"):
        Store(str(tmp_path / "absent.db"), must_exist=True)
    assert not (tmp_path / "absent.db").exists()


def test_urls_and_paths(tmp_path, monkeypatch):
    from convexp.store.database import sqlite_path

    assert resolve_url("sqlite:///x.db") == "sqlite:///x.db"
    assert sqlite_path(resolve_url(str(tmp_path / "a.db"))) == tmp_path / "a.db"  # a path is a path, every character kept
    monkeypatch.setenv("CONVEXP_DB", str(tmp_path / "env.db"))
    assert sqlite_path(resolve_url(None)) == tmp_path / "env.db"


def test_list_runs_filters_by_experiment_backend_and_shown_status(db_path):
    with Store(db_path) as store:
        a = store.create_run(**RUN_FIELDS)
        b = store.create_run(**{**RUN_FIELDS, "experiment": "f", "backend": "torch"})
        c = store.create_run(**{**RUN_FIELDS, "pid": 2**22 + 12345})  # a process that does not exist: stale
        store.finish_run(a, "finished")
        assert [r.id for r in store.list_runs()] == [a, b, c]
        assert [r.id for r in store.list_runs(experiment="e")] == [a, c]
        assert [r.id for r in store.list_runs(backend="torch")] == [b]
        assert [r.id for r in store.list_runs(experiment="e", backend="torch")] == []
        assert [r.id for r in store.list_runs(status="finished")] == [a]
        assert [r.id for r in store.list_runs(status="stale")] == [c]
        assert [r.id for r in store.list_runs(status="running")] == [b]
        with pytest.raises(StoreError, match="unknown run status 'done'; known: queued, running"):
            store.list_runs(status="done")


def test_deleting_runs_removes_everything_they_recorded_or_nothing(db_url):
    from sqlalchemy import text

    from convexp.model.weights import Checkpoint

    store = Store(db_url)
    k = np.zeros((1, 1, 3, 3), np.float32)
    ids = [store.create_run(**RUN_FIELDS) for _ in range(3)]
    for run_id in ids:
        store.record(
            run_id,
            [MetricRecord(1, 1, "train_loss", 1.0)],
            [SnapshotToWrite("conv1", s, 1, k, None) for s in (0, 1)],
            checkpoint=Checkpoint(1, 1, b"state"),
            epochs_completed=1,
            steps_completed=1,
        )
    store.finish_run(ids[0], "finished")
    store.finish_run(ids[2], "failed")

    def counts():
        engine = create_engine(db_url)
        with engine.connect() as connection:
            result = {
                table: dict(connection.execute(text(f"SELECT run_id, count(*) FROM {table} GROUP BY run_id")).all())
                for table in ("metrics", "kernel_snapshots", "checkpoints")
            }
            result["runs"] = sorted(connection.execute(text("SELECT id FROM runs")).scalars())
        engine.dispose()
        return result

    before = counts()
    with pytest.raises(StoreError, match=f"no run with id {ids[2] + 1}; nothing was deleted"):
        store.delete_runs([ids[0], ids[2] + 1])
    with pytest.raises(StoreError, match=f"run {ids[1]} is still running .*nothing was deleted"):
        store.delete_runs([ids[0], ids[1]])  # this process is alive: its run is not stale
    assert counts() == before
    assert store.delete_runs([ids[2], ids[0]]) == [ids[0], ids[2]]
    after = counts()
    assert after["runs"] == [ids[1]]
    assert after["metrics"] == {ids[1]: 1} and after["kernel_snapshots"] == {ids[1]: 2} and after["checkpoints"] == {ids[1]: 1}
    store.compact()
    store.close()


def test_list_runs_by_id_names_the_ids_that_do_not_exist(db_path):
    with Store(db_path) as store:
        a, b = store.create_run(**RUN_FIELDS), store.create_run(**{**RUN_FIELDS, "experiment": "f"})
        assert [r.id for r in store.list_runs(run_ids=[b, a])] == [a, b]
        assert [r.id for r in store.list_runs(run_ids=[a, b], experiment="f")] == [b]
        with pytest.raises(StoreError, match=f"no run with id {b + 1}, {b + 5}$"):
            store.list_runs(run_ids=[a, b + 5, b + 1])


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="signals")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_during_a_write_lands_after_it(db_path, signum):
    """A real signal in the middle of a write transaction: the batch is committed whole, the
    interrupt is raised once the write has ended, and the next write finds no lock to wait for."""
    from sqlalchemy import event

    def raise_interrupt(number, frame):
        raise KeyboardInterrupt  # what `convexp run` installs for SIGTERM

    previous = signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else raise_interrupt)
    store = Store(db_path)
    try:
        run_id = store.create_run(**RUN_FIELDS)

        def signal_mid_write(connection, cursor, statement, *args):
            if statement.startswith("INSERT INTO metrics"):
                os.kill(os.getpid(), signum)

        event.listen(store.writer, "before_cursor_execute", signal_mid_write)
        kernel = np.zeros((1, 1, 3, 3), np.float32)
        with pytest.raises(KeyboardInterrupt):
            store.record(
                run_id, [MetricRecord(1, 1, "train_loss", 0.5)], [SnapshotToWrite("conv1", 1, 1, kernel, None)], steps_completed=1
            )
        event.remove(store.writer, "before_cursor_execute", signal_mid_write)
        started = time.monotonic()
        store.finish_run(run_id, "interrupted", "stopped")
        assert time.monotonic() - started < 5
        assert [m.value for m in store.metrics(run_id)] == [0.5]
        assert store.kernel_series(run_id, "conv1").steps.tolist() == [1]
        assert store.get_run(run_id).status == "interrupted"
    finally:
        signal.signal(signum, previous)
        store.close()


def test_snapshot_summary_and_last_metrics_read_no_kernel_bytes_and_agree_with_the_rows(db_url):
    from convexp.store import LayerSnapshots

    store = Store(db_url)
    run_id = store.create_run(**RUN_FIELDS)
    k1, k2 = np.zeros((4, 1, 3, 3), np.float32), np.zeros((8, 4, 3, 3), np.float32)
    store.record(
        run_id,
        [MetricRecord(s, 1, "train_loss", 1.0 / s) for s in (1, 2, 3)] + [MetricRecord(3, 1, "test_accuracy", 0.5)],
        [SnapshotToWrite("conv1", s, 1, k1, None) for s in (0, 1, 2, 3)]
        + [SnapshotToWrite("conv2", s, 1, k2, None) for s in (0, 3)],
    )
    store.record(run_id, [MetricRecord(4, 2, "train_loss", 0.2)], [])
    assert store.snapshot_summary(run_id) == [
        LayerSnapshots("conv1", 4, 0, 3, (4, 1, 3, 3)),
        LayerSnapshots("conv2", 2, 0, 3, (8, 4, 3, 3)),
    ]
    last = store.last_metrics(run_id)
    assert last == {
        "test_accuracy": MetricRecord(3, 1, "test_accuracy", 0.5),
        "train_loss": MetricRecord(4, 2, "train_loss", 0.2),
    }
    store.close()


def test_one_value_of_a_metric_for_every_run_last_least_greatest_or_at_a_step(db_url):
    from convexp.errors import StoreError

    store = Store(db_url)
    losses = {1: [3.0, 1.0, 2.0, 0.5], 2: [4.0, 5.0]}  # run -> train_loss at steps 10, 20, ...
    ids = {}
    for run, values in losses.items():
        ids[run] = store.create_run(**RUN_FIELDS)
        store.record(ids[run], [MetricRecord(10 * (k + 1), 1, "train_loss", v) for k, v in enumerate(values)], [])
    quiet = store.create_run(**RUN_FIELDS)  # records another metric only: absent from the column
    store.record(quiet, [MetricRecord(1, 1, "test_accuracy", 0.5)], [])
    column = lambda how, step=None: store.metric_of_runs("train_loss", how, step)  # noqa: E731
    assert column("last") == {ids[1]: 0.5, ids[2]: 5.0}
    assert column("min") == {ids[1]: 0.5, ids[2]: 4.0} and column("max") == {ids[1]: 3.0, ids[2]: 5.0}
    assert column("at", 25) == {ids[1]: 1.0, ids[2]: 5.0}  # the last value recorded at or before step 25
    assert column("at", 5) == {}
    with pytest.raises(StoreError, match="not 'best'"):
        column("best")
    with pytest.raises(StoreError, match="needs the step"):
        column("at")
    store.close()


def test_the_schema_head_constant_is_alembic_s_head():
    """SCHEMA_HEAD lets a database at head open without importing Alembic; it must name the newest migration."""
    from convexp.store.database import SCHEMA_HEAD

    assert SCHEMA_HEAD == head_revision()


def test_opening_a_database_at_head_imports_no_alembic(tmp_path):

    db = tmp_path / "r.db"
    Store(str(db)).close()  # created and migrated
    assert alembic_modules_imported_by(f"Store({str(db)!r}, must_exist=True).close()") == "[]"
