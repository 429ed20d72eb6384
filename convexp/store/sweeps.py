"""Sweeps in the results database: a search's definition, and its trials (ordinary runs that point at it).

The store keeps what a sweep is and what its trials did; what to sample next and when to prune is decided
above it (:mod:`convexp.experiments.sweeping`), from what these functions read back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update

from convexp.errors import StoreError
from convexp.store.models import Metric, Run, Sweep
from convexp.store.records import owner_gone
from convexp.store.store import Store, utcnow


@dataclass(frozen=True)
class SweepRecord:
    """A row of ``sweeps``."""

    id: int
    uid: str
    experiment: str
    method: str
    definition: dict[str, Any]
    digest: str
    created_at: datetime


@dataclass(frozen=True)
class TrialRecord:
    """One trial of a sweep as recorded: its run, the status it shows (``stale`` for one whose process died),
    its spec, and the objective's value at each epoch it reached."""

    run_id: int
    trial: int
    status: str
    spec: dict[str, Any]
    objective: dict[int, float]


def create_sweep(store: Store, experiment: str, method: str, definition: dict[str, Any], digest: str) -> SweepRecord:
    """Record a new sweep; returns it."""
    values = {
        "uid": uuid.uuid4().hex,
        "experiment": experiment,
        "method": method,
        "definition": definition,
        "digest": digest,
        "created_at": utcnow(),
    }
    with store.transaction() as connection:
        sweep_id = int(connection.execute(insert(Sweep).returning(Sweep.id), values).scalar_one())
    return get_sweep(store, sweep_id)


def set_trials(store: Store, sweep_id: int, trials: int | None) -> SweepRecord:
    """Change how many trials a sweep makes (a sweep continued with more, or fewer); returns it as it now stands."""
    definition = {**get_sweep(store, sweep_id).definition, "trials": trials}
    with store.transaction() as connection:
        connection.execute(update(Sweep).where(Sweep.id == sweep_id).values(definition=definition))
    return get_sweep(store, sweep_id)


def get_sweep(store: Store, sweep_id: int) -> SweepRecord:
    """One sweep by id; :class:`StoreError` if there is none."""
    with store.engine.connect() as connection:
        row = connection.execute(select(Sweep.__table__).where(Sweep.id == sweep_id)).one_or_none()
    if row is None:
        raise StoreError(f"{store.location}: no sweep with id {sweep_id}")
    return SweepRecord(**row._mapping)


def latest_sweep(store: Store, experiment: str, digest: str) -> SweepRecord | None:
    """The newest sweep of ``experiment`` with this definition (``digest``), if any."""
    query = select(Sweep.__table__).where(Sweep.experiment == experiment, Sweep.digest == digest).order_by(Sweep.id.desc())
    with store.engine.connect() as connection:
        row = connection.execute(query.limit(1)).one_or_none()
    return None if row is None else SweepRecord(**row._mapping)


def list_sweeps(store: Store, experiment: str | None = None) -> list[SweepRecord]:
    """Every sweep (of ``experiment``), oldest first."""
    query = select(Sweep.__table__).order_by(Sweep.id)
    if experiment is not None:
        query = query.where(Sweep.experiment == experiment)
    with store.engine.connect() as connection:
        return [SweepRecord(**row._mapping) for row in connection.execute(query)]


def last_trial(store: Store, sweep_id: int) -> int:
    """The highest trial number a sweep has taken (0 before its first)."""
    with store.engine.connect() as connection:
        return int(connection.execute(select(func.max(Run.trial)).where(Run.sweep_id == sweep_id)).scalar() or 0)


#: The columns a trial is read with: what its shown status needs, and (``specs``) its spec.
_TRIAL_COLUMNS = (Run.id, Run.trial, Run.status, Run.pid, Run.host, Run.owner_started_at, Run.heartbeat_at, Run.started_at)


def trials(
    store: Store, sweep_id: int, objective: str, *, specs: bool = True, statuses: tuple[str, ...] | None = None
) -> list[TrialRecord]:
    """A sweep's trials in order (those with ``statuses`` as recorded, if given), each with the metric ``objective``
    at every epoch it recorded it; without ``specs`` their specs are left empty (what pruning needs is read
    quicker)."""
    query = select(*_TRIAL_COLUMNS, *((Run.spec,) if specs else ())).where(Run.sweep_id == sweep_id)
    if statuses is not None:
        query = query.where(Run.status.in_(statuses))
    with store.engine.connect() as connection:
        rows = connection.execute(query.order_by(Run.trial)).all()
        values: dict[int, dict[int, float]] = {row.id: {} for row in rows}
        if rows:
            metrics = (
                select(Metric.run_id, Metric.epoch, Metric.value)
                .where(Metric.run_id.in_(query.with_only_columns(Run.id).order_by(None)), Metric.name == objective)
                .order_by(Metric.run_id, Metric.step)
            )
            for run_id, epoch, value in connection.execute(metrics):
                values[run_id][epoch] = value  # an epoch's last value
    found = []
    for row in rows:
        status = row.status
        if status == "running" and owner_gone(row.pid, row.host, row.owner_started_at, row.heartbeat_at or row.started_at):
            status = "stale"
        found.append(TrialRecord(row.id, row.trial or 0, status, row.spec if specs else {}, values[row.id]))
    return found
