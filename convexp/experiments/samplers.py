"""Which values a sweep's next trial takes: every combination in turn (grid), independent draws (random), or
Optuna's TPE, which draws where the trials so far did well.

Each trial's values are a function of the sweep's seed, the trial's number and (for TPE) the trials before it,
so the same seed samples the same trials, and a sweep continued after a crash samples what it would have. Grid
and random need nothing beyond numpy; TPE needs Optuna (``pip install 'convexp[sweeps]'``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from convexp.errors import ConvexpError
from convexp.experiments.sweep_spec import Distribution, SweepSpec

#: A trial as a sampler (and the pruning rule) sees it.
TrialState = Literal["complete", "pruned", "running", "failed"]


@dataclass(frozen=True)
class Trial:
    """A trial so far: its number, its values (dotted path -> value), how it stands, and its objective at each
    epoch it reached."""

    number: int
    values: dict[str, Any]
    state: TrialState
    objective: dict[int, float] = field(default_factory=dict)

    @property
    def value(self) -> float | None:
        """The objective at its last epoch (a complete trial's result)."""
        return self.objective[max(self.objective)] if self.objective else None


def sample(sweep: SweepSpec, number: int, history: Sequence[Trial] = ()) -> dict[str, Any]:
    """The values trial ``number`` (1, 2, ...) takes, each swept path -> its value, in the order of the parameters
    (a sweep that draws many trials keeps a :class:`TpeSearch` instead, for TPE)."""
    if sweep.method == "grid":
        return _grid_values(sweep, number)
    if sweep.method == "random":
        rng = np.random.default_rng([sweep.seed, number])
        return {path: _draw(d, rng) for path, d in sweep.parameters.items()}
    return _tpe_values(sweep, number, history)


def _grid_values(sweep: SweepSpec, number: int) -> dict[str, Any]:
    """The ``number``-th combination of the parameters' values, in file order, the last parameter fastest."""
    axes = [d.values() for d in sweep.parameters.values()]
    index, chosen = number - 1, []
    for values in reversed(axes):
        index, position = divmod(index, len(values))
        chosen.append(copy.deepcopy(values[position]))
    return dict(zip(sweep.parameters, reversed(chosen)))


def _draw(distribution: Distribution, rng: np.random.Generator) -> Any:
    low, high = distribution.low, distribution.high
    if distribution.kind == "uniform":
        return float(rng.uniform(low, high))
    if distribution.kind == "loguniform":
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    if distribution.kind == "int":
        return int(rng.integers(int(low), int(high) + 1))
    return copy.deepcopy(distribution.choices[int(rng.integers(len(distribution.choices)))])


def optuna_module() -> Any:
    """Optuna, quiet; one line saying how to install it where it is missing."""
    try:
        import optuna  # the optional sweeps extra
    except ImportError:
        raise ConvexpError("a tpe search and pruning need Optuna: pip install 'convexp[sweeps]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def optuna_distributions(sweep: SweepSpec) -> dict[str, Any]:
    """Each parameter as an Optuna distribution (a choice as the index of its value, so any value can be one)."""
    dists = optuna_module().distributions
    found: dict[str, Any] = {}
    for path, d in sweep.parameters.items():
        if d.kind == "choice":
            found[path] = dists.CategoricalDistribution(list(range(len(d.choices))))
        elif d.kind == "int":
            found[path] = dists.IntDistribution(int(d.low), int(d.high))
        else:
            found[path] = dists.FloatDistribution(d.low, d.high, log=d.kind == "loguniform")
    return found


def optuna_study(
    sweep: SweepSpec, history: Sequence[Trial], sampler: Any = None, with_params: bool = True, storage: Any = None
) -> Any:
    """An in-memory Optuna study holding ``history`` (the trials whose values fit the parameters); without
    ``with_params``, their objectives alone (all a pruner looks at)."""
    optuna = optuna_module()
    direction = "maximize" if sweep.objective.maximize else "minimize"
    study = optuna.create_study(direction=direction, sampler=sampler, storage=storage)
    study.add_trials(_frozen_trials(sweep, history, optuna_distributions(sweep) if with_params else {}, with_params))
    return study


def _frozen_trials(sweep: SweepSpec, history: Sequence[Trial], distributions: dict[str, Any], with_params: bool) -> list[Any]:
    """The trials of ``history`` as Optuna's (those whose values fit the parameters)."""
    optuna = optuna_module()
    state = optuna.trial.TrialState
    frozen = []
    for trial in history:
        params = _optuna_params(sweep, trial.values) if with_params else {}
        if params is None:
            continue
        kind = _optuna_state(optuna, trial)
        frozen.append(
            optuna.trial.create_trial(
                state=kind,
                value=trial.value if kind == state.COMPLETE else None,
                params=params,
                distributions=distributions,
                intermediate_values=dict(trial.objective),
            )
        )
    return frozen


def _optuna_state(optuna: Any, trial: Trial) -> Any:
    """A trial's state as Optuna's; a finished trial without its objective is a failed one (nothing to learn from)."""
    state = optuna.trial.TrialState
    if trial.state == "complete" and trial.value is None:
        return state.FAIL
    return {"complete": state.COMPLETE, "pruned": state.PRUNED, "running": state.RUNNING, "failed": state.FAIL}[trial.state]


def _optuna_params(sweep: SweepSpec, values: dict[str, Any]) -> dict[str, Any] | None:
    params = {}
    for path, d in sweep.parameters.items():
        if path not in values:
            return None
        value = values[path]
        if d.kind == "choice":
            matches = [i for i, choice in enumerate(d.choices) if choice == value]
            if not matches:
                return None
            value = matches[0]
        params[path] = value
    return params


def _tpe_values(sweep: SweepSpec, number: int, history: Sequence[Trial]) -> dict[str, Any]:
    return TpeSearch(sweep).sample(number, history)


class TpeSearch:
    """Optuna's TPE over a sweep, keeping one in-memory study across trials: a trial is added to it once, and one
    added while it ran is told how it ended when it has, so a trial's draw costs what TPE's own does, not the
    rebuilding of every trial before it. The study holds what a study built afresh from the database would, in the
    same order, so a sweep continued after a crash draws as the uninterrupted one did."""

    def __init__(self, sweep: SweepSpec):
        self.sweep, self.optuna = sweep, optuna_module()
        self.storage = self.optuna.storages.InMemoryStorage()
        self.study = optuna_study(sweep, [], storage=self.storage)
        self.study_id = self.storage.get_study_id_from_name(self.study.study_name)
        self.distributions = optuna_distributions(sweep)
        self.known: dict[int, tuple[int, str]] = {}  # trial number -> (Optuna's trial id, its state when last told)

    def sample(self, number: int, history: Sequence[Trial]) -> dict[str, Any]:
        """Trial ``number``'s values, given every trial so far (``history``)."""
        self._sync(history)
        # a sampler of its own per trial, seeded by the trial's number: what it draws depends on the trials before it
        # and nothing else, so a sweep continued after a crash draws as the uninterrupted one would have
        seed = int(np.random.SeedSequence([self.sweep.seed, number]).generate_state(1)[0])
        self.study.sampler = self.optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.sweep.startup_trials)
        asked = self.study.ask(self.distributions)
        self.known[number] = (self.storage.get_trial_id_from_study_id_trial_number(self.study_id, asked.number), "running")
        values = {}
        for path, d in self.sweep.parameters.items():
            value = asked.params[path]
            values[path] = (
                copy.deepcopy(d.choices[value]) if d.kind == "choice" else int(value) if d.kind == "int" else float(value)
            )
        return values

    def _sync(self, history: Sequence[Trial]) -> None:
        state = self.optuna.trial.TrialState
        for trial in sorted(history, key=lambda t: t.number):
            known = self.known.get(trial.number)
            if known is None:
                frozen = _frozen_trials(self.sweep, [trial], self.distributions, True)
                if frozen:
                    trial_id = self.storage.create_new_trial(self.study_id, template_trial=frozen[0])
                    self.known[trial.number] = (trial_id, trial.state)
            elif known[1] == "running" and trial.state != "running":  # it ended since: tell the study how
                trial_id = known[0]
                for epoch, value in trial.objective.items():
                    self.storage.set_trial_intermediate_value(trial_id, epoch, value)
                kind = _optuna_state(self.optuna, trial)
                self.storage.set_trial_state_values(trial_id, kind, [trial.value] if kind == state.COMPLETE else None)
                self.known[trial.number] = (trial_id, trial.state)
