"""How much space each run takes in the database, and thinning a run's kernel snapshots.

Thinning keeps what the pictures and comparisons of a run are about -- step 0, every K-th step,
each epoch's last step and a finished run's final step -- and deletes the other snapshots of
the run in one transaction. The run's metrics and checkpoint stay whole. The space is reused by
later writes; ``convexp db vacuum`` gives it back to the file system (SQLite).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, select, update

from convexp.errors import StoreError
from convexp.store.chains import layer_rows, may_vouch, verified
from convexp.store.encoding import RAW, ChainEncoder, snapshot_checksum
from convexp.store.models import KernelSnapshotRow, Metric, Run, RunCheckpoint
from convexp.store.store import Store


def format_bytes(count: float) -> str:
    """Bytes as a person reads them: 812 B, 35.2 MB, 1.3 GB (powers of 1000, as disks are sold)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class RunSize:
    """Bytes a run's rows hold: kernel and bias bytes of its snapshots, its metrics, its checkpoint."""

    snapshots: int
    snapshot_bytes: int
    metrics: int
    metric_bytes: int
    checkpoint_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.snapshot_bytes + self.metric_bytes + self.checkpoint_bytes


#: What a metric row holds, counted as its values: run id, step, epoch, value and a short name.
METRIC_VALUE_BYTES = 40


#: Kernel and bias bytes of a snapshot row.
_PAYLOAD = func.length(KernelSnapshotRow.kernel) + func.coalesce(func.length(KernelSnapshotRow.bias), 0)


def run_sizes(store: Store, run_ids: Iterable[int] | None = None) -> dict[int, RunSize]:
    """Each run's size (all runs, or ``run_ids``): payload bytes, not the database's own page overhead.

    Raw snapshots of a layer all have one size, so they are counted through the index and one
    row per layer is measured; encoded snapshots are summed by their stored lengths (which the
    database knows without reading the bytes)."""
    wanted = None if run_ids is None else list(run_ids)

    def only_wanted(query, column):
        return query if wanted is None else query.where(column.in_(wanted))

    raw = KernelSnapshotRow.encoding == RAW
    groups = only_wanted(
        select(
            KernelSnapshotRow.run_id,
            KernelSnapshotRow.layer,
            func.count().label("rows"),
            func.min(KernelSnapshotRow.step).label("first_step"),
        )
        .where(raw)
        .group_by(KernelSnapshotRow.run_id, KernelSnapshotRow.layer),
        KernelSnapshotRow.run_id,
    ).subquery()
    raw_per_layer = select(groups.c.run_id, groups.c.rows, _PAYLOAD).join(
        KernelSnapshotRow,
        and_(
            KernelSnapshotRow.run_id == groups.c.run_id,
            KernelSnapshotRow.layer == groups.c.layer,
            KernelSnapshotRow.step == groups.c.first_step,
        ),
    )
    encoded = only_wanted(
        select(KernelSnapshotRow.run_id, func.count(), func.sum(_PAYLOAD)).where(~raw).group_by(KernelSnapshotRow.run_id),
        KernelSnapshotRow.run_id,
    )
    with store.engine.connect() as connection:
        ids = [row[0] for row in connection.execute(only_wanted(select(Run.id), Run.id))]
        snapshots: dict[int, tuple[int, int]] = {}
        measured = [(run_id, rows, rows * row_bytes) for run_id, rows, row_bytes in connection.execute(raw_per_layer)]
        for run_id, rows, payload in measured + list(connection.execute(encoded)):
            count, total = snapshots.get(run_id, (0, 0))
            snapshots[run_id] = (count + rows, total + int(payload))
        metrics = dict(
            connection.execute(only_wanted(select(Metric.run_id, func.count()).group_by(Metric.run_id), Metric.run_id)).all()
        )
        checkpoints = dict(
            connection.execute(
                only_wanted(select(RunCheckpoint.run_id, func.length(RunCheckpoint.state)), RunCheckpoint.run_id)
            ).all()
        )
    sizes = {}
    for run_id in ids:
        count, payload = snapshots.get(run_id, (0, 0))
        metric_rows = int(metrics.get(run_id, 0))
        sizes[run_id] = RunSize(count, payload, metric_rows, metric_rows * METRIC_VALUE_BYTES, int(checkpoints.get(run_id) or 0))
    return sizes


