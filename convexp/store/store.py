"""The :class:`Store`: reading and writing the results database (runs, metrics, snapshots, checkpoints).

Its snapshot readers live in :mod:`convexp.store.snapshot_reads`, its metric readers in
:mod:`convexp.store.metric_reads`, the inserts of the recorder's batches in :mod:`convexp.store.inserts`."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, and_, delete, func, insert, or_, select, true, update
from sqlalchemy.exc import IntegrityError, OperationalError

from convexp.errors import RunNotResumableError, RunStillRunningError, StoreError
from convexp.model.weights import Checkpoint
from convexp.store import database
from convexp.store.encoding import ChainEncoder
from convexp.store.inserts import insert_many, snapshot_row
from convexp.store.interrupts import interrupts_deferred
from convexp.store.metric_reads import MetricReads
from convexp.store.models import RUN_STATUSES, KernelSnapshotRow, Metric, Run, RunCheckpoint
from convexp.store.records import MAX_ID, MetricRecord, RunRecord, SnapshotToWrite, process_started_at
from convexp.store.settings import check_recording_settings
from convexp.store.snapshot_reads import SnapshotReads

if TYPE_CHECKING:
    from convexp.model.weights import Checkpoint


def utcnow() -> datetime:
    """Now, in UTC, without tzinfo (as stored)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Store(SnapshotReads, MetricReads):
    """A results database, migrated to the current schema when opened.

    ``db`` is a SQLAlchemy URL or a SQLite file path (default: ``CONVEXP_DB`` or
    ./convexp.db). With ``must_exist`` a missing SQLite file is an error instead of
    being created. A ``read_only`` store (what ``convexp ui`` reads through) opens the database
    read-only, as ``convexp query`` does, never migrates it, and refuses every write.
    """

    def __init__(
        self, db: str | os.PathLike[str] | None = None, *, must_exist: bool = False, upgrade: bool = True, read_only: bool = False
    ):
        self.url = database.resolve_url(db)
        self.read_only = read_only
        self.engine = database.create_db_engine(self.url, must_exist=must_exist or read_only, read_only=read_only)
        self._writer: Engine | None = None
        self._encoder: ChainEncoder | None = None
        database.ensure_schema(self.engine, self.url, upgrade=upgrade and not read_only, writer=lambda: self.writer)
        #: (device, inode) of the SQLite file as opened: a file deleted or replaced later is told apart.
        self._file_identity = self._identity()

    def _identity(self) -> tuple[int, int] | None:
        path = database.sqlite_path(self.url)
        try:
            stat = os.stat(path) if path is not None else None
        except OSError:
            return None
        return None if stat is None else (stat.st_dev, stat.st_ino)

    def file_problem(self, run_id: int) -> str | None:
        """Why the SQLite file this store opened is no longer the file at its path -- deleted or replaced
        while run ``run_id`` recorded (SQLite goes on writing into a file nobody can open again) -- or None."""
        path = database.sqlite_path(self.url)
        if path is None or self._file_identity is None:
            return None
        now = self._identity()
        if now is None:
            return f"{path}: the database file was deleted while run {run_id} was recording; what it recorded is lost"
        replaced = (
            f"{path}: the database file was replaced while run {run_id} was recording; "
            "what it recorded went into the file that was there and is lost"
        )
        if now != self._file_identity:
            return replaced
        # a new file may get the inode number of the one deleted: the run itself tells them apart
        with self.engine.connect() as connection:
            uid = connection.execute(select(Run.uid).where(Run.id == run_id)).scalar_one_or_none()
        try:
            with contextlib.closing(sqlite3.connect(database.sqlite_read_only_uri(path), uri=True)) as fresh:
                found = fresh.execute("SELECT uid FROM runs WHERE id = ?", (run_id,)).fetchone()
        except sqlite3.Error:
            return replaced
        return None if found is not None and found[0] == uid else replaced

    def confirm_recorded(self, run_id: int) -> None:
        """Raise :class:`StoreError` unless the run is in the database at this store's location: the file
        opened is still the one at its path (:meth:`file_problem`), and it holds the run."""
        problem = self.file_problem(run_id)
        if problem is not None:
            raise StoreError(problem)
        with self.engine.connect() as connection:
            if connection.execute(select(Run.id).where(Run.id == run_id)).first() is None:
                raise StoreError(f"{self.location}: run {run_id} is not in the database any more (deleted while it recorded?)")

    @property
    def writer(self) -> Engine:
        """The engine writes go through (opened on first use), whose SQLite transactions begin IMMEDIATE."""
        if self.read_only:
            raise StoreError(f"{self.location}: opened read-only; nothing can be written through this store")
        if self._writer is None:
            self._writer = database.create_db_engine(self.url, for_writing=True)
        return self._writer

    @contextlib.contextmanager
    def transaction(self, hold_interrupts: bool = True) -> Iterator[Connection]:
        """One write transaction; a refused write becomes a one-line StoreError (read-only, full disk...).

        Ctrl-C and SIGTERM wait until the transaction has ended (see :mod:`convexp.store.interrupts`),
        unless ``hold_interrupts`` is false: for a long transaction of a command that exits on Ctrl-C,
        where rolling back at once is what the user wants."""
        with interrupts_deferred() if hold_interrupts else contextlib.nullcontext():
            try:
                with self.writer.begin() as connection:
                    yield connection
            except OperationalError as exc:
                raise database.write_error(self.url, exc) from None

    @property
    def location(self) -> str:
        """Where the database is, as shown to the user."""
        return database.describe(self.url)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()
        if self._writer is not None:
            self._writer.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- writing -------------------------------------------------------------------

    def create_run(self, *, queued: bool = False, **fields: Any) -> int:
        """Insert a run with status ``running`` in this process (or ``queued``, for an executor to start
        elsewhere with :meth:`reopen_run`); returns its id. ``fields`` are the columns of ``runs``."""
        now = utcnow()
        owner = {"status": "queued"} if queued else {"status": "running", "heartbeat_at": now, **_this_process()}
        values = {"started_at": now, "uid": uuid.uuid4().hex, **owner, **fields}
        try:
            with self.transaction() as connection:
                return int(connection.execute(insert(Run).returning(Run.id), values).scalar_one())
        except IntegrityError:
            if fields.get("sweep_id") is None:
                raise
            raise StoreError(
                f"trial {fields.get('trial')} of sweep {fields['sweep_id']} was started by another process at the same "
                "time: continue the sweep in one process at a time (--resume-sweep)"
            ) from None

    def record(
        self,
        run_id: int,
        metrics: Sequence[MetricRecord] = (),
        snapshots: Sequence[SnapshotToWrite] = (),
        *,
        epochs_completed: int | None = None,
        steps_completed: int | None = None,
        checkpoint: Checkpoint | None = None,
        owner: tuple[int, str] | None = None,
    ) -> None:
        """Write a batch of metrics and snapshots, the run's progress and its heartbeat, in one transaction.

        A ``checkpoint`` replaces the run's previous one in the same transaction, so the stored
        checkpoint always matches the last recorded epoch. With ``owner`` (pid, host) nothing is
        written unless the run is still that process's: a writer never adds to a run that another
        process has taken over (``--resume`` after its owner died).
        """
        progress: dict[str, Any] = {
            key: value
            for key, value in (("epochs_completed", epochs_completed), ("steps_completed", steps_completed))
            if value is not None
        }
        progress["heartbeat_at"] = utcnow()
        encoder = self.encoder
        try:
            self._write(run_id, metrics, snapshots, progress, checkpoint, encoder, owner)
        except BaseException:
            encoder.rollback()
            raise
        encoder.commit()

    def check_recording_settings(self) -> None:
        """Refuse a bad ``CONVEXP_SNAPSHOT_ENCODING`` or ``CONVEXP_WRITER`` in one line, before any run is made."""
        self.encoder  # noqa: B018
        check_recording_settings()

    @property
    def encoder(self) -> ChainEncoder:
        """How this store encodes the snapshots it records (see :mod:`convexp.store.encoding`)."""
        if self._encoder is None:
            self._encoder = ChainEncoder()
        return self._encoder

    def _write(self, run_id, metrics, snapshots, progress, checkpoint, encoder: ChainEncoder, owner) -> None:
        began = None  # from the snapshots' inserts to the commit's end: their writing time, in encoder.seconds
        with self.transaction() as connection:
            # the progress first: with an owner, it is the check that the run is still ours
            if connection.execute(update(Run).where(_owned(run_id, owner)).values(**progress)).rowcount != 1:
                raise self._not_ours(connection, run_id, "write")
            if metrics:
                insert_many(connection, Metric, [(run_id, m.step, m.epoch, m.name, m.value, m.wall_time) for m in metrics])
            if snapshots:
                began = time.perf_counter()
                insert_many(connection, KernelSnapshotRow, [snapshot_row(run_id, s, encoder) for s in snapshots])
            if checkpoint is not None:
                connection.execute(delete(RunCheckpoint).where(RunCheckpoint.run_id == run_id))
                values = {"epoch": checkpoint.epoch, "step": checkpoint.step, "state": checkpoint.state}
                connection.execute(insert(RunCheckpoint), {"run_id": run_id, **values, "created_at": utcnow()})
        if began is not None:
            encoder.seconds += time.perf_counter() - began

    def not_ours(self, run_id: int, action: str) -> StoreError:
        """The error for a run this process no longer owns (another took it over, or it was deleted): what
        it cannot ``action``, and whose the run is now."""
        with self.engine.connect() as connection:
            return self._not_ours(connection, run_id, action)

    def _not_ours(self, connection: Connection, run_id: int, action: str) -> StoreError:
        now = connection.execute(select(Run.pid, Run.host, Run.status).where(Run.id == run_id)).one_or_none()
        held = "it is gone" if now is None else f"it is now pid {now.pid} on {now.host} ({now.status})"
        return StoreError(f"{self.location}: run {run_id} is no longer this process's to {action}: {held}")

    def reopen_run(self, run_id: int, force: bool = False) -> Checkpoint | None:
        """Claim a queued run, or one that stopped before finishing, to train it on from its latest checkpoint.

        In one transaction: refuse a run that finished, diverged or was pruned, or whose process is still
        alive; delete what it recorded after its checkpoint (all of it when it has none, so it
        starts over from step 0); mark it running in this process. Returns the checkpoint to
        resume from, or None to start from scratch. Nothing is ever recorded twice. With ``force`` a
        run that still looks alive is taken over: its process's next write finds the run is not its own.
        """
        with self.transaction() as connection:
            row = connection.execute(select(Run.__table__).where(Run.id == run_id)).one_or_none()
            if row is None:
                raise StoreError(f"{self.location}: no run with id {run_id}")
            run = RunRecord(**row._mapping, test_accuracy=None)
            if run.status in ("finished", "diverged", "pruned"):
                raise RunNotResumableError(f"run {run_id} is {run.status}: there is nothing to resume")
            if run.status == "running" and not run.is_stale() and not force:  # a retry waits for the heartbeat to age
                beat = "no heartbeat yet" if run.heartbeat_at is None else f"last heartbeat {run.heartbeat_at:%H:%M:%S} UTC"
                raise RunStillRunningError(
                    f"run {run_id} is still running (pid {run.pid} on {run.host}, {beat}); "
                    "wait for it, or take it over with --resume --force"
                )
            checkpoint = _read_checkpoint(connection, run_id)
            keep_through = -1 if checkpoint is None else checkpoint.step
            connection.execute(delete(Metric).where(Metric.run_id == run_id, Metric.step > keep_through))
            connection.execute(
                delete(KernelSnapshotRow).where(KernelSnapshotRow.run_id == run_id, KernelSnapshotRow.step > keep_through)
            )
            self.encoder.forget(run_id)
            now = utcnow()
            connection.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(
                    started_at=now if run.status == "queued" else run.started_at,
                    attempts=Run.attempts + int(run.status != "queued"),
                    status="running",
                    finished_at=None,
                    message=None,
                    heartbeat_at=now,
                    **_this_process(),
                    epochs_completed=checkpoint.epoch if checkpoint else 0,
                    steps_completed=checkpoint.step if checkpoint else 0,
                )
            )
        return checkpoint

    def set_data_source(self, run_id: int, source: dict[str, Any]) -> None:
        """Record where a run's data came from and its fingerprint (see :func:`convexp.datasets.data_source`)."""
        with self.transaction() as connection:
            connection.execute(update(Run).where(Run.id == run_id).values(data_source=source))

    def update_spec(self, run_id: int, changes: dict[str, Any]) -> None:
        """Merge ``changes`` into a run's recorded spec (a run recorded from the user's own loop notes
        its layers' kernel shapes once it has seen them)."""
        with self.transaction() as connection:
            spec = connection.execute(select(Run.spec).where(Run.id == run_id)).scalar_one()
            connection.execute(update(Run).where(Run.id == run_id).values(spec={**spec, **changes}))

    def mark_stopped(self, run_id: int, status: str, message: str) -> bool:
        """Record that a run stopped elsewhere (its worker died, its task was cancelled), unless it already
        ended; returns whether it was marked."""
        with self.transaction() as connection:
            result = connection.execute(
                update(Run)
                .where(Run.id == run_id, Run.status.in_(("queued", "running")))
                .values(status=status, message=message, finished_at=utcnow())
            )
        return result.rowcount == 1

    def delete_runs(self, run_ids: Iterable[int]) -> list[int]:
        """Delete runs with everything they recorded (metrics, snapshots, checkpoint), all or none.

        Refuses, deleting nothing, when a run does not exist or is still running in a live
        process (a stale run, whose process died, may be deleted). Returns the ids deleted."""
        wanted = sorted(set(run_ids))
        with self.transaction() as connection:
            rows = connection.execute(select(Run.__table__).where(Run.id.in_(wanted))).all()
            records = {row.id: RunRecord(**row._mapping, test_accuracy=None) for row in rows}
            missing = [run_id for run_id in wanted if run_id not in records]
            if missing:
                raise StoreError(f"{self.location}: no run with id {', '.join(map(str, missing))}; nothing was deleted")
            alive = [r for r in records.values() if r.status == "running" and not r.is_stale()]
            if alive:
                raise StoreError(
                    f"run {alive[0].id} is still running (pid {alive[0].pid} on {alive[0].host}); "
                    "stop it first; nothing was deleted"
                )
            for table in (Metric, KernelSnapshotRow, RunCheckpoint):
                connection.execute(delete(table).where(table.run_id.in_(wanted)))
            connection.execute(delete(Run).where(Run.id.in_(wanted)))
        return wanted

    def compact(self) -> None:
        """Give the space of deleted rows back to the file system (SQLite VACUUM; PostgreSQL reclaims it itself)."""
        if self.engine.dialect.name != "sqlite":
            return

        raw = self.writer.raw_connection()  # VACUUM cannot run inside the transaction SQLAlchemy would begin
        try:
            driver = raw.driver_connection
            if driver is None:
                raise StoreError(f"{self.location}: cannot compact the database (no connection)")
            driver.execute("VACUUM")
            # in WAL mode the rewritten file sits in the log until a checkpoint: move it back now, so the
            # file has shrunk when this returns (a reader still open elsewhere may delay it to its close)
            driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:
            raise StoreError(f"{self.location}: cannot compact the database ({exc})") from None
        finally:
            raw.close()

    def statuses(self, run_ids: Iterable[int]) -> dict[int, str]:
        """The recorded status of each of ``run_ids`` (a cheap query, for progress displays)."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(Run.id, Run.status).where(Run.id.in_(list(run_ids)))).all()
        return dict(rows)

    def latest_checkpoint(self, run_id: int) -> Checkpoint | None:
        """A run's latest epoch-end checkpoint, if it has one."""
        with self.engine.connect() as connection:
            return _read_checkpoint(connection, run_id)

    def finish_run(self, run_id: int, status: str, message: str | None = None, owner: tuple[int, str] | None = None) -> bool:
        """Set a run's final status (finished, failed, interrupted, diverged) and finish time; with ``owner``
        (pid, host) only while the run is still that process's. Returns whether it was set."""
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status '{status}'; known: {', '.join(RUN_STATUSES)}")
        with self.transaction() as connection:
            done = connection.execute(
                update(Run).where(_owned(run_id, owner)).values(status=status, finished_at=utcnow(), message=message)
            )
            return done.rowcount == 1

    # --- reading -------------------------------------------------------------------

    def list_runs(
        self,
        experiment: str | None = None,
        backend: str | None = None,
        status: str | None = None,
        run_ids: Iterable[int] | None = None,
    ) -> list[RunRecord]:
        """The runs, oldest first, with their last test accuracy; each given filter must match.

        ``status`` matches the status a run is shown with, so ``stale`` finds the runs marked
        running whose process died. ``run_ids`` that do not exist raise :class:`StoreError`."""
        if status is not None and status not in (*RUN_STATUSES, "stale"):
            raise StoreError(f"unknown run status '{status}'; known: {', '.join((*RUN_STATUSES, 'stale'))}")
        conditions = [
            column == value for column, value in ((Run.experiment, experiment), (Run.backend, backend)) if value is not None
        ]
        if run_ids is not None:
            wanted = set(run_ids)
            storable = {i for i in wanted if abs(i) <= MAX_ID}  # a larger id is in no database
            with self.engine.connect() as connection:
                present = set(connection.execute(select(Run.id).where(Run.id.in_(storable))).scalars())
            if wanted - present:
                raise StoreError(f"{self.location}: no run with id {', '.join(map(str, sorted(wanted - present)))}")
            conditions.append(Run.id.in_(wanted))
        runs = self._select_runs(and_(true(), *conditions))
        return runs if status is None else [run for run in runs if run.shown_status() == status]

    def changed_runs(self, run_ids: Iterable[int], after_id: int) -> list[RunRecord]:
        """The runs of ``run_ids`` that still exist, and every run with an id above ``after_id``: what a live
        view of the runs table needs to refresh the rows it shows as queued or running, and to add new ones."""
        return self._select_runs(or_(Run.id.in_(list(run_ids)), Run.id > after_id))

    def get_run(self, run_id: int) -> RunRecord:
        """One run by id; raises :class:`StoreError` if there is none."""
        runs = self._select_runs(Run.id == run_id) if abs(run_id) <= MAX_ID else []
        if not runs:
            raise StoreError(f"{self.location}: no run with id {run_id}")
        return runs[0]

    def _select_runs(self, where: Any = None) -> list[RunRecord]:
        last_step = (
            select(Metric.run_id, func.max(Metric.step).label("step"))
            .where(Metric.name == "test_accuracy")
            .group_by(Metric.run_id)
            .subquery()
        )
        accuracy = (
            select(Metric.run_id, Metric.value)
            .join(last_step, (Metric.run_id == last_step.c.run_id) & (Metric.step == last_step.c.step))
            .where(Metric.name == "test_accuracy")
            .subquery()
        )
        query = select(Run.__table__, accuracy.c.value.label("test_accuracy")).outerjoin(accuracy, accuracy.c.run_id == Run.id)
        if where is not None:
            query = query.where(where)
        with self.engine.connect() as connection:
            return [RunRecord(**row._mapping) for row in connection.execute(query.order_by(Run.id))]


def _this_process() -> dict[str, Any]:
    """The owner columns of a run this process claims: its pid, host and start time."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "owner_started_at": process_started_at(os.getpid())}


def _owned(run_id: int, owner: tuple[int, str] | None) -> Any:
    """The WHERE clause of a write to a run: the run, and with ``owner`` (pid, host) only while it is that process's."""
    return Run.id == run_id if owner is None else and_(Run.id == run_id, Run.pid == owner[0], Run.host == owner[1])


def _read_checkpoint(connection, run_id: int) -> Checkpoint | None:

    query = select(RunCheckpoint.epoch, RunCheckpoint.step, RunCheckpoint.state).where(RunCheckpoint.run_id == run_id)
    row = connection.execute(query).one_or_none()
    return None if row is None else Checkpoint(row.epoch, row.step, bytes(row.state))
