"""Reading a run's metrics back: all of them or some by name, several runs' at once, one value of a metric for
every run (a column of the runs table), the last value of each, those after a step (what a live view fetches),
or a pandas frame."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine, func, select

from convexp.errors import StoreError
from convexp.store.models import Metric
from convexp.store.records import MetricRecord


class MetricReads:
    """The :class:`~convexp.store.Store` methods that read metrics (a part of Store, kept in a module of its own)."""

    engine: Engine

    def metrics(self, run_id: int, names: Iterable[str] | None = None) -> list[MetricRecord]:
        """A run's metrics in step order, optionally only those called one of ``names``."""
        query = select(Metric.step, Metric.epoch, Metric.name, Metric.value, Metric.wall_time).where(Metric.run_id == run_id)
        if names is not None:
            query = query.where(Metric.name.in_(list(names)))
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(Metric.step, Metric.name)).all()
        return [MetricRecord(*row) for row in rows]

    def metrics_of_runs(self, run_ids: Iterable[int], names: Iterable[str]) -> dict[int, list[MetricRecord]]:
        """Several runs' metrics called one of ``names``, each run's in step order, in one query (runs
        without any are absent): what a summary over many runs reads."""
        ids = list(run_ids)
        series: dict[int, list[MetricRecord]] = {}
        query = (
            select(Metric.run_id, Metric.step, Metric.epoch, Metric.name, Metric.value)
            .where(Metric.run_id.in_(ids), Metric.name.in_(list(names)))
            .order_by(Metric.run_id, Metric.step, Metric.name)
        )
        with self.engine.connect() as connection:
            for run_id, step, epoch, name, value in connection.execute(query).all():
                series.setdefault(run_id, []).append(MetricRecord(step, epoch, name, value))
        return series

    def metric_names(self, run_ids: Iterable[int]) -> list[str]:
        """The names of the metrics any of these runs recorded, sorted."""
        query = select(Metric.name).where(Metric.run_id.in_(list(run_ids))).distinct().order_by(Metric.name)
        with self.engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def metric_of_runs(self, name: str, how: str = "last", step: int | None = None) -> dict[int, float]:
        """One value of metric ``name`` for every run that recorded it, in one query: its ``last`` value, its
        ``min`` or ``max`` over the steps, or (``at``) its value at ``step`` or the last step before it (runs
        without one are absent): a column of the runs table."""
        if how in ("min", "max"):
            aggregate = func.min(Metric.value) if how == "min" else func.max(Metric.value)
            query = select(Metric.run_id, aggregate).where(Metric.name == name).group_by(Metric.run_id)
        elif how in ("last", "at"):
            if how == "at" and step is None:
                raise StoreError("a metric's value 'at' a step needs the step")
            chosen = select(Metric.run_id, func.max(Metric.step).label("step")).where(Metric.name == name)
            if how == "at":
                chosen = chosen.where(Metric.step <= step)
            latest = chosen.group_by(Metric.run_id).subquery()
            query = (
                select(Metric.run_id, Metric.value)
                .join(latest, (Metric.run_id == latest.c.run_id) & (Metric.step == latest.c.step))
                .where(Metric.name == name)
            )
        else:
            raise StoreError(f"a metric's value is its last, min, max or at a step, not '{how}'")
        with self.engine.connect() as connection:
            return {run_id: value for run_id, value in connection.execute(query)}

    def step_clock(self, run_ids: Iterable[int]) -> dict[int, list[tuple[int, int, float | None]]]:
        """For each run, every step it recorded a metric at, in order, with that step's epoch and the earliest wall
        time logged there (None in rows from before wall times were kept): how its steps map to epochs and seconds."""
        query = (
            select(Metric.run_id, Metric.step, func.max(Metric.epoch), func.min(Metric.wall_time))
            .where(Metric.run_id.in_(list(run_ids)))
            .group_by(Metric.run_id, Metric.step)
            .order_by(Metric.run_id, Metric.step)
        )
        clock: dict[int, list[tuple[int, int, float | None]]] = {}
        with self.engine.connect() as connection:
            for run_id, step, epoch, wall_time in connection.execute(query):
                clock.setdefault(run_id, []).append((step, epoch, wall_time))
        return clock

    def metrics_frame(self, run_id: int, names: Iterable[str] | None = None):
        """A run's metrics as a pandas DataFrame with columns step, epoch, name, value, wall_time (Unix
        seconds when the value was logged; NaN in rows recorded before convexp stored it) (needs pandas).

        ``frame.pivot_table(index="step", columns="name", values="value")`` gives one column per metric.
        """
        try:
            import pandas as pd  # heavy: loaded only when this is used
        except ImportError:
            raise StoreError("metrics_frame needs pandas: pip install pandas (or use Store.metrics for plain rows)") from None
        rows = self.metrics(run_id, names)
        return pd.DataFrame(
            {
                "step": [m.step for m in rows],
                "epoch": [m.epoch for m in rows],
                "name": [m.name for m in rows],
                "value": [m.value for m in rows],
                "wall_time": [m.wall_time for m in rows],
            }
        )

    def last_metrics(self, run_id: int) -> dict[str, MetricRecord]:
        """Each metric's value at the last step it was recorded, by name."""
        last = (
            select(Metric.name, func.max(Metric.step).label("step"))
            .where(Metric.run_id == run_id)
            .group_by(Metric.name)
            .subquery()
        )
        query = (
            select(Metric.step, Metric.epoch, Metric.name, Metric.value, Metric.wall_time)
            .join(last, (Metric.name == last.c.name) & (Metric.step == last.c.step))
            .where(Metric.run_id == run_id)
            .order_by(Metric.name)
        )
        with self.engine.connect() as connection:
            return {row.name: MetricRecord(*row) for row in connection.execute(query)}

    def metrics_after(self, run_id: int, after_step: int = -1) -> list[MetricRecord]:
        """A run's metrics at steps after ``after_step``, in step order: what a live view fetches as a run trains."""
        query = (
            select(Metric.step, Metric.epoch, Metric.name, Metric.value, Metric.wall_time)
            .where(Metric.run_id == run_id, Metric.step > after_step)
            .order_by(Metric.step, Metric.name)
        )
        with self.engine.connect() as connection:
            return [MetricRecord(*row) for row in connection.execute(query)]