@dataclass(frozen=True)
class ThinnedRun:
    """What thinning did (or, in a dry run, would do) to one run: steps kept, snapshot rows deleted,
    kept rows re-encoded (their chain lost a base, or they were raw), the bytes this freed, and the kept
    rows recorded before checksums that were given one."""

    run_id: int
    kept_steps: int
    deleted_rows: int
    deleted_bytes: int
    rewritten_rows: int = 0
    checksums_added: int = 0


def thin_run(
    store: Store, run_id: int, *, keep_every: int | None = None, keep_epochs: bool = True, dry_run: bool = False
) -> ThinnedRun:
    """Delete a run's kernel snapshots except step 0, every ``keep_every``-th step, each epoch's
    last step (with ``keep_epochs``) and, for a finished run, its final step; one transaction.

    The kept snapshots are stored again as chains of XOR deltas (the store's encoding) where
    their base went or they were raw, so thinning with ``keep_every=1`` packs a run recorded raw.
    Refuses a run that is queued or still running in a live process (raises :class:`StoreError`,
    changing nothing). Returns the steps kept, the rows deleted and rewritten, the bytes freed."""
    if keep_every is not None and keep_every < 1:
        raise ValueError(f"--keep-every must be 1 or more, not {keep_every}")
    with store.transaction() as connection:
        run = store.get_run(run_id)
        if run.status == "queued" or (run.status == "running" and not run.is_stale()):
            raise StoreError(f"run {run_id} is {run.status}; thin it once it has stopped (nothing was deleted)")
        keep = {0}
        if keep_epochs:
            ends = select(Metric.step).where(Metric.run_id == run_id, Metric.name == "test_accuracy")
            keep.update(step for (step,) in connection.execute(ends))
        if run.status == "finished":
            keep.add(run.steps_completed)

        def kept(step: int) -> bool:
            return step in keep or (keep_every is not None and step % keep_every == 0)

        encoder = ChainEncoder(store.encoder.encoding)
        layers = connection.execute(
            select(KernelSnapshotRow.layer).where(KernelSnapshotRow.run_id == run_id).distinct().order_by(KernelSnapshotRow.layer)
        ).scalars()
        deleted = rewritten = freed = checksummed = 0
        kept_steps: set[int] = set()
        for layer in list(layers):
            base_matched = False  # whether the row before matched a checksum of its own
            for row, kernel, bias in _decoded_rows(connection, run_id, layer):
                vouch, base_matched = may_vouch(row, base_matched), row.checksum is not None
                step = row.step
                where = and_(KernelSnapshotRow.run_id == run_id, KernelSnapshotRow.layer == layer, KernelSnapshotRow.step == step)
                if not kept(step):
                    deleted += 1
                    freed += len(row.kernel) + len(row.bias or b"")
                    if not dry_run:
                        connection.execute(delete(KernelSnapshotRow).where(where))
                    continue
                kept_steps.add(step)
                stored = encoder.encode(run_id, layer, step, kernel)
                values: dict[str, object] = {}
                if (stored.encoding, stored.base_step) != (row.encoding, row.base_step) or (
                    stored.encoding != RAW and stored.data != bytes(row.kernel)
                ):
                    rewritten += 1
                    freed += len(row.kernel) - len(stored.data)
                    values = {"kernel": stored.data, "encoding": stored.encoding, "base_step": stored.base_step}
                if row.checksum is None and vouch:  # recorded before checksums: it decoded from what was verified
                    checksummed += 1
                    values["checksum"] = snapshot_checksum(kernel, bias)
                if values and not dry_run:
                    connection.execute(update(KernelSnapshotRow).where(where).values(**values))
        if not dry_run:
            store.encoder.forget(run_id)
    return ThinnedRun(run_id, len(kept_steps), deleted, freed, rewritten, checksummed)


def pack_run(store: Store, run_id: int, *, dry_run: bool = False) -> ThinnedRun:
    """Store a stopped run's snapshots in the store's encoding (XOR deltas), keeping every step:
    what a database recorded before snapshots were encoded gains from. One transaction."""
    return thin_run(store, run_id, keep_every=1, dry_run=dry_run)


def _decoded_rows(connection, run_id: int, layer: str):
    """(row, float32 kernel bytes, bias bytes) of a layer in step order, read a chunk at a time, each checked against
    its checksum (a damaged row stops the caller's transaction); rows at or before the last one yielded
    may be changed meanwhile."""
    yield from verified(run_id, layer, layer_rows(connection, run_id, layer))
