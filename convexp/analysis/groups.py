"""``convexp summary``: an experiment's finished runs grouped by their parameters, each group's numbers
with their spread and uncertainty across its runs (seeds), and how far two groups stand apart.

Per group and quantity: n, mean, the sample standard deviation, a 95% confidence interval of the mean
from Student's t (mean +- t(0.975, n-1) s / sqrt(n)), min and max. Against a baseline group: the
difference of means with Welch's 95% interval (unequal variances, Welch-Satterthwaite degrees of
freedom) and a two-sided permutation test's p-value: the share of relabellings of the two groups'
runs whose |difference of means| is at least the observed one, all of them when there are at most
:data:`EXACT_PERMUTATIONS`, else that many drawn with a fixed seed (the observed labelling counted).

Quantities: a metric's value at the step (the last one recorded at or before it), or a filter measure
of a conv layer at a recorded step, as ``filters`` and ``compare`` define them: ``edge_share`` (the
share of filters most like an edge operator), ``drift`` (||W_t - W_0|| / ||W_0||, from the run's first
snapshot) and ``similarity`` (each run's filters against every other run's of its group,
Hungarian-matched cosine similarity, averaged). The same quantities over the steps, one curve per
group: :mod:`convexp.analysis.group_curves`.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convexp.analysis.filters import edge_shares
from convexp.analysis.kernels import match_filters, relative_drift
from convexp.analysis.parameters import Condition, as_text, check_fields, run_parameters, shown_value
from convexp.analysis.selection import step_index
from convexp.errors import ConvexpError, did_you_mean
from convexp.store import MetricRecord, RunRecord, Store

#: Filter measures ``summary --measure`` knows.
MEASURES = ("edge_share", "drift", "similarity")
#: Metrics summarised when none is asked for.
DEFAULT_METRICS = ("test_accuracy", "test_loss")
#: Relabellings the permutation test enumerates in full; above, it draws this many (seed 0).
EXACT_PERMUTATIONS = 20_000
#: The confidence level of every interval.
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Stats:
    """One group's values of one quantity, summarised (spread and interval None with fewer than two)."""

    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None
    min: float | None
    max: float | None


@dataclass(frozen=True)
class Difference:
    """A group's mean minus the baseline group's, with Welch's interval and a permutation p-value."""

    versus: str
    difference: float
    ci_low: float | None
    ci_high: float | None
    p_value: float | None


@dataclass(frozen=True)
class GroupRow:
    """One group's summary of one quantity."""

    group: tuple[Any, ...]
    quantity: str
    run_ids: tuple[int, ...]
    values: tuple[float, ...]
    stats: Stats
    difference: Difference | None = None
    note: str = ""  # what the reader should know about this row


@dataclass
class Summary:
    """Everything ``convexp summary`` reports."""

    experiment: str
    by: list[str]
    step: int | str
    rows: list[GroupRow]
    left_out: dict[str, int] = field(default_factory=dict)  # status -> runs not finished, left out
    baseline: str | None = None

    def columns(self) -> list[str]:
        """The table's columns, which JSON rows are keyed by."""
        return (
            [*self.by, "quantity", "n", "mean", "std", "ci_low", "ci_high", "min", "max"]
            + (["difference", "diff_ci_low", "diff_ci_high", "p_value"] if self.baseline is not None else [])
            + ["note"]
        )

    def table(self) -> list[list[Any]]:
        """One row per group and quantity, in :meth:`columns` order."""
        rows = []
        for row in self.rows:
            s = row.stats
            cells: list[Any] = [*(shown_value(v) for v in row.group), row.quantity, s.n, s.mean, s.std, s.ci_low, s.ci_high]
            cells += [s.min, s.max]
            if self.baseline is not None:
                d = row.difference
                cells += [None, None, None, None] if d is None else [d.difference, d.ci_low, d.ci_high, d.p_value]
            rows.append([*cells, row.note])
        return rows


def t_interval(values: Sequence[float]) -> Stats:
    """n, mean, sample std, Student's t 95% interval of the mean, min and max."""
    from scipy.special import stdtrit  # Student's t quantile: scipy.stats would take 0.8 s to import

    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n == 0:
        return Stats(0, None, None, None, None, None, None)
    mean = float(x.mean())
    if n == 1:
        return Stats(1, mean, None, None, None, mean, mean)
    std = float(x.std(ddof=1))
    half = float(stdtrit(n - 1, 0.5 + CONFIDENCE / 2)) * std / math.sqrt(n)
    return Stats(n, mean, std, mean - half, mean + half, float(x.min()), float(x.max()))


