"""A sweep as it runs: its record in the database, which trial comes next with which values, and the objective
of each trial measured (and the pruning rule applied) as it trains.

Everything a decision needs is read from the database -- the trials so far, their values (in their specs) and
their objective at each epoch -- so starting, continuing after a crash, and training trials on Dask workers
all decide alike. The runner trains the trials (:func:`convexp.experiments.runner.execute`).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from convexp.analysis.groups import measure_values
from convexp.errors import ConvexpError
from convexp.experiments.axes import split_path
from convexp.experiments.grids import Grid
from convexp.experiments.pruning import prune_reason
from convexp.experiments.samplers import TpeSearch, Trial, TrialState, optuna_module, sample
from convexp.experiments.spec import ResolvedRun
from convexp.experiments.sweep_spec import SweepSpec
from convexp.model.weights import KernelReader
from convexp.store import Store
from convexp.store.sweeps import SweepRecord, create_sweep, get_sweep, last_trial, latest_sweep, set_trials, trials

#: How a trial's run status reads to a sampler.
_STATES: dict[str, TrialState] = {"finished": "complete", "pruned": "pruned", "running": "running", "queued": "running"}
#: Statuses of a trial that stopped before its end and is continued (from its checkpoint) when the sweep is.
UNFINISHED = ("interrupted", "stale")


@dataclass(frozen=True)
class NextTrial:
    """A trial to start: its number and its run (the experiment with the values sampled for it)."""

    number: int
    run: ResolvedRun
    values: dict[str, Any]


class OpenSweep:
    """A sweep of one experiment (``grid``, whose :attr:`~Grid.sweep` it is) recorded in ``store`` as ``record``."""

    def __init__(self, store: Store, grid: Grid, record: SweepRecord):
        assert grid.sweep is not None
        self.store, self.grid, self.record, self.sweep = store, grid, record, grid.sweep
        self.tpe: TpeSearch | None = None  # made on the first TPE draw, kept for the next

    @property
    def id(self) -> int:
        return self.record.id

    def history(self) -> list[Trial]:
        """Every trial so far, as the sampler sees it."""
        return history(self.store, self.id, self.sweep)

    def unfinished(self) -> list[int]:
        """The runs of trials that stopped before their end (interrupted, or their process died): continued first."""
        recorded = trials(self.store, self.id, self.sweep.objective.name, specs=False)
        return [t.run_id for t in recorded if t.status in UNFINISHED]

    def next_trial(self) -> NextTrial | None:
        """The next trial with its sampled values, or None once the sweep has all its trials."""
        number = last_trial(self.store, self.id) + 1
        if number > self.sweep.total_trials:
            return None
        # grid and random draw from the seed and the trial's number alone; only TPE reads the trials so far
        if self.sweep.method == "tpe":
            self.tpe = self.tpe or TpeSearch(self.sweep)
            values = self.tpe.sample(number, self.history())
        else:
            values = sample(self.sweep, number)
        return NextTrial(number, self.grid.resolved(**values), values)


def open_sweep(store: Store, grid: Grid, resume: bool = False) -> OpenSweep:
    """A new sweep of ``grid`` recorded in ``store``, or with ``resume`` the newest one of the same definition
    (:class:`ConvexpError` when there is none)."""
    sweep = grid.sweep
    if sweep is None or grid.sweep_digest is None:
        raise ConvexpError(f"experiment '{grid.experiment}' has no sweep: block")
    if sweep.needs_optuna():
        optuna_module()  # one line before anything is written where Optuna is missing
    if resume:
        record = resumable_sweep(store, grid)
        if record.definition.get("trials") != sweep.trials:  # continued with another number of trials
            record = set_trials(store, record.id, sweep.trials)
        return OpenSweep(store, grid, record)
    return OpenSweep(store, grid, create_sweep(store, grid.experiment, sweep.method, sweep.definition(), grid.sweep_digest))


def resumable_sweep(store: Store, grid: Grid) -> SweepRecord:
    """The sweep ``--resume-sweep`` continues: the newest of ``grid``'s experiment with its definition (all but the
    number of trials); :class:`ConvexpError` naming the experiment when there is none."""
    record = _newest(store, grid)
    if record is None:
        raise ConvexpError(
            f"{store.location}: no sweep of experiment '{grid.experiment}' as it is defined now to continue; "
            "run it without --resume-sweep to start one"
        )
    return record


def newest_sweep(store: Store, grid: Grid) -> int | None:
    """The id of the newest sweep in ``store`` of ``grid``'s experiment as it is defined now, if any."""
    record = _newest(store, grid)
    return None if record is None else record.id


def _newest(store: Store, grid: Grid) -> SweepRecord | None:
    return latest_sweep(store, grid.experiment, grid.sweep_digest) if grid.sweep_digest else None


def sweep_of(store: Store, sweep_id: int) -> SweepSpec:
    """The sweep a database row records, as it ran."""
    return SweepSpec.model_validate(get_sweep(store, sweep_id).definition)


def history(store: Store, sweep_id: int, sweep: SweepSpec) -> list[Trial]:
    """A sweep's trials as samplers and the pruning rule see them."""
    return [
        Trial(t.trial, {path: value_at(t.spec, path) for path in sweep.parameters}, _STATES.get(t.status, "failed"), t.objective)
        for t in trials(store, sweep_id, sweep.objective.name)
    ]


