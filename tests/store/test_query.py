"""``convexp query`` reads and never writes."""

from __future__ import annotations

import pytest

from convexp.errors import QueryError, StoreError
from convexp.store import Store
from convexp.store.query import run_query
from tests.conftest import sha256
from tests.store.test_store import RUN_FIELDS


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


ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request, db_path):
    """A convexp database with one run, as a SQLite file or on the PostgreSQL test server."""
    if request.param == "sqlite":
        url = str(db_path)
    else:
        url = request.getfixturevalue("postgres_url")
    with Store(url) as store:
        store.create_run(**RUN_FIELDS)
    return url


def test_an_endless_query_is_stopped_at_its_time_limit_in_one_line(any_db):
    """issue 29: a recursive CTE without end never returned, in the CLI and in the web app's query box."""
    import time

    started = time.monotonic()
    with pytest.raises(
        QueryError, match=r"^query stopped: it ran longer than its time limit of 0.5 s \(raise it with --time-limit"
    ):
        run_query(any_db, ENDLESS, time_limit=0.5)
    assert time.monotonic() - started < 5
    assert run_query(any_db, "SELECT count(*) FROM runs", time_limit=0.5).rows == [(1,)]  # the next query runs as usual


def test_the_cli_stops_an_endless_query_and_the_web_app_keeps_serving(filled_db):
    import json
    import signal
    import threading
    import time
    import urllib.parse
    import urllib.request

    from tests.conftest import run_cli
    from tests.ui.test_ui_api import start_ui

    result = run_cli("query", ENDLESS, "--time-limit", "0.5", "--db", str(filled_db))
    assert result.returncode == 1 and "query stopped: it ran longer than its time limit of 0.5 s" in result.stderr
    assert "Traceback" not in result.stderr
    pytest.importorskip("starlette", reason="convexp ui needs the ui extra")
    server, url = start_ui("--db", str(filled_db), "--query-time-limit", "1.5")
    try:
        answers: dict[str, tuple[int, dict]] = {}

        def ask(name: str, path: str) -> None:
            try:
                with urllib.request.urlopen(url + path, timeout=30) as response:
                    answers[name] = (response.status, json.loads(response.read()))
            except urllib.error.HTTPError as error:
                answers[name] = (error.code, json.loads(error.read()))

        endless = threading.Thread(target=ask, args=("endless", "api/query?sql=" + urllib.parse.quote(ENDLESS)))
        started = time.monotonic()
        endless.start()
        time.sleep(0.3)
        ask("runs", "api/runs")  # while the endless query runs
        assert answers["runs"][0] == 200 and time.monotonic() - started < 1.5
        endless.join(timeout=30)
        assert answers["endless"][0] == 400 and "time limit of 1.5 s" in answers["endless"][1]["error"]
        ask("after", "api/query?sql=" + urllib.parse.quote("SELECT count(*) AS n FROM runs"))
        assert answers["after"] == (200, {"columns": ["n"], "rows": [[1]], "truncated": None})
    finally:
        server.send_signal(signal.SIGINT)
        _, log = server.communicate(timeout=600)
    assert "Traceback" not in log


def test_a_result_is_bounded_in_rows_and_bytes_and_says_so(filled_db):
    rows = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000) SELECT x, 'abcdefgh' AS t FROM c"
    limited = run_query(str(filled_db), rows, limit=10)
    assert len(limited.rows) == 10 and limited.truncated == "the first 10 rows (--limit)"
    assert run_query(str(filled_db), rows, limit=5000).truncated is None
    bounded = run_query(str(filled_db), rows, max_bytes=16 * 100)  # 8 bytes a number, 8 a text of 8
    assert len(bounded.rows) == 100 and bounded.truncated.startswith("the first 100 rows: the result passed")


def test_the_command_lines_time_limits_are_the_librarys():
    """The CLI states its defaults for --help; they must be the ones the library applies to other callers."""
    from convexp.store.query import DEFAULT_TIME_LIMIT
    from tests.cli.test_cli_conventions import cli_commands

    commands = cli_commands()
    default = {p.name: p.default for p in commands["query"].params}["time_limit"]
    assert default == DEFAULT_TIME_LIMIT
    pytest.importorskip("starlette", reason="convexp ui needs the ui extra")
    from convexp.ui.app import QUERY_TIME_LIMIT

    assert {p.name: p.default for p in commands["ui"].params}["query_time_limit"] == QUERY_TIME_LIMIT
