"""Copying runs between results databases (a laptop's SQLite file into the team's PostgreSQL, and back).

A run is recognised by its ``uid``, not its id (ids are per database): a run the destination
already holds is skipped, so copying twice never duplicates anything. Each run is copied
whole, with its metrics, snapshots and checkpoint, in one transaction of the destination; a
sweep's trial brings its sweep (recognised by its uid too, so its trials stay together).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import Table, func, insert, select, text

from convexp.errors import StoreError
from convexp.store import Store
from convexp.store.models import KernelSnapshotRow, Metric, Run, RunCheckpoint, Sweep

#: Rows read and written at a time, so that a run with many snapshots is never all in memory.
CHUNK = 500


@dataclass
class CopyReport:
    """What a copy did: (source id, destination id) of each copied run, and the runs it left alone."""

    copied: list[tuple[int, int]] = field(default_factory=list)
    already_there: list[int] = field(default_factory=list)
    still_running: list[int] = field(default_factory=list)


def copy_runs(
    source: Store, destination: Store, run_ids: list[int] | None = None, progress: Callable[[int, int], None] | None = None
) -> CopyReport:
    """Copy runs (all, or those of ``run_ids``) that ``destination`` does not hold yet.

    A run keeps its id where the destination has that id free. Runs still running are not
    copied (their rows are not complete yet). ``progress(done, total)`` is called as runs are
    dealt with, for a progress display.
    """
    report = CopyReport()
    with source.engine.connect() as reading:
        query = select(Run.__table__).order_by(Run.id)
        if run_ids:
            query = query.where(Run.id.in_(run_ids))
        runs = [dict(row._mapping) for row in reading.execute(query)]
        missing = set(run_ids or []) - {r["id"] for r in runs}
        if missing:
            raise StoreError(f"{source.location}: no run with id {', '.join(map(str, sorted(missing)))}")
        with destination.engine.connect() as connection:
            present = set(connection.execute(select(Run.uid).where(Run.uid.in_([r["uid"] for r in runs]))).scalars())
        for done, run in enumerate(runs):
            if progress:
                progress(done, len(runs))
            if run["uid"] in present:
                report.already_there.append(run["id"])
            elif run["status"] in ("running", "queued") and not _stale(source, run["id"]):
                report.still_running.append(run["id"])
            else:
                report.copied.append((run["id"], _copy_one(reading, destination, run)))
        if progress:
            progress(len(runs), len(runs))
    if report.copied and destination.writer.dialect.name == "postgresql":
        with destination.writer.begin() as connection:  # ids were given explicitly: move the sequence past them
            connection.execute(text("SELECT setval(pg_get_serial_sequence('runs', 'id'), (SELECT max(id) FROM runs))"))
    return report


def _stale(store: Store, run_id: int) -> bool:
    return store.get_run(run_id).is_stale()


def _copy_sweep(reading, writing, sweep_id: int) -> int | None:
    """The destination's id of the source's sweep ``sweep_id``, copied there first if it is not (by its uid)."""
    row = reading.execute(select(Sweep.__table__).where(Sweep.id == sweep_id)).one_or_none()
    if row is None:
        return None
    there = writing.execute(select(Sweep.id).where(Sweep.uid == row.uid)).scalar_one_or_none()
    if there is not None:
        return int(there)
    values = {k: v for k, v in row._mapping.items() if k != "id"}
    return int(writing.execute(insert(Sweep).returning(Sweep.id), values).scalar_one())


def _copy_one(reading, destination: Store, run: dict) -> int:
    with destination.transaction(hold_interrupts=False) as writing:  # Ctrl-C rolls the whole run back at once
        taken = writing.execute(select(func.count()).select_from(Run).where(Run.id == run["id"])).scalar_one()
        values = {k: v for k, v in run.items() if not (k == "id" and taken)}
        if run.get("sweep_id") is not None:  # a sweep's trial: its sweep goes along (once), under the id it gets there
            values["sweep_id"] = _copy_sweep(reading, writing, run["sweep_id"])
        new_id = int(writing.execute(insert(Run).returning(Run.id), values).scalar_one())
        for model in (Metric, KernelSnapshotRow, RunCheckpoint):
            table = cast(Table, model.__table__)
            columns = [c for c in table.columns if c.name != "id"]
            result = reading.execution_options(stream_results=True).execute(
                select(*columns).where(table.c.run_id == run["id"]).order_by(*table.primary_key.columns)
            )
            for rows in result.partitions(CHUNK):
                writing.execute(insert(table), [{**row._mapping, "run_id": new_id} for row in rows])
    return new_id
