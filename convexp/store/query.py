"""Read-only SQL over the results database, for ``convexp query``.

On SQLite the statement runs on a connection opened read-only (``mode=ro``,
``query_only``) with an authorizer that allows reading and nothing else, so a
statement that would write, attach a file or change a setting is refused before it
runs. Other databases run it in a READ ONLY transaction that is rolled back.

Every query has a time limit (SQLite: a progress handler that interrupts it; PostgreSQL: the
transaction's ``statement_timeout``), as datasette stops every query it serves: one recursive CTE
must not tie up a process or a web server. What it returns is bounded too, in rows and in bytes,
and a result cut short says so.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from convexp.errors import QueryError
from convexp.store import Store, database

SQLITE_READONLY = 8  # the primary result code of "attempt to write a readonly database"

#: PRAGMAs that only read the schema.
_READING_PRAGMAS = {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo", "foreign_key_list"}


#: The authorizer's action codes (sqlite3 also has SQLITE_LIMIT_* and error constants with the same numbers).
_ACTIONS = (
    "CREATE_INDEX",
    "CREATE_TABLE",
    "CREATE_TEMP_INDEX",
    "CREATE_TEMP_TABLE",
    "CREATE_TEMP_TRIGGER",
    "CREATE_TEMP_VIEW",
    "CREATE_TRIGGER",
    "CREATE_VIEW",
    "DELETE",
    "DROP_INDEX",
    "DROP_TABLE",
    "DROP_TEMP_INDEX",
    "DROP_TEMP_TABLE",
    "DROP_TEMP_TRIGGER",
    "DROP_TEMP_VIEW",
    "DROP_TRIGGER",
    "DROP_VIEW",
    "INSERT",
    "PRAGMA",
    "READ",
    "SELECT",
    "TRANSACTION",
    "UPDATE",
    "ATTACH",
    "DETACH",
    "ALTER_TABLE",
    "REINDEX",
    "ANALYZE",
    "CREATE_VTABLE",
    "DROP_VTABLE",
    "FUNCTION",
    "SAVEPOINT",
    "RECURSIVE",
)


#: Seconds a query may run unless told otherwise (``convexp query --time-limit``).
DEFAULT_TIME_LIMIT = 10.0
#: The most bytes of values a query returns (their text or blob lengths, 8 per number).
MAX_RESULT_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class QueryResult:
    """Column names and rows of a query; ``truncated`` says why rows were left out, if they were."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: str | None = None


def _stopped(time_limit: float) -> QueryError:
    return QueryError(
        f"query stopped: it ran longer than its time limit of {time_limit:g} s "
        "(raise it with --time-limit SECONDS; convexp ui: --query-time-limit)"
    )


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes, bytearray, memoryview)) else 8


def _bounded_rows(fetchmany, limit: int | None, max_bytes: int) -> tuple[list[tuple[Any, ...]], str | None]:
    """Rows up to ``limit`` (None: all) and ``max_bytes`` of values, and why it stopped early, if it did."""
    rows: list[tuple[Any, ...]] = []
    size = 0
    while limit is None or len(rows) < limit:
        chunk = fetchmany(min(1000, limit - len(rows)) if limit is not None else 1000)
        if not chunk:
            return rows, None
        for row in chunk:
            size += sum(_size(v) for v in row)
            if size > max_bytes:
                shown = f"{max_bytes // 2**20} MiB" if max_bytes >= 2**20 else f"{max_bytes:,} bytes"
                return rows, f"the first {len(rows):,} rows: the result passed {shown} of values"
            rows.append(tuple(row))
    more = fetchmany(1)
    return rows, (f"the first {limit:,} rows (--limit)" if more else None)


def _authorizer(denied: list[str]):
    allowed = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, getattr(sqlite3, "SQLITE_RECURSIVE", 33)}
    names = {getattr(sqlite3, f"SQLITE_{n}"): n.lower() for n in _ACTIONS if hasattr(sqlite3, f"SQLITE_{n}")}

    def authorize(action, arg1, arg2, _db, _trigger):
        if action in allowed:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and arg1 in _READING_PRAGMAS:
            return sqlite3.SQLITE_OK
        denied.append(names.get(action, str(action)).replace("_", " ") + (f" {arg1}" if arg1 else ""))
        return sqlite3.SQLITE_DENY

    return authorize