def welch_interval(a: Sequence[float], baseline: Sequence[float]) -> tuple[float | None, float | None]:
    """Welch's 95% interval of mean(a) - mean(baseline); None with fewer than two values on a side."""
    from scipy.special import stdtrit  # heavy: loaded only when this is used

    x, y = np.asarray(a, np.float64), np.asarray(baseline, np.float64)
    if len(x) < 2 or len(y) < 2:
        return None, None
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    difference = float(x.mean() - y.mean())
    if vx + vy == 0:
        return difference, difference
    df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    half = float(stdtrit(df, 0.5 + CONFIDENCE / 2)) * math.sqrt(vx + vy)
    return difference - half, difference + half


def permutation_p_value(a: Sequence[float], baseline: Sequence[float]) -> float | None:
    """Two-sided permutation test of equal means: the share of relabellings with |difference| >= the observed."""
    x, y = np.asarray(a, np.float64), np.asarray(baseline, np.float64)
    if len(x) == 0 or len(y) == 0:
        return None
    pooled = np.concatenate([x, y])
    observed = abs(x.mean() - y.mean())
    tolerance = 1e-12 * max(1.0, float(np.abs(pooled).max()))  # equal differences summed in another order
    total = pooled.sum()
    if math.comb(len(pooled), len(x)) <= EXACT_PERMUTATIONS:
        chosen = np.array(list(itertools.combinations(range(len(pooled)), len(x))))
        sums = pooled[chosen].sum(axis=1)
        differences = np.abs(sums / len(x) - (total - sums) / len(y))
        return float(np.mean(differences >= observed - tolerance))
    rng = np.random.default_rng(0)
    draws = np.array([rng.permutation(len(pooled))[: len(x)] for _ in range(EXACT_PERMUTATIONS - 1)])
    sums = pooled[draws].sum(axis=1)
    differences = np.abs(sums / len(x) - (total - sums) / len(y))
    return float((np.sum(differences >= observed - tolerance) + 1) / EXACT_PERMUTATIONS)


def _order(value: Any) -> tuple[int, float, str]:
    """Groups in a natural order: numbers by value, then everything else by its text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, as_text(value))


def group_label(group: tuple[Any, ...]) -> str:
    """A group as ``--baseline`` names it: its values joined with commas."""
    return ",".join(as_text(v) for v in group)


@dataclass(frozen=True)
class GroupedRuns:
    """An experiment's finished runs by the values of some parameters."""

    runs: list[RunRecord]
    keys: list[tuple[str, ...]]  # the groups in order, each as its values' text
    groups: dict[tuple[str, ...], list[RunRecord]]
    values: dict[tuple[str, ...], tuple[Any, ...]]  # each group's parameter values
    left_out: dict[str, int]  # status -> runs not finished


@dataclass(frozen=True)
class FinishedRuns:
    """An experiment's finished runs meeting the conditions asked, each one's parameters, and how many runs
    (by status) were left out as not finished."""

    runs: list[RunRecord]
    parameters: dict[int, dict[str, Any]]
    left_out: dict[str, int]


def finished_runs(store: Store, experiment: str, where: Sequence[str | Condition] = ()) -> FinishedRuns:
    """The experiment's finished runs that meet every ``where`` condition (as ``convexp runs --where``), with their
    parameters; raises naming what there is for an unknown experiment or field, or no finished run."""
    runs = store.list_runs(experiment=experiment)
    if not runs:
        experiments = sorted({r.experiment for r in store.list_runs()})
        raise ConvexpError(
            f"no runs of experiment '{experiment}' in {store.location}{did_you_mean(experiment, experiments)}"
            + (f"; experiments there: {', '.join(experiments)}" if experiments else "")
        )
    # each run's parameters, read once: the conditions take them from every run, the groups from the finished
    parameters = {r.id: run_parameters(r) for r in runs} if where else {}
    if where:
        conditions = [c if isinstance(c, Condition) else Condition.parse(c) for c in where]
        check_fields([c.field for c in conditions], list(parameters.values()), "--where")
        runs = [r for r in runs if all(c.matches(parameters[r.id]) for c in conditions)]
        if not runs:
            raise ConvexpError(f"no run of experiment '{experiment}' meets --where {' '.join(map(str, where))}")
    finished = [r for r in runs if r.status == "finished"]
    left_out = dict(Counter(r.shown_status() for r in runs if r.status != "finished"))
    if not finished:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(left_out.items()))
        raise ConvexpError(f"experiment '{experiment}' has no finished runs yet ({counts})")
    if not where:
        parameters = {r.id: run_parameters(r) for r in finished}
    return FinishedRuns(finished, {r.id: parameters[r.id] for r in finished}, left_out)


