"""An experiment's runs as a sweep sees them: each run's parameters that vary and its objective -- the rows of the
experiment page's parallel coordinates and scatter (and of ``convexp plot sweep``, one parameter at a time).

Finished runs give the objective at their last step; trials a sweep pruned, at the last step they reached (their
status says so). A field a sweep drew carries its distribution, so a log-uniform one is drawn on a log axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from convexp.analysis.groups import kernels_at, measure_values
from convexp.analysis.importance import NOT_PARAMETERS, objective_values
from convexp.analysis.parameters import Condition, run_parameters, varying_fields
from convexp.store import Store
from convexp.store.sweeps import list_sweeps


@dataclass(frozen=True)
class SweepRow:
    """One run: its id, status (finished or pruned), parameters and objective."""

    run_id: int
    status: str
    parameters: dict[str, Any]
    objective: float


@dataclass(frozen=True)
class SweepTable:
    """The runs of an experiment with the fields that vary among them and the objective's name."""

    experiment: str
    objective: str
    fields: list[str]
    distributions: dict[str, str]
    rows: list[SweepRow]

    def as_dict(self) -> dict[str, Any]:
        """As the experiment page's JSON: each row's values of the fields only."""
        return {
            "objective": self.objective,
            "fields": self.fields,
            "distributions": self.distributions,
            "rows": [
                {
                    "id": r.run_id,
                    "status": r.status,
                    "values": {f: r.parameters.get(f) for f in self.fields},
                    "objective": r.objective,
                }
                for r in self.rows
            ],
        }


def sweep_table(
    store: Store, experiment: str, metric: str | None = None, measure: str | None = None, layer: str | None = None,
    where: Sequence[str] = (),
) -> SweepTable:  # fmt: skip
    """The experiment's finished runs and pruned trials (those meeting ``where``) with their objective: a metric at the
    last step (default test_accuracy) or a filter measure of ``layer``."""
    name, values, parameters = objective_values(store, experiment, metric, measure, layer, "last", where)
    rows = [SweepRow(i, "finished", parameters[i], values[i]) for i in sorted(values)]
    pruned = pruned_trials(store, experiment, name, measure, where)
    rows += [SweepRow(i, "pruned", p, v) for i, (p, v) in sorted(pruned.items())]
    fields = [f for f in varying_fields([r.parameters for r in rows]) if f not in NOT_PARAMETERS]
    return SweepTable(experiment, name, fields, swept_distributions(store, experiment), rows)


def pruned_trials(
    store: Store, experiment: str, objective: str, measure: str | None, where: Sequence[str] = ()
) -> dict[int, tuple[dict[str, Any], float]]:
    """The experiment's pruned trials meeting ``where``: run id -> (its parameters, the objective -- named as
    :func:`~convexp.analysis.importance.objective_values` names it -- at the last step it reached)."""
    conditions = [Condition.parse(c) for c in where]
    runs = store.list_runs(experiment=experiment, status="pruned")
    parameters = {r.id: run_parameters(r) for r in runs}
    runs = [r for r in runs if all(c.matches(parameters[r.id]) for c in conditions)]
    if not runs:
        return {}
    if measure is not None:
        layer = objective.removeprefix(f"{measure}(").removesuffix(")")
        values = measure_values(measure, kernels_at(store, runs, layer, "last"), {})
    else:
        read = store.metrics_of_runs([r.id for r in runs], [objective])
        values = {i: records[-1].value for i, records in read.items() if records}
    return {i: (parameters[i], v) for i, v in values.items()}


def swept_distributions(store: Store, experiment: str) -> dict[str, str]:
    """Each field the experiment's sweeps drew, and how (``loguniform``...): the newest sweep's say."""
    found: dict[str, str] = {}
    for sweep in list_sweeps(store, experiment):
        for path, spec in (sweep.definition.get("parameters") or {}).items():
            if isinstance(spec, dict) and len(spec) == 1:
                found[path] = str(next(iter(spec)))
    return found
