"""How much space each run takes in the database, and thinning a run's kernel snapshots.

Thinning keeps what the pictures and comparisons of a run are about -- step 0, every K-th step,
each epoch's last step and a finished run's final step -- and deletes the other snapshots of
the run in one transaction. The run's metrics and checkpoint stay whole. The space is reused by
later writes; ``convexp db vacuum`` gives it back to the file system (SQLite).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, select

from convexp.errors import StoreError
from convexp.store.models import KernelSnapshot, Metric, Run, RunCheckpoint
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
_PAYLOAD = func.length(KernelSnapshot.kernel) + func.coalesce(func.length(KernelSnapshot.bias), 0)


def run_sizes(store: Store, run_ids: Iterable[int] | None = None) -> dict[int, RunSize]:
    """Each run's size (all runs, or ``run_ids``): payload bytes, not the database's own page overhead.

    Every snapshot of a layer has the same size, so the snapshots are counted through the
    (run, layer, step) index and one row per layer is measured: no kernel bytes are read, and
    sizing a database of many gigabytes stays fast."""
    wanted = None if run_ids is None else list(run_ids)

    def only_wanted(query, column):
        return query if wanted is None else query.where(column.in_(wanted))

    groups = only_wanted(
        select(
            KernelSnapshot.run_id,
            KernelSnapshot.layer,
            func.count().label("rows"),
            func.min(KernelSnapshot.step).label("first_step"),
        ).group_by(KernelSnapshot.run_id, KernelSnapshot.layer),
        KernelSnapshot.run_id,
    ).subquery()
    per_layer = select(
        groups.c.run_id,
        groups.c.rows,
        _PAYLOAD,
    ).join(
        KernelSnapshot,
        and_(
            KernelSnapshot.run_id == groups.c.run_id,
            KernelSnapshot.layer == groups.c.layer,
            KernelSnapshot.step == groups.c.first_step,
        ),
    )
    with store.engine.connect() as connection:
        ids = [row[0] for row in connection.execute(only_wanted(select(Run.id), Run.id))]
        snapshots: dict[int, tuple[int, int]] = {}
        for run_id, rows, row_bytes in connection.execute(per_layer):
            count, payload = snapshots.get(run_id, (0, 0))
            snapshots[run_id] = (count + rows, payload + rows * row_bytes)
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
    """What thinning did (or, in a dry run, would do) to one run."""

    run_id: int
    kept_steps: int
    deleted_rows: int
    deleted_bytes: int


def thin_run(
    store: Store, run_id: int, *, keep_every: int | None = None, keep_epochs: bool = True, dry_run: bool = False
) -> ThinnedRun:
    """Delete a run's kernel snapshots except step 0, every ``keep_every``-th step, each epoch's
    last step (with ``keep_epochs``) and, for a finished run, its final step; one transaction.

    Refuses a run that is queued or still running in a live process (raises :class:`StoreError`,
    deleting nothing). Returns the steps kept and the rows and bytes deleted."""
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
        going = and_(KernelSnapshot.run_id == run_id, KernelSnapshot.step.not_in(sorted(keep)))
        if keep_every is not None:
            going = and_(going, KernelSnapshot.step % keep_every != 0)
        steps = func.count(func.distinct(KernelSnapshot.step))
        counted = select(func.count(), func.coalesce(func.sum(_PAYLOAD), 0), steps).where(going)
        rows, payload, going_steps = connection.execute(counted).one()
        # a step goes for every layer or for none, so what stays is every step less those going
        kept = connection.execute(select(steps).where(KernelSnapshot.run_id == run_id)).scalar_one() - going_steps
        if not dry_run:
            connection.execute(delete(KernelSnapshot).where(going))
    return ThinnedRun(run_id, int(kept), int(rows), int(payload))
