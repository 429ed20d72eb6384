"""A parameter against what it does (``convexp plot sweep``): one point per finished run of an experiment, a
parameter on x, the objective on y (a metric at a step, or a filter measure of a layer), another parameter as the
colour. x is drawn on a log axis when the experiment's sweep drew it log-uniformly, on a linear one when it drew it
uniformly, and otherwise when its values are positive and span a decade or more, as swept learning rates do."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from convexp.analysis.groups import MEASURES
from convexp.analysis.importance import objective_values
from convexp.analysis.parameters import check_fields
from convexp.analysis.sweep_table import pruned_trials, swept_distributions
from convexp.store import Store

#: How far apart (a ratio) positive x values must be for a log axis.
LOG_SPAN = 10.0


@dataclass(frozen=True)
class SweepPoints:
    """The points of a sweep's scatter, one per run (``ids``), and what they show."""

    experiment: str
    x_field: str
    y_name: str
    colour_field: str | None
    ids: list[int]
    xs: list[Any]
    ys: list[float]
    colours: list[Any]
    #: How the experiment's newest sweep drew x (``loguniform``, ``uniform``, ``int``, ``choice``), if it did.
    distribution: str | None = None
    #: The trials a sweep's pruning rule stopped: their ids, x, and y at the last step they reached.
    pruned_ids: list[int] = field(default_factory=list)
    pruned_xs: list[Any] = field(default_factory=list)
    pruned_ys: list[float] = field(default_factory=list)

    @property
    def log_x(self) -> bool:
        """Whether x is drawn on a log axis: as the sweep drew it, else for positive numbers spanning
        :data:`LOG_SPAN` or more."""
        if self.distribution in ("loguniform", "uniform"):
            return self.distribution == "loguniform"
        numbers = [x for x in self.xs if isinstance(x, (int, float)) and not isinstance(x, bool)]
        return len(numbers) == len(self.xs) > 1 and min(numbers) > 0 and max(numbers) / min(numbers) >= LOG_SPAN


def sweep_points(
    store: Store, experiment: str, x: str, y: str = "test_accuracy", colour: str | None = None,
    layer: str | None = None, step: int | str = "last", where: Sequence[str] = (),
) -> SweepPoints:  # fmt: skip
    """Each finished run's ``x`` parameter and its ``y`` (a metric, or a filter measure of ``layer``: edge_share,
    drift), coloured by the ``colour`` parameter, and each pruned trial's at the last step it reached; raises naming
    the fields there are for an unknown one."""
    measure = y if y in MEASURES else None
    name, values, parameters = objective_values(store, experiment, None if measure else y, measure, layer, step, where)
    ids = sorted(values)
    check_fields([x], [parameters[i] for i in ids], "--x")
    pruned = dict(sorted(pruned_trials(store, experiment, name, measure, where).items()))
    if colour:
        check_fields([colour], [parameters[i] for i in ids], "--color")
    return SweepPoints(
        experiment,
        x,
        name,
        colour,
        ids,
        [parameters[i].get(x) for i in ids],
        [values[i] for i in ids],
        [parameters[i].get(colour) for i in ids] if colour else [],
        swept_distributions(store, experiment).get(x),
        [i for i in pruned],
        [p.get(x) for p, _ in pruned.values()],
        [v for _, v in pruned.values()],
    )
