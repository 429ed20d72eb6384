"""Checking a results database for silent damage: SQLite's own integrity check, then every kernel
snapshot decoded and compared with the checksum written with it.

A snapshot stored as an XOR delta decodes from the rows before it, so one damaged row makes the
later rows of its chain unreadable too: the check names the damaged row and the steps that decode
from it. Rows recorded before snapshots carried checksums (schema 0007) are counted as
unverified; with ``fix`` each one that decodes is given its checksum.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import DatabaseError

from convexp.errors import DamagedDatabaseError, StoreError
from convexp.store.chains import layer_rows, may_vouch, read_row, shape_problem
from convexp.store.database import describe, resolve_url, sqlite_path, sqlite_read_only_uri
from convexp.store.encoding import RAW, UndecodableSnapshot, snapshot_checksum
from convexp.store.models import KernelSnapshotRow
from convexp.store.store import Store


@dataclass
class DamagedSnapshot:
    """A snapshot row that does not read back as what was written, and the later steps of its layer
    that decode from it (so cannot be read either)."""

    layer: str
    step: int
    reason: str
    dependent_steps: list[int] = field(default_factory=list)


@dataclass
class RunCheck:
    """What checking one run's snapshots found."""

    run_id: int
    name: str
    layers: int = 0
    snapshots: int = 0
    verified: int = 0
    unverified: int = 0
    checksums_added: int = 0
    damaged: list[DamagedSnapshot] = field(default_factory=list)
    #: The database error that stopped the run from being read at all (a malformed file).
    unreadable: str | None = None

    @property
    def ok(self) -> bool:
        return not self.damaged and self.unreadable is None


@dataclass
class CheckReport:
    """A database's check: SQLite's integrity check (None for databases without one), and each run's snapshots."""

    location: str
    integrity: list[str] | None
    runs: list[RunCheck] = field(default_factory=list)
    #: Why the runs could not be listed (a malformed file), if they could not.
    unreadable: str | None = None

    @property
    def ok(self) -> bool:
        """Whether nothing is damaged: the file passes its integrity check and every snapshot reads back."""
        return self.integrity in (None, []) and self.unreadable is None and all(r.ok for r in self.runs)


def sqlite_integrity(path: Path) -> list[str]:
    """The problems SQLite's ``PRAGMA integrity_check`` finds in the file at ``path`` (empty when it is
    sound), read through a read-only connection of its own, so a file too damaged for convexp to open
    is still checked."""
    try:
        connection = sqlite3.connect(sqlite_read_only_uri(path), uri=True)
        try:
            found = [str(row[0]) for row in connection.execute("PRAGMA integrity_check")]
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    return [] if found == ["ok"] else found


def check_runs(
    store: Store,
    run_ids: Iterable[int] | None = None,
    *,
    fix: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[RunCheck], str | None]:
    """Check every snapshot of each run (all, or ``run_ids``): each row decodes, has the size its shape
    says, and matches its checksum. With ``fix``, rows recorded without a checksum that decode are given
    one (one transaction per run). ``progress(done, total)`` counts snapshot rows. Returns the runs'
    checks and, when the runs cannot even be listed, the database error that stopped it."""
    wanted = None if run_ids is None else list(run_ids)
    try:
        runs = store.list_runs(run_ids=wanted) if wanted else store.list_runs()
        total_query = select(func.count()).select_from(KernelSnapshotRow)
        if wanted:
            total_query = total_query.where(KernelSnapshotRow.run_id.in_(wanted))
        with store.engine.connect() as connection:
            total = connection.execute(total_query).scalar_one()
    except (DatabaseError, DamagedDatabaseError) as exc:
        return [], _database_error(exc)
    missing = sorted(set(wanted or []) - {r.id for r in runs})
    if missing:
        raise StoreError(f"{store.location}: no run with id {', '.join(map(str, missing))}")
    checks, done = [], 0
    for run in sorted(runs, key=lambda r: r.id):
        check = RunCheck(run.id, f"{run.experiment}/{run.backend}")
        additions: list[dict[str, Any]] = []
        try:
            with store.engine.connect() as connection:
                layers = list(
                    connection.execute(
                        select(KernelSnapshotRow.layer)
                        .where(KernelSnapshotRow.run_id == run.id)
                        .distinct()
                        .order_by(KernelSnapshotRow.layer)
                    ).scalars()
                )
                check.layers = len(layers)
                for layer in layers:
                    for row, checksum in _check_layer(check, layer, layer_rows(connection, run.id, layer)):
                        done += 1
                        if fix and checksum is not None:
                            additions.append({"run": run.id, "the_layer": layer, "the_step": row.step, "value": checksum})
                        if progress and done % 256 == 0:
                            progress(done, total)
        except (DatabaseError, DamagedDatabaseError) as exc:
            check.unreadable = _database_error(exc)
        if additions:
            check.checksums_added = _add_checksums(store, additions)
        checks.append(check)
    if progress:
        progress(total, total)
    return checks, None


