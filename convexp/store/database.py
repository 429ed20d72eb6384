"""Opening the results database: URLs, SQLite settings, and the schema check and migration.

A database is migrated to the newest schema automatically on first use. One written
by a newer convexp (a revision this one does not know) is refused, never changed.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError

from convexp import __version__
from convexp.errors import SchemaTooNewError, StoreError

DB_ENV = "CONVEXP_DB"
DEFAULT_DB = "convexp.db"


def resolve_url(db: str | None = None) -> str:
    """The SQLAlchemy URL for ``--db`` (a URL or a file path), else ``CONVEXP_DB``, else ./convexp.db."""
    value = db or os.environ.get(DB_ENV) or DEFAULT_DB
    if "://" in value:
        try:
            make_url(value)
        except ArgumentError as exc:
            raise StoreError(f"--db {value}: not a valid database URL ({exc})") from None
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def describe(url: str) -> str:
    """A URL as shown to the user: a SQLite file's path, or the URL without its password."""
    path = sqlite_path(url)
    return str(path) if path else make_url(url).render_as_string(hide_password=True)


def _on_sqlite_connect(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_db_engine(url: str, *, must_exist: bool = False) -> Engine:
    """An engine for ``url``; SQLite files get WAL, a busy timeout and foreign keys."""
    path = sqlite_path(url)
    if path is not None:
        if must_exist and not path.exists():
            raise StoreError(f"{path}: no such database (run `convexp run` first, or pass --db)")
        if not path.parent.is_dir():
            raise StoreError(f"{path}: directory {path.parent} does not exist")
    try:
        engine = create_engine(url)
    except Exception as exc:  # missing driver, bad URL
        raise StoreError(f"{describe(url)}: cannot open database ({exc})") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _on_sqlite_connect)
    return engine


def _alembic_config(connection=None):
    from alembic.config import Config

    import convexp.migrations

    config = Config()
    config.set_main_option("script_location", str(Path(convexp.migrations.__file__).parent))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this convexp knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The schema revision a database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def ensure_schema(engine: Engine, url: str, *, upgrade: bool = True) -> None:
    """Check the database's schema revision and bring it to head if ``upgrade`` (else raise if behind).

    Raises :class:`SchemaTooNewError` for a revision this convexp does not know, and
    :class:`StoreError` for a file that is not a SQLite database or not a convexp one.
    """
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    where = describe(url)
    script = ScriptDirectory.from_config(_alembic_config())
    head = script.get_current_head()
    try:
        current = current_revision(engine)
        tables = set(inspect(engine).get_table_names())
    except DatabaseError as exc:
        raise StoreError(f"{where}: not a usable database ({exc.orig})") from None
    if current is None and tables - {"alembic_version"}:
        raise StoreError(f"{where}: has tables ({', '.join(sorted(tables))}) but is not a convexp database")
    if current is not None:
        try:
            script.get_revision(current)
        except CommandError:
            raise SchemaTooNewError(
                f"{where}: schema revision '{current}' is newer than this convexp {__version__} knows "
                f"(its newest is '{head}'); upgrade convexp to use this database"
            ) from None
    if current == head:
        return
    if not upgrade:
        raise StoreError(f"{where}: schema is at '{current}', not '{head}'; run `convexp db upgrade`")
    try:
        with engine.begin() as connection:
            command.upgrade(_alembic_config(connection), "head")
    except OperationalError as exc:
        raise StoreError(f"{where}: migration failed ({exc.orig})") from None
