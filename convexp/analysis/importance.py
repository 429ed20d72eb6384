"""Which parameters matter for an objective, over an experiment's finished runs (``convexp summary --importance``):
a random forest fitted from the parameters that vary among them to the objective, each parameter's share of
its importance, and each number's Pearson correlation with the objective -- W&B's parameter-importance panel.

The objective is a metric at a step (default ``test_accuracy`` at the last) or a filter measure of a layer
(``edge_share``, ``drift``). Numbers (and true/false) are one feature each; a parameter that holds text or
lists is one-hot encoded, its importance the sum of its columns', its correlation left out. The forest is
scikit-learn's ``RandomForestRegressor`` (100 trees, ``random_state=seed``) and its impurity-based
``feature_importances_``, which sum to 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from convexp.analysis.groups import check_measure, common_layer, finished_runs, kernels_at, measure_values, metric_values
from convexp.analysis.parameters import as_text, varying_fields
from convexp.errors import ConvexpError
from convexp.store import Store

#: Trees in the forest.
TREES = 100
#: Fields that are never a parameter of a run's outcome here.
NOT_PARAMETERS = ("description", "experiment")


@dataclass(frozen=True)
class ParameterImportance:
    """One parameter: its share of the forest's importance, and its correlation with the objective (None for
    text, or when either side does not vary)."""

    parameter: str
    importance: float
    correlation: float | None


@dataclass(frozen=True)
class Importance:
    """The parameters of an experiment's runs ranked by importance for ``objective``, over ``runs`` runs."""

    experiment: str
    objective: str
    runs: int
    rows: list[ParameterImportance]

    def columns(self) -> list[str]:
        """The table's columns."""
        return ["parameter", "importance", "correlation"]

    def table(self) -> list[list[Any]]:
        """One row per parameter, the most important first."""
        return [[r.parameter, r.importance, r.correlation] for r in self.rows]


def objective_values(
    store: Store, experiment: str, metric: str | None = None, measure: str | None = None, layer: str | None = None,
    step: int | str = "last", where: Sequence[str] = (),
) -> tuple[str, dict[int, float], dict[int, dict[str, Any]]]:  # fmt: skip
    """The objective's name, its value for each finished run that has one, and those runs' parameters."""
    if metric is not None and measure is not None:
        raise ConvexpError("the objective is either a --metric NAME or a --measure NAME")
    found = finished_runs(store, experiment, where)
    runs = found.runs
    if measure is not None:
        check_measure(measure)
        if measure == "similarity":
            raise ConvexpError("--measure similarity compares a run with its group's: use edge_share or drift as an objective")
        chosen = common_layer(store, runs, layer)
        name, values = f"{measure}({chosen})", measure_values(measure, kernels_at(store, runs, chosen, step), {(): runs})
    else:
        name = metric or "test_accuracy"
        values = metric_values(store, runs, name, step, store.metrics_of_runs([r.id for r in runs], [name]))
    return name, values, {i: found.parameters[i] for i in values}


def parameter_importance(
    store: Store, experiment: str, metric: str | None = None, measure: str | None = None, layer: str | None = None,
    step: int | str = "last", where: Sequence[str] = (), seed: int = 0,
) -> Importance:  # fmt: skip
    """The parameters that vary among the experiment's finished runs, ranked by a random forest's importance for
    the objective, each with its correlation with it (see the module's docs). Raises naming what is missing for
    fewer than 3 runs or no parameter that varies."""
    from sklearn.ensemble import RandomForestRegressor  # heavy: loaded only when this is used

    objective, values, parameters = objective_values(store, experiment, metric, measure, layer, step, where)
    ids = sorted(values)
    fields = [f for f in varying_fields([parameters[i] for i in ids]) if f not in NOT_PARAMETERS]
    if len(ids) < 3:
        raise ConvexpError(
            f"--importance needs at least 3 finished runs with {objective}; experiment '{experiment}' has {len(ids)}"
        )
    if not fields:
        raise ConvexpError(f"no parameter varies among the {len(ids)} finished runs of experiment '{experiment}'")
    y = np.array([values[i] for i in ids], dtype=np.float64)
    columns, owners, correlations = feature_matrix(fields, [parameters[i] for i in ids])
    forest = RandomForestRegressor(n_estimators=TREES, random_state=seed).fit(columns, y)
    shares = {f: 0.0 for f in fields}
    for owner, share in zip(owners, forest.feature_importances_):
        shares[owner] += float(share)
    rows = [
        ParameterImportance(f, shares[f], _pearson(correlations[f], y) if correlations.get(f) is not None else None)
        for f in fields
    ]
    rows.sort(key=lambda r: (-r.importance, r.parameter))
    return Importance(experiment, objective, len(ids), rows)


def feature_matrix(
    fields: Sequence[str], parameters: Sequence[dict[str, Any]]
) -> tuple[np.ndarray, list[str], dict[str, np.ndarray | None]]:
    """The forest's features: a column per numeric field (missing values as the field's median), one-hot columns
    per other field (in the order its values first appear); the field each column belongs to; and each numeric
    field's column, for its correlation."""
    columns: list[np.ndarray] = []
    owners: list[str] = []
    numbers: dict[str, np.ndarray | None] = {}
    for field in fields:
        raw = [p.get(field) for p in parameters]
        if all(v is None or (isinstance(v, (int, float)) and math.isfinite(float(v))) for v in raw):
            column = np.array([np.nan if v is None else float(v) for v in raw])
            filled = np.where(np.isnan(column), np.nanmedian(column) if not np.isnan(column).all() else 0.0, column)
            columns.append(filled)
            owners.append(field)
            numbers[field] = filled
        else:
            text = [as_text(v) for v in raw]
            for value in dict.fromkeys(text):
                columns.append(np.array([t == value for t in text], dtype=np.float64))
                owners.append(field)
            numbers[field] = None
    return np.column_stack(columns), owners, numbers


def _pearson(x: np.ndarray | None, y: np.ndarray) -> float | None:
    if x is None or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])