def check_database(
    db: str | None = None,
    run_ids: Iterable[int] | None = None,
    *,
    fix: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> CheckReport:
    """The whole check of the database ``db`` (a path or URL, as ``--db``): SQLite's integrity check of
    its file first, then :func:`check_runs`. A file too damaged to open as a convexp database is
    reported (``unreadable``) rather than raised, after its integrity check."""

    url = resolve_url(db)
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise StoreError(f"{path}: no such database file")
    report = CheckReport(describe(url), None if path is None else sqlite_integrity(path))
    try:
        store = Store(db, must_exist=True)
    except (StoreError, DatabaseError) as exc:
        if not report.integrity:
            raise
        report.unreadable = _database_error(exc) if isinstance(exc, (DatabaseError, DamagedDatabaseError)) else str(exc)
        return report
    with store:
        report.runs, report.unreadable = check_runs(store, run_ids, fix=fix, progress=progress)
    return report


def _database_error(exc: DatabaseError | DamagedDatabaseError) -> str:
    if isinstance(exc, DamagedDatabaseError):
        return exc.reason
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def _check_layer(check: RunCheck, layer: str, rows: Iterable[Any]) -> Iterator[tuple[Any, int | None]]:
    """Check a layer's rows in step order, recording what is found in ``check``; yields each row with the
    checksum it should be given: None unless it decoded and has none, and, for an XOR delta, unless the row it
    decodes from matched a checksum of its own (``--fix`` never vouches for a row whose base nothing verified)."""
    previous = None  # (step, words) of the last row that decoded
    base_verified = False  # whether that row matched a checksum it was recorded with
    broken: DamagedSnapshot | None = None  # the damage the current chain is cut at
    for row in rows:
        check.snapshots += 1
        if broken is not None and row.encoding != RAW:
            broken.dependent_steps.append(row.step)
            yield row, None
            continue
        broken = None
        try:
            words, kernel, bias = read_row(previous, row)
            problem = shape_problem(row.shape, kernel, bias)[1]
        except UndecodableSnapshot as exc:
            problem = exc.reason
        if problem is not None:
            broken = _damaged(check, layer, row.step, problem)
            previous = None
            yield row, None
            continue
        vouch = may_vouch(row, base_verified)
        previous, base_verified = (row.step, words), row.checksum is not None
        if row.checksum is None:
            check.unverified += 1
            yield row, snapshot_checksum(kernel, bias) if vouch else None
        else:
            check.verified += 1
            yield row, None


def _damaged(check: RunCheck, layer: str, step: int, reason: str) -> DamagedSnapshot:
    damage = DamagedSnapshot(layer, step, reason)
    check.damaged.append(damage)
    return damage


def _add_checksums(store: Store, additions: list[dict[str, Any]]) -> int:
    statement = (
        update(KernelSnapshotRow)
        .where(
            KernelSnapshotRow.run_id == bindparam("run"),
            KernelSnapshotRow.layer == bindparam("the_layer"),
            KernelSnapshotRow.step == bindparam("the_step"),
            KernelSnapshotRow.checksum.is_(None),
        )
        .values(checksum=bindparam("value"))
    )
    with store.transaction() as connection:
        connection.execute(statement, additions)
    return len(additions)


__all__ = ["CheckReport", "DamagedSnapshot", "RunCheck", "check_database", "check_runs", "sqlite_integrity"]
