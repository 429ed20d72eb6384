"""The results database: migrations agree with the models, upgrades, refusals, and round trips of data."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from convexp.errors import SchemaTooNewError, StoreError
from convexp.store import MetricRecord, SnapshotRow, Store
from convexp.store.database import _alembic_config, head_revision, resolve_url
from convexp.store.models import Base
from tests.conftest import sha256

RUN_FIELDS = dict(
    experiment="e", backend="numpy", seed=0, dataset="digits", kernel_initializer="glorot_uniform",
    bias_initializer="zeros", spec={"epochs": 1}, convexp_version="0", backend_version="0",
    framework="numpy", framework_version="0",
)


def test_migrations_have_a_single_head():
    script = ScriptDirectory.from_config(_alembic_config())
    assert len(script.get_heads()) == 1


def test_empty_database_upgrades_to_head_and_matches_the_models(db_path):
    Store(str(db_path)).close()
    engine = create_engine(f"sqlite:///{db_path}")
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert context.get_current_revision() == head_revision()
        assert compare_metadata(context, Base.metadata) == []
    tables = {r[0] for r in sqlite3.connect(db_path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "metrics", "kernel_snapshots", "alembic_version"} <= tables


def test_an_old_database_with_data_upgrades_and_keeps_it(db_path):
    from alembic import command

    engine = create_engine(f"sqlite:///{db_path}")
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "0001")  # the first schema
        connection.exec_driver_sql(
            "INSERT INTO runs (experiment, backend, status, seed, dataset, kernel_initializer, bias_initializer, spec,"
            " convexp_version, backend_version, framework, framework_version, epochs_completed, steps_completed,"
            " started_at) VALUES ('old', 'numpy', 'finished', 3, 'digits', 'he_normal', 'zeros', '{}', '0.0', '0.0',"
            " 'numpy', '1', 2, 90, '2026-01-01 00:00:00')"
        )
        connection.exec_driver_sql("INSERT INTO metrics (run_id, step, epoch, name, value) VALUES (1, 90, 2, 'test_accuracy', 0.5)")
    with Store(str(db_path)) as store:
        (run,) = store.list_runs()
    assert (run.experiment, run.seed, run.test_accuracy, run.steps_completed) == ("old", 3, 0.5, 90)
    assert (run.heartbeat_at, run.pid, run.host) == (None, None, None)  # columns added by 0002
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head_revision()


def test_sqlite_file_uses_wal(db_path):
    Store(str(db_path)).close()
    assert sqlite3.connect(db_path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_metrics_and_snapshots_round_trip_as_float32_little_endian(db_path):
    store = Store(str(db_path))
    run_id = store.create_run(**RUN_FIELDS)
    rng = np.random.default_rng(0)
    kernels = [rng.standard_normal((4, 2, 3, 3)).astype(np.float32) for _ in range(3)]
    store.record(
        run_id,
        [MetricRecord(1, 1, "train_loss", 0.5), MetricRecord(2, 1, "train_loss", 0.25), MetricRecord(2, 1, "test_accuracy", 0.9)],
        [SnapshotRow("conv1", step, 0, k, np.arange(4, dtype=np.float32)) for step, k in enumerate(kernels)],
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
    # the bytes, read without convexp, are little-endian float32 in (out, in, kh, kw) order
    blob, shape = sqlite3.connect(db_path).execute("SELECT kernel, shape FROM kernel_snapshots WHERE step = 1").fetchone()
    assert shape == "[4, 2, 3, 3]"
    np.testing.assert_array_equal(np.frombuffer(blob, "<f4").reshape(4, 2, 3, 3), kernels[1])


def test_duplicate_snapshot_is_refused_and_the_batch_rolls_back(db_path):
    store = Store(str(db_path))
    run_id = store.create_run(**RUN_FIELDS)
    k = np.zeros((1, 1, 3, 3), np.float32)
    store.record(run_id, [], [SnapshotRow("conv1", 0, 0, k, None)])
    with pytest.raises(Exception):
        store.record(run_id, [MetricRecord(1, 1, "train_loss", 1.0)], [SnapshotRow("conv1", 0, 0, k, None)])
    assert store.metrics(run_id) == []  # the metric of the failed batch was not written either


def test_database_from_a_newer_convexp_is_refused_and_left_unchanged(db_path):
    Store(str(db_path)).close()
    connection = sqlite3.connect(db_path)
    connection.execute("UPDATE alembic_version SET version_num = '9999_future'")
    connection.commit()
    connection.close()
    before = sha256(db_path)
    with pytest.raises(SchemaTooNewError, match="9999_future.*newer than this convexp"):
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
    assert resolve_url("sqlite:///x.db") == "sqlite:///x.db"
    assert resolve_url(str(tmp_path / "a.db")) == f"sqlite:///{tmp_path / 'a.db'}"
    monkeypatch.setenv("CONVEXP_DB", str(tmp_path / "env.db"))
    assert resolve_url(None).endswith("env.db")