def group_runs(store: Store, experiment: str, by: Sequence[str], where: Sequence[str | Condition] = ()) -> GroupedRuns:
    """The experiment's finished runs (those meeting every ``where`` condition, as ``convexp runs --where``)
    grouped by the ``by`` fields, groups in natural order (numbers by value); raises naming what there is for an
    unknown experiment or field, or no finished run."""
    found = finished_runs(store, experiment, where)
    finished, parameters, left_out = found.runs, found.parameters, found.left_out
    if not by:
        raise ConvexpError("group the runs by at least one --by FIELD (e.g. --by initializer)")
    check_fields(by, list(parameters.values()), "--by")
    groups: dict[tuple[str, ...], list[RunRecord]] = {}
    values: dict[tuple[str, ...], tuple[Any, ...]] = {}
    for run in finished:
        group = tuple(parameters[run.id].get(f) for f in by)
        key = tuple(as_text(v) for v in group)
        groups.setdefault(key, []).append(run)
        values[key] = group
    keys = sorted(groups, key=lambda k: tuple(_order(v) for v in values[k]))
    return GroupedRuns(finished, keys, groups, values, left_out)


def check_measure(measure: str) -> None:
    """Refuse a filter measure convexp does not know, naming those it does."""
    if measure not in MEASURES:
        raise ConvexpError(
            f"--measure {measure}: not a filter measure{did_you_mean(measure, MEASURES)}; measures: {', '.join(MEASURES)}"
        )


def summarise(
    store: Store,
    experiment: str,
    by: Sequence[str],
    metrics: Sequence[str] = (),
    measures: Sequence[str] = (),
    layer: str | None = None,
    step: int | str = "last",
    baseline: str | None = None,
    grouped: GroupedRuns | None = None,
    where: Sequence[str] = (),
) -> Summary:
    """Group the experiment's finished runs by the ``by`` fields and summarise each group's metrics and
    filter measures at ``step`` (see the module's docs); runs not finished are left out and counted.

    With two groups, or a ``baseline`` group (its values joined with commas), every other group gets
    its difference from the baseline. Raises naming what there is for a bad field, metric, measure,
    layer or step, and for an experiment with no finished runs. ``grouped``: the runs as
    :func:`group_runs` grouped them already (a page or a report asking for several quantities); ``where``: only
    the runs meeting these conditions (as ``convexp runs --where``)."""
    grouped = grouped or group_runs(store, experiment, by, where)
    for measure in measures:
        check_measure(measure)
    groups, keys, finished = grouped.groups, grouped.keys, grouped.runs
    baseline_key = _baseline(keys, baseline)

    quantities: list[tuple[str, dict[int, float]]] = []
    names = list(metrics or (DEFAULT_METRICS if not measures else ()))
    if names:
        read = store.metrics_of_runs([r.id for r in finished], names)  # every metric in one query
        for name in names:
            quantities.append((name, metric_values(store, finished, name, step, read)))
    if measures:
        chosen_layer = common_layer(store, finished, layer)
        kernels = kernels_at(store, finished, chosen_layer, step)
        for measure in measures:
            quantities.append((f"{measure}({chosen_layer})", measure_values(measure, kernels, groups)))

    rows = []
    for quantity, values in quantities:
        for key in keys:
            members = [r.id for r in groups[key] if r.id in values]
            x = [values[i] for i in members]
            difference = None
            if baseline_key is not None and key != baseline_key:
                base = [values[r.id] for r in groups[baseline_key] if r.id in values]
                if x and base:
                    low, high = welch_interval(x, base)
                    difference = Difference(
                        group_label(baseline_key), float(np.mean(x) - np.mean(base)), low, high, permutation_p_value(x, base)
                    )
            rows.append(
                GroupRow(
                    grouped.values[key],
                    quantity,
                    tuple(members),
                    tuple(x),
                    t_interval(x),
                    difference,
                    _note(quantity, len(groups[key]), len(x)),
                )
            )
    baseline_label = None if baseline_key is None else group_label(baseline_key)
    return Summary(experiment, list(by), step, rows, grouped.left_out, baseline_label)