def run_query(
    db: str | None, sql: str, limit: int | None = None, time_limit: float = DEFAULT_TIME_LIMIT, max_bytes: int = MAX_RESULT_BYTES
) -> QueryResult:
    """Run one read-only SQL statement and return its rows (at most ``limit``, and ``max_bytes`` of
    values), stopping it after ``time_limit`` seconds; writing is refused."""
    url = database.resolve_url(db)
    # Opening through Store checks the file and its schema revision (and refuses a newer one).

    Store(db, must_exist=True).close()
    return read_only_query(url, sql, limit, time_limit, max_bytes)


def read_only_query(
    url: str, sql: str, limit: int | None = None, time_limit: float = DEFAULT_TIME_LIMIT, max_bytes: int = MAX_RESULT_BYTES
) -> QueryResult:
    """Run one SQL statement that only reads on a database already known to be convexp's; writing is
    refused, and a statement still running after ``time_limit`` seconds is stopped (:class:`QueryError`).

    ``convexp query`` and the query box of ``convexp ui`` both come here."""
    if not sql.strip():
        raise QueryError("query refused: the statement is empty")
    if not time_limit > 0:
        raise QueryError(f"--time-limit must be a number of seconds above 0, not {time_limit:g}")
    path = database.sqlite_path(url)
    if path is not None:
        return _sqlite_query(path, sql, limit, time_limit, max_bytes)
    engine = database.create_db_engine(url)
    try:
        with engine.connect() as connection:
            postgresql = engine.dialect.name == "postgresql"
            if postgresql:
                connection.execute(text("SET TRANSACTION READ ONLY"))
                connection.execute(text(f"SET LOCAL statement_timeout = {max(1, round(time_limit * 1000))}"))
            try:
                result = connection.execute(text(sql))
                columns = list(result.keys()) if result.returns_rows else []
                rows, truncated = _bounded_rows(result.fetchmany, limit, max_bytes) if result.returns_rows else ([], None)
            except Exception as exc:
                original = getattr(exc, "orig", exc)
                if postgresql and getattr(original, "sqlstate", None) == "57014":  # query_canceled: statement_timeout
                    raise _stopped(time_limit) from None
                raise QueryError(f"query failed: {original}") from None
            finally:
                connection.rollback()
    finally:
        engine.dispose()
    return QueryResult(columns, rows, truncated)


def _sqlite_query(path, sql: str, limit: int | None, time_limit: float, max_bytes: int) -> QueryResult:
    connection = sqlite3.connect(database.sqlite_read_only_uri(path), uri=True)
    denied: list[str] = []
    deadline = time.monotonic() + time_limit
    # SQLite calls this every 10,000 virtual machine instructions, also while rows are fetched; a true
    # answer interrupts the statement
    connection.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
    try:
        connection.execute("PRAGMA query_only=ON")
        connection.set_authorizer(_authorizer(denied))
        try:
            cursor = connection.execute(sql)
            columns = [d[0] for d in cursor.description or []]
            rows, truncated = _bounded_rows(cursor.fetchmany, limit, max_bytes)
        except (sqlite3.ProgrammingError, sqlite3.Warning) as exc:  # more than one statement (Warning before Python 3.11)
            raise QueryError(f"query refused: {exc}") from None
        except sqlite3.DatabaseError as exc:
            if denied:
                raise QueryError(f"query refused: convexp query is read-only, and the statement would {denied[0]}") from None
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF == SQLITE_READONLY:
                raise QueryError("query refused: convexp query is read-only, and the statement would write") from None
            if isinstance(exc, sqlite3.OperationalError) and time.monotonic() > deadline and "interrupt" in str(exc):
                raise _stopped(time_limit) from None
            raise QueryError(f"query failed: {exc}") from None
        return QueryResult(columns, rows, truncated)
    finally:
        connection.close()
