"""``convexp plot summary`` and the experiment page: a quantity over the steps, one curve per group of an
experiment's finished runs, each the mean of its runs at every step with its 95% band, the same numbers
``convexp summary`` (:mod:`convexp.analysis.groups`) gives at one step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from convexp.analysis.filters import edge_shares
from convexp.analysis.groups import (
    GroupedRuns,
    check_measure,
    common_layer,
    group_label,
    group_runs,
    mean_similarity,
    no_metric,
    t_interval,
)
from convexp.analysis.kernels import relative_drift
from convexp.analysis.parameters import shown_value
from convexp.errors import ConvexpError
from convexp.store import Store


@dataclass(frozen=True)
class GroupCurve:
    """One group's quantity over the steps: the mean of its runs at each step with the 95% t interval
    (NaN where fewer than two runs have a value), and each run's own curve."""

    group: tuple[Any, ...]
    label: str
    steps: np.ndarray
    n: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    runs: dict[int, tuple[np.ndarray, np.ndarray]]  # run id -> (steps, values)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (JSON): NaN as None."""

        def plain(values: np.ndarray) -> list[float | None]:
            return [None if not math.isfinite(v) else float(v) for v in values]

        return {
            "group": [shown_value(v) for v in self.group],
            "label": self.label,
            "steps": [int(s) for s in self.steps],
            "n": [int(n) for n in self.n],
            "mean": plain(self.mean),
            "ci_low": plain(self.low),
            "ci_high": plain(self.high),
            "runs": {str(i): {"steps": [int(s) for s in st], "values": plain(v)} for i, (st, v) in self.runs.items()},
        }


@dataclass(frozen=True)
class GroupCurves:
    """A quantity over the steps, one curve per group (see :func:`group_curves`)."""

    experiment: str
    by: list[str]
    quantity: str
    curves: list[GroupCurve]
    left_out: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        """Plain data (JSON)."""
        return {
            "experiment": self.experiment,
            "by": self.by,
            "quantity": self.quantity,
            "interval": "95% t",
            "groups": [c.as_dict() for c in self.curves],
            "left_out": self.left_out,
        }


def group_curves(
    store: Store,
    experiment: str,
    by: Sequence[str],
    metric: str | None = None,
    measure: str | None = None,
    layer: str | None = None,
    grouped: GroupedRuns | None = None,
    where: Sequence[str] = (),
) -> GroupCurves:
    """A metric (at every step it was recorded) or a filter measure (at every snapshot of ``layer``) of
    the experiment's finished runs, averaged per group at each step with its 95% t interval; the same
    numbers ``summarise`` gives at one step. ``grouped``: the runs as :func:`group_runs` grouped them already."""
    if (metric is None) == (measure is None):
        raise ConvexpError("draw either a --metric NAME or a --measure NAME")
    grouped = grouped or group_runs(store, experiment, by, where)
    series: dict[int, tuple[np.ndarray, np.ndarray]]
    if metric is not None:
        quantity = metric
        found = store.metrics_of_runs([r.id for r in grouped.runs], [metric])
        if not found:
            raise no_metric(store, grouped.runs, metric)
        series = {
            i: (np.array([m.step for m in records]), np.array([m.value for m in records], np.float64))
            for i, records in found.items()
        }
    else:
        assert measure is not None
        check_measure(measure)
        chosen = common_layer(store, grouped.runs, layer)
        quantity = f"{measure}({chosen})"
        series = _measure_series(store, measure, chosen, grouped)
    curves = []
    for key in grouped.keys:
        members = {r.id: series[r.id] for r in grouped.groups[key] if r.id in series}
        steps = np.unique(np.concatenate([s for s, _ in members.values()])) if members else np.array([], np.int64)
        n, mean, low, high = (np.full(len(steps), np.nan) for _ in range(4))
        for index, step in enumerate(steps):
            at = [v[np.searchsorted(s, step)] for s, v in members.values() if step in s]
            stats = t_interval(at)
            n[index] = stats.n
            mean[index] = stats.mean if stats.mean is not None else np.nan
            low[index] = stats.ci_low if stats.ci_low is not None else np.nan
            high[index] = stats.ci_high if stats.ci_high is not None else np.nan
        curves.append(GroupCurve(grouped.values[key], group_label(key), steps, n.astype(int), mean, low, high, members))
    return GroupCurves(experiment, list(by), quantity, curves, grouped.left_out)


def _measure_series(store: Store, measure: str, layer: str, grouped: GroupedRuns) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Each run's measure at every snapshot of the layer (similarity: against the group's other runs at the same step)."""

    kernels = {r.id: store.kernel_series(r.id, layer) for r in grouped.runs}
    if measure == "edge_share":
        return {i: (np.asarray(k.steps), edge_shares(k.kernels)) for i, k in kernels.items()}
    if measure == "drift":
        return {i: (np.asarray(k.steps), relative_drift(k.kernels)) for i, k in kernels.items()}
    result = {}
    for members in grouped.groups.values():
        for run in members:
            others = [o.id for o in members if o.id != run.id]
            if not others:
                continue
            own = kernels[run.id]
            steps, values = [], []
            for index, step in enumerate(own.steps):
                at_step = []  # the other runs' kernels at this step, where they recorded it
                for other in others:
                    at = np.searchsorted(kernels[other].steps, step)
                    if at < len(kernels[other].steps) and kernels[other].steps[at] == step:
                        at_step.append(kernels[other].kernels[at])
                if at_step:
                    steps.append(int(step))
                    values.append(mean_similarity(own.kernels[index], at_step))
            result[run.id] = (np.array(steps), np.array(values))
    return result