def value_at(spec: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of a recorded spec (a layer by its index); None where there is none."""
    node: Any = spec
    for part in split_path(path):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
    return node


class TrialJudge:
    """The epoch hook of a sweep's trial (:class:`convexp.experiments.recorder.EpochHook`): measures the objective
    at each epoch's end -- a filter measure is recorded as a metric of that name -- and says when the pruning rule
    stops the trial."""

    def __init__(self, store: Store, run_id: int, sweep_id: int, trial: int, sweep: SweepSpec, epochs: int):
        self.store, self.run_id, self.sweep_id, self.trial = store, run_id, sweep_id, trial
        self.sweep, self.epochs = sweep, epochs
        self.objective: dict[int, float] = {}
        self.first: np.ndarray | None = None

    def start(self, kernels: KernelReader) -> None:
        """Keep the layer's first kernel, which drift is measured from."""
        layer = self.sweep.objective.layer
        if self.sweep.objective.measure is not None and layer is not None:
            self.first = np.array(kernels()[layer].kernel)

    def epoch_end(self, epoch: int, metrics: Mapping[str, float], kernels: KernelReader) -> dict[str, float]:
        """The objective at this epoch; returned (to be recorded with the epoch's metrics) when it is a measure."""
        objective = self.sweep.objective
        if objective.metric is not None:
            if objective.metric in metrics:
                self.objective[epoch] = float(metrics[objective.metric])
            return {}
        assert objective.measure is not None and objective.layer is not None
        kernel = np.array(kernels()[objective.layer].kernel)
        if self.first is None:  # a resumed trial: its first kernel is recorded
            self.first = self.store.snapshot(self.run_id, objective.layer, 0).kernel_array
        value = measure_values(objective.measure, {0: (self.first, kernel)}, {})[0]
        if not math.isfinite(value):  # drift from an all-zero kernel: no objective to record or compare
            return {}
        self.objective[epoch] = value
        return {objective.name: value}

    def last_value(self) -> float | None:
        """The objective at the last epoch measured here (None before any)."""
        return self.objective[max(self.objective)] if self.objective else None

    def verdict(self, epoch: int) -> str | None:
        """Why the trial stops after ``epoch`` (the pruning rule), or None; never after its last epoch."""
        if self.sweep.prune is None or epoch >= self.epochs:
            return None
        # what the rule compares: the finished trials' objective at each epoch, and this trial's own so far (a
        # resumed trial's earlier epochs are recorded, not measured here)
        recorded = trials(self.store, self.sweep_id, self.sweep.objective.name, specs=False, statuses=("finished", "running"))
        own = next((t.objective for t in recorded if t.trial == self.trial), {})
        finished = [Trial(t.trial, {}, "complete", t.objective) for t in recorded if t.status == "finished"]
        return prune_reason(self.sweep, finished, {**own, **self.objective})


def judge_for(store: Store, run_id: int, sweep_id: int | None, trial: int | None, epochs: int) -> TrialJudge | None:
    """The epoch hook of run ``run_id`` when it is trial ``trial`` of sweep ``sweep_id``, else None."""
    if sweep_id is None:
        return None
    return TrialJudge(store, run_id, sweep_id, trial or 0, sweep_of(store, sweep_id), epochs)


@dataclass(frozen=True)
class SweepSummary:
    """How a sweep stands: its trials by status, and its best finished trial (run, number, objective, values)."""

    sweep_id: int
    experiment: str
    objective: str
    maximize: bool
    total: int
    counts: dict[str, int]
    best_run: int | None
    best_trial: int | None
    best_value: float | None
    best_values: dict[str, Any]
    #: The command that draws the sweep's first parameter against its objective.
    plot_command: str = ""

    def describe(self) -> str:
        """One line: the trials by status, and the best."""
        counts = ", ".join(f"{n} {status}" for status, n in self.counts.items())
        done = sum(self.counts.values())
        line = f"sweep {self.sweep_id} of '{self.experiment}': {done}/{self.total} trial(s) ({counts or 'none yet'})"
        if self.best_trial is None or self.best_value is None:
            return line + f"; no trial has finished with {self.objective} yet"
        values = format_values(self.best_values)
        goal = "highest" if self.maximize else "lowest"
        return line + (
            f"; {goal} {self.objective}: {self.best_value:.4g}, trial {self.best_trial} (run {self.best_run}): {values}"
        )


def format_values(values: Mapping[str, Any]) -> str:
    """``optimizer.learning_rate=0.00123, layers.0.filters=16``: a trial's values, as the CLI shows them."""
    return ", ".join(f"{path}={value:.4g}" if isinstance(value, float) else f"{path}={value}" for path, value in values.items())


def summarise_sweep(store: Store, sweep_id: int) -> SweepSummary:
    """How sweep ``sweep_id`` stands, read from the database."""
    record = get_sweep(store, sweep_id)
    sweep = SweepSpec.model_validate(record.definition)
    recorded = trials(store, sweep_id, sweep.objective.name)
    counts: dict[str, int] = {}
    for t in recorded:
        counts[t.status] = counts.get(t.status, 0) + 1
    finished = [t for t in recorded if t.status == "finished" and t.objective]
    sign = 1.0 if sweep.objective.maximize else -1.0
    best = max(finished, key=lambda t: (sign * t.objective[max(t.objective)], -t.trial), default=None)
    return SweepSummary(
        sweep_id,
        record.experiment,
        sweep.objective.name,
        sweep.objective.maximize,
        sweep.total_trials,
        counts,
        best.run_id if best else None,
        best.trial if best else None,
        best.objective[max(best.objective)] if best else None,
        {path: value_at(best.spec, path) for path in sweep.parameters} if best else {},
        _plot_command(record.experiment, sweep),
    )


def _plot_command(experiment: str, sweep: SweepSpec) -> str:
    objective = sweep.objective
    y = f"--y {objective.metric}" if objective.metric else f"--y {objective.measure} --layer {objective.layer}"
    return f"convexp plot sweep {shlex.quote(experiment)} --x {next(iter(sweep.parameters))} {y} --out sweep.png"