def _note(quantity: str, runs: int, n: int) -> str:
    """Why a group's row has fewer values, or no interval."""
    if quantity.startswith("similarity(") and runs == 1:
        return "one run: no other run in the group to compare its filters with"
    if n == 0:
        return f"none of its {runs} run(s) recorded this"
    parts = ["one value: no spread or interval"] if n == 1 else []
    if n < runs:
        parts.append(f"{runs - n} of its {runs} runs did not record this")
    return "; ".join(parts)


def _baseline(keys: list[tuple[str, ...]], baseline: str | None) -> tuple[str, ...] | None:
    labels = {",".join(k): k for k in keys}
    if baseline is not None:
        if baseline not in labels:
            raise ConvexpError(
                f"--baseline {baseline}: no such group{did_you_mean(baseline, labels)}; groups: {'; '.join(labels)}"
            )
        return labels[baseline]
    return keys[0] if len(keys) == 2 else None


def metric_values(
    store: Store, runs: list[RunRecord], name: str, step: int | str, read: dict[int, list[MetricRecord]]
) -> dict[int, float]:
    """Each run's value of a metric at ``step``: the first, the last, or the last recorded at or before it
    (``read``: the runs' metrics, read once)."""
    series = {i: kept for i, records in read.items() if (kept := [m for m in records if m.name == name])}
    if not series:
        raise no_metric(store, runs, name)
    values: dict[int, float] = {}
    for run_id, records in series.items():
        if step == "first":
            values[run_id] = records[0].value
        elif step == "last":
            values[run_id] = records[-1].value
        else:
            before = [m for m in records if m.step <= int(step)]
            if before:
                values[run_id] = before[-1].value
    return values


def no_metric(store: Store, runs: list[RunRecord], name: str) -> ConvexpError:
    """The error for a metric none of the runs recorded, naming those they did."""
    names = store.metric_names([r.id for r in runs])
    return ConvexpError(f"--metric {name}: no finished run recorded it{did_you_mean(name, names)}; metrics: {', '.join(names)}")


def common_layer(store: Store, runs: list[RunRecord], layer: str | None) -> str:
    """The conv layer to measure: ``layer``, which every run must have snapshots of, or the only one they all have."""
    recorded = [set(store.snapshot_layers(r.id)) for r in runs]
    everywhere = sorted(set.intersection(*recorded))
    anywhere = sorted(set().union(*recorded))
    if layer is None:
        if len(everywhere) == 1:
            return everywhere[0]
        raise ConvexpError(f"--measure needs --layer NAME; layers with snapshots in every run: {', '.join(everywhere) or 'none'}")
    if layer not in everywhere:
        missing = [str(r.id) for r, layers in zip(runs, recorded) if layer not in layers]
        raise ConvexpError(
            f"--layer {layer}: no snapshots in run(s) {', '.join(missing)}{did_you_mean(layer, anywhere)}; "
            f"layers with snapshots in every run: {', '.join(everywhere) or 'none'}"
        )
    return layer


def kernels_at(store: Store, runs: list[RunRecord], layer: str, step: int | str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Each run's first kernel of the layer and its kernel at ``step``."""
    kernels = {}
    for run in runs:
        steps = store.snapshot_steps(run.id, layer)
        chosen = steps[step_index(steps, step, run.id, layer)]
        first = store.snapshot(run.id, layer, steps[0]).kernel_array
        kernels[run.id] = (first, first if chosen == steps[0] else store.snapshot(run.id, layer, chosen).kernel_array)
    return kernels


def measure_values(
    measure: str, kernels: dict[int, tuple[np.ndarray, np.ndarray]], groups: dict[tuple[str, ...], list[RunRecord]]
) -> dict[int, float]:
    """Each run's value of a filter measure from its first kernel and its kernel at the step (``kernels``:
    :func:`kernels_at`); similarity, against the other runs of its group."""

    if measure == "edge_share":
        return {i: float(edge_shares(k[None])[0]) for i, (_, k) in kernels.items()}
    if measure == "drift":
        return {i: float(relative_drift(np.stack([w0, w]))[-1]) for i, (w0, w) in kernels.items()}
    values = {}
    for members in groups.values():  # similarity: within the group only
        for run in members:
            others = [kernels[o.id][1] for o in members if o.id != run.id]
            if others:
                values[run.id] = mean_similarity(kernels[run.id][1], others)
    return values


def mean_similarity(kernel: np.ndarray, others: Sequence[np.ndarray]) -> float:
    """A run's filters against each other run's (Hungarian-matched cosine similarity), averaged: the
    ``similarity`` measure."""

    return float(np.mean([match_filters(kernel, other).mean_similarity for other in others]))
