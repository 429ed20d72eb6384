"""Opening the results database: URLs, SQLite settings, and the schema check and migration.

A database is migrated to the newest schema automatically on first use. One written
by a newer convexp (a revision this one does not know) is refused, never changed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, DBAPIError

import convexp.migrations
from convexp import __version__
from convexp.errors import DamagedDatabaseError, SchemaTooNewError, StoreError
from convexp.store.models import Base

DB_ENV = "CONVEXP_DB"
DEFAULT_DB = "convexp.db"


def resolve_url(db: str | os.PathLike[str] | None = None) -> str:
    """The SQLAlchemy URL for ``--db``, else ``CONVEXP_DB``, else ./convexp.db.

    A value is a URL only if it starts with a scheme (``sqlite:///``, ``postgresql+psycopg://``);
    anything else is a file path, every character of it kept (``?``, ``#``, ``%``, spaces,
    non-ASCII), so ``--db 'x.db?mode=ro'`` is the file of that name, never a URL parameter."""
    value = os.fspath(db) if db else os.environ.get(DB_ENV) or DEFAULT_DB
    if not _SCHEME.match(value):
        return sqlite_url(Path(value).expanduser().resolve())
    try:
        url = make_url(value)
    except ArgumentError as exc:
        raise StoreError(f"--db {value}: not a valid database URL ({exc})") from None
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:") or "mode=memory" in value:
            raise StoreError(
                f"--db {value}: an in-memory SQLite database keeps nothing (and each connection "
                "would see its own); give a file path, e.g. --db results.db"
            )
        extra = sorted(set(url.query) - {"uri"})
        if extra or (url.query and not (url.database or "").startswith("file:")):
            raise StoreError(
                f"--db {value}: convexp takes no SQLite URL parameters ({', '.join(extra) or 'uri'}); give the "
                "file's path (commands that only read, like query and ui, open it read-only themselves)"
            )
    return value


#: What starts a URL: a scheme (letters, digits, + - .) and "://".
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def sqlite_url(path: Path, **parameters: str) -> str:
    """The SQLAlchemy URL of the SQLite file at ``path`` (absolute), with SQLite URI ``parameters`` such
    as ``mode='ro'``: a ``file:`` URI, so that every character of the path reaches SQLite as it is.
    The URI is percent-encoded, and its % signs are escaped once more because SQLAlchemy unquotes
    a URL's database part before the driver sees it."""
    uri = path.as_uri().replace("%", "%25")
    query = "".join(f"{name}={value}&" for name, value in parameters.items())
    return f"sqlite:///{uri}?{query}uri=true"


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    if parsed.query.get("uri") == "true" and parsed.database.startswith("file:"):
        return Path(unquote(urlsplit(parsed.database).path))
    return Path(parsed.database)


def describe(url: str) -> str:
    """A URL as shown to the user: a SQLite file's path, or the URL without its password."""
    path = sqlite_path(url)
    return str(path) if path else make_url(url).render_as_string(hide_password=True)


#: The page size of new SQLite files (SQLite's default is 4096).
PAGE_SIZE = 16384


def _on_read_only_sqlite_connect(dbapi_connection, _record) -> None:
    dbapi_connection.execute("PRAGMA busy_timeout=30000")
    # Let SQLAlchemy's begin event below open every transaction (the pysqlite recipe in
    # SQLAlchemy's SQLite dialect documentation), so that DDL is transactional too.
    dbapi_connection.isolation_level = None


def _on_sqlite_connect(dbapi_connection, record) -> None:
    _on_read_only_sqlite_connect(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # Takes effect only in a new file, before WAL fixes its page size: a snapshot of tens of KB then
    # spans a few pages, not ten, and SQLite writes it in ~40% less CPU (a no-op on existing files).
    cursor.execute(f"PRAGMA page_size={PAGE_SIZE}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def write_problem(path: Path) -> str | None:
    """Why a SQLite database at ``path`` cannot be written here (None when it can)."""
    if path.parent.is_dir() and not os.access(path.parent, os.W_OK):
        return f"its directory {path.parent} is read-only (SQLite writes its journal files beside the database)"
    if path.exists() and not os.access(path, os.W_OK):
        return "the database file is read-only"
    return None


def _read_only_parameters(path: Path) -> dict[str, str]:
    """SQLite URI parameters that open a file for reading only.

    In a read-only directory no journal can be created beside the file, so nobody can change
    it: SQLite may then read it as immutable (which needs no journal files)."""
    return {"mode": "ro", **({"immutable": "1"} if not os.access(path.parent, os.W_OK) else {})}


def sqlite_read_only_uri(path: Path) -> str:
    """A ``file:`` URI that opens a SQLite file for reading only, for ``sqlite3.connect(uri, uri=True)``."""
    query = "&".join(f"{name}={value}" for name, value in _read_only_parameters(path).items())
    return f"{path.resolve().as_uri()}?{query}"


def _on_guarded_sqlite_connect(dbapi_connection, record) -> None:
    _on_read_only_sqlite_connect(dbapi_connection, record)
    dbapi_connection.execute("PRAGMA query_only=ON")


def _on_read_only_server_connect(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    cursor.close()
    dbapi_connection.commit()


def create_db_engine(url: str, *, must_exist: bool = False, for_writing: bool = False, read_only: bool = False) -> Engine:
    """An engine for ``url``; SQLite files get WAL, a busy timeout, foreign keys and transactional DDL.

    With ``for_writing``, SQLite transactions begin IMMEDIATE: the write lock is taken (or
    waited for, up to the busy timeout) at the start, so a transaction that reads and then
    writes can never fail half-way with "database is locked" because another process wrote.
    A SQLite file that cannot be written here (read-only file or directory) is opened
    read-only for reading, and refused with the reason for writing. With ``read_only`` every
    connection is read-only whatever the file allows: a SQLite file opened ``mode=ro`` with
    ``query_only`` (as ``convexp query`` opens it), a server database in READ ONLY transactions.
    """
    path = sqlite_path(url)
    unwritable = None  # why this SQLite file cannot be written here, if it cannot
    if path is not None:
        if must_exist and not path.exists():
            raise StoreError(f"{path}: no such database (run `convexp run` first, or pass --db)")
        if not path.parent.is_dir():
            raise StoreError(f"{path}: directory {path.parent} does not exist")
        unwritable = write_problem(path)
        if unwritable and for_writing:
            raise StoreError(f"{path}: cannot record here: {unwritable}")
        if unwritable and not path.exists():
            raise StoreError(f"{path}: cannot create the database: {unwritable}")
        if (read_only or unwritable) and path.exists():
            url = sqlite_url(path.resolve(), **_read_only_parameters(path))
    try:
        engine = create_engine(url)
    except Exception as exc:  # missing driver, bad URL
        raise StoreError(f"{describe(url)}: cannot open database ({exc})") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "handle_error", functools.partial(_on_damaged_file, path))
        handler = _on_guarded_sqlite_connect if read_only else _on_read_only_sqlite_connect if unwritable else _on_sqlite_connect
        event.listen(engine, "connect", handler)
        begin = "BEGIN IMMEDIATE" if for_writing else "BEGIN"
        event.listen(engine, "begin", lambda connection: connection.exec_driver_sql(begin))
    elif read_only:
        event.listen(engine, "connect", _on_read_only_server_connect)
    return engine


#: What SQLite says of a file whose pages are damaged (one that is no database at all is refused when it is opened).
_DAMAGED = ("database disk image is malformed",)


def _on_damaged_file(path: Path | None, context) -> None:
    """Any statement on a damaged SQLite file: one line naming the file and ``convexp db check``, not the
    driver's message with its SQL (``handle_error``: what is raised here replaces the driver's error)."""
    reason = str(context.original_exception).strip()
    if any(phrase in reason for phrase in _DAMAGED):
        where = f" --db {path}" if path is not None else ""
        raise DamagedDatabaseError(
            f"{path}: the database file is damaged ({reason}); `convexp db check{where}` says which runs can still be read",
            reason,
        ) from None


def _alembic_config(connection=None):
    from alembic.config import Config  # only to migrate or check the schema

    config = Config()
    config.set_main_option("script_location", str(Path(convexp.migrations.__file__).parent))
    config.attributes["connection"] = connection
    return config


#: The newest migration in migrations/versions (a test keeps it equal to Alembic's head): a database
#: already there is opened without importing Alembic.
SCHEMA_HEAD = "0011"


def _at_head(engine: Engine) -> bool:
    """Whether the database's alembic_version says SCHEMA_HEAD (False when unsure: the full check decides)."""
    try:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    except DatabaseError:  # no such table, not a database...: the full check says what is wrong
        return False
    return len(rows) == 1 and rows[0][0] == SCHEMA_HEAD


#: Alembic's own table, as ``alembic upgrade`` creates it.
_ALEMBIC_VERSION_DDL = (
    "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
)


def _create_new_sqlite(engine: Engine, url: str, writer: Engine) -> bool:
    """Give a new, empty SQLite database the head schema from the models and stamp it ``SCHEMA_HEAD``, in
    one transaction: what running every migration would make (a test compares the two), without
    importing Alembic or replaying six migrations. False, touching nothing, for anything but an
    empty SQLite file: the full check and Alembic decide those."""
    if sqlite_path(url) is None:
        return False
    try:
        with engine.connect() as connection:
            if connection.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar():
                return False
    except DatabaseError:  # not a database: the full check says so
        return False

    with _migration_lock(url):
        try:
            with writer.begin() as connection:  # IMMEDIATE: one process creates, the others find it made
                if connection.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar():
                    return False  # another process got here first (it may be migrating: the full check waits)
                Base.metadata.create_all(connection)
                connection.exec_driver_sql(_ALEMBIC_VERSION_DDL)
                connection.exec_driver_sql(f"INSERT INTO alembic_version (version_num) VALUES ('{SCHEMA_HEAD}')")
        except DBAPIError as exc:
            raise write_error(url, exc, "creating the database") from None
    return True


def head_revision() -> str:
    """The newest schema revision this convexp knows."""
    from alembic.script import ScriptDirectory  # only to migrate or check the schema

    return str(ScriptDirectory.from_config(_alembic_config()).get_current_head())


def current_revision(engine: Engine) -> str | None:
    """The schema revision a database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext  # only to migrate or check the schema

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextlib.contextmanager
def _migration_lock(url: str):
    """An exclusive lock on ``<database file>.lock`` while migrating (server databases lock inside the
    migration's transaction instead: PostgreSQL's advisory lock)."""
    path = sqlite_path(url)
    if path is None:
        yield
        return
    try:
        import fcntl  # POSIX only
    except ImportError:  # not a POSIX system: SQLite's own locking is all there is
        yield
        return
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


#: Less free space than this beside a SQLite file that fails a write: the disk is full.
FULL_DISK_BYTES = 256 * 1024


def _disk_full(url: str) -> bool:

    path = sqlite_path(url)
    try:
        return path is not None and shutil.disk_usage(path.parent).free < FULL_DISK_BYTES
    except OSError:
        return False


def write_error(url: str, exc: DBAPIError, action: str = "write") -> StoreError:
    """The one-line error for a write (or migration: ``action``) the database refused: read-only,
    full disk, I/O error, or other."""
    where = describe(url)
    reason = str(exc.orig).strip()
    lowered = reason.lower()
    if "readonly" in lowered or "read-only" in lowered:
        return StoreError(f"{where}: cannot record here: the database is read-only ({reason})")
    if "full" in lowered or "no space" in lowered or _disk_full(url):
        return StoreError(f"{where}: the disk is full ({reason}); what was recorded before is kept, free space and --resume")
    if "i/o" in lowered:
        return StoreError(f"{where}: the disk failed a write ({reason}); what was recorded before is kept")
    return StoreError(f"{where}: {action} failed ({reason})")


#: PostgreSQL advisory lock key held while migrating (any constant shared by every convexp).
MIGRATION_LOCK_KEY = 0x636F6E76  # "conv"


def ensure_schema(engine: Engine, url: str, *, upgrade: bool = True, writer: Callable[[], Engine] | None = None) -> None:
    """Check the database's schema revision and bring it to head if ``upgrade`` (else raise if behind).

    The upgrade runs in the engine ``writer()`` gives (default ``engine``) under a lock file, so that many processes
    starting at once against a new or old database migrate it exactly once.

    Raises :class:`SchemaTooNewError` for a revision this convexp does not know, and
    :class:`StoreError` for a file that is not a SQLite database or not a convexp one.
    """
    if _at_head(engine):  # the common case, answered without importing Alembic
        return
    if upgrade and _create_new_sqlite(engine, url, writer() if writer else engine):  # a new file: no Alembic either
        return
    from alembic import command  # only to migrate or check the schema
    from alembic.script import ScriptDirectory  # only to migrate or check the schema
    from alembic.util import CommandError  # only to migrate or check the schema

    where = describe(url)
    script = ScriptDirectory.from_config(_alembic_config())
    head = script.get_current_head()
    try:
        # one read transaction, so both come from the same snapshot even while another process migrates
        # (PostgreSQL's default READ COMMITTED takes a new snapshot per statement: ask for one per transaction)
        snapshot = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
        with engine.connect().execution_options(**snapshot) as connection:
            from alembic.runtime.migration import MigrationContext  # only to migrate or check the schema

            current = MigrationContext.configure(connection).get_current_revision()
            tables = set(inspect(connection).get_table_names())
    except DatabaseError as exc:
        if _disk_full(url):  # SQLite could not create its journal files
            raise StoreError(f"{where}: cannot open the database: the disk is full ({exc.orig})") from None
        reason = " ".join(str(exc.orig).split())  # a driver's message may span lines (psycopg adds a hint)
        raise StoreError(f"{where}: not a usable database ({reason})") from None
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
    if not upgrade and current is None:
        raise StoreError(f"{where}: not a convexp database yet (it is empty); record a run into it first")
    if not upgrade:
        raise StoreError(f"{where}: schema is at '{current}', not '{head}'; run `convexp db upgrade`")
    with _migration_lock(url):
        # One transaction (SQLite's DDL is transactional here), begun IMMEDIATE on SQLite: a
        # process that waited for another's migration finds the database already at head,
        # and a kill part-way leaves it at the old revision.
        try:
            with (writer() if writer else engine).begin() as connection:
                from alembic.runtime.migration import MigrationContext  # only to migrate or check the schema

                if connection.dialect.name == "postgresql":  # the server's own lock, held to the end of the transaction
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")

                if MigrationContext.configure(connection).get_current_revision() != head:
                    command.upgrade(_alembic_config(connection), "head")
        except DBAPIError as exc:
            raise write_error(url, exc, "migration") from None
