"""Read-only SQL over the results database, for ``convexp query``.

On SQLite the statement runs on a connection opened read-only (``mode=ro``,
``query_only``) with an authorizer that allows reading and nothing else, so a
statement that would write, attach a file or change a setting is refused before it
runs. Other databases run it in a READ ONLY transaction that is rolled back.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from convexp.errors import QueryError
from convexp.store import database

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


@dataclass(frozen=True)
class QueryResult:
    """Column names and rows of a query."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


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


def run_query(db: str | None, sql: str, limit: int | None = None) -> QueryResult:
    """Run one read-only SQL statement and return its rows (at most ``limit``); writing is refused."""
    url = database.resolve_url(db)
    # Opening through Store checks the file and its schema revision (and refuses a newer one).
    from convexp.store import Store

    Store(db, must_exist=True).close()
    return read_only_query(url, sql, limit)


def read_only_query(url: str, sql: str, limit: int | None = None) -> QueryResult:
    """Run one SQL statement that only reads on a database already known to be convexp's; writing is refused.

    ``convexp query`` and the query box of ``convexp ui`` both come here."""
    if not sql.strip():
        raise QueryError("query refused: the statement is empty")
    path = database.sqlite_path(url)
    if path is not None:
        return _sqlite_query(path, sql, limit)
    engine = database.create_db_engine(url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(text("SET TRANSACTION READ ONLY"))
            try:
                result = connection.execute(text(sql))
                columns = list(result.keys()) if result.returns_rows else []
                rows = (
                    [tuple(r) for r in (result.fetchmany(limit) if limit else result.fetchall())] if result.returns_rows else []
                )
            except Exception as exc:
                raise QueryError(f"query failed: {getattr(exc, 'orig', exc)}") from None
            finally:
                connection.rollback()
    finally:
        engine.dispose()
    return QueryResult(columns, rows)


def _sqlite_query(path, sql: str, limit: int | None) -> QueryResult:
    connection = sqlite3.connect(database.sqlite_read_only_uri(path), uri=True)
    denied: list[str] = []
    try:
        connection.execute("PRAGMA query_only=ON")
        connection.set_authorizer(_authorizer(denied))
        try:
            cursor = connection.execute(sql)
        except (sqlite3.ProgrammingError, sqlite3.Warning) as exc:  # more than one statement (Warning before Python 3.11)
            raise QueryError(f"query refused: {exc}") from None
        except sqlite3.DatabaseError as exc:
            if denied:
                raise QueryError(f"query refused: convexp query is read-only, and the statement would {denied[0]}") from None
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF == SQLITE_READONLY:
                raise QueryError("query refused: convexp query is read-only, and the statement would write") from None
            raise QueryError(f"query failed: {exc}") from None
        columns = [d[0] for d in cursor.description or []]
        rows = cursor.fetchmany(limit) if limit else cursor.fetchall()
        return QueryResult(columns, [tuple(r) for r in rows])
    finally:
        connection.close()
