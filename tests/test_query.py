"""``convexp query`` reads and never writes."""

from __future__ import annotations

import pytest

from convexp.errors import QueryError, StoreError
from convexp.store import Store
from convexp.store.query import run_query
from tests.conftest import sha256
from tests.test_store import RUN_FIELDS


@pytest.fixture
def filled_db(db_path):
    with Store(str(db_path)) as store:
        store.create_run(**RUN_FIELDS)
    return db_path


def test_select_returns_columns_and_rows(filled_db):
    result = run_query(str(filled_db), "SELECT id, experiment, json_extract(spec, '$.epochs') AS epochs FROM runs")
    assert result.columns == ["id", "experiment", "epochs"]
    assert result.rows == [(1, "e", 1)]


def test_schema_pragmas_are_allowed(filled_db):
    names = [row[1] for row in run_query(str(filled_db), "PRAGMA table_info(kernel_snapshots)").rows]
    assert names[:4] == ["id", "run_id", "layer", "step"]


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM runs",
        "UPDATE runs SET status = 'x'",
        "INSERT INTO metrics (run_id, step, epoch, name, value) VALUES (1, 1, 1, 'a', 1)",
        "DROP TABLE runs",
        "CREATE TABLE x (a)",
        "ATTACH DATABASE 'other.db' AS other",
        "PRAGMA journal_mode=DELETE",
        "SELECT 1; DELETE FROM runs",
    ],
)
def test_statements_that_write_are_refused_and_nothing_changes(filled_db, sql):
    before = sha256(filled_db)
    with pytest.raises(QueryError, match="refused"):
        run_query(str(filled_db), sql)
    assert sha256(filled_db) == before
    assert not (filled_db.parent / "other.db").exists()


def test_query_on_a_missing_database_does_not_create_it(tmp_path):
    with pytest.raises(StoreError, match="no such database"):
        run_query(str(tmp_path / "nope.db"), "SELECT 1")
    assert not (tmp_path / "nope.db").exists()


def test_sql_errors_are_reported(filled_db):
    with pytest.raises(QueryError, match="no such table"):
        run_query(str(filled_db), "SELECT * FROM missing_table")
