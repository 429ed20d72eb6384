"""What an experiment's ``sweep:`` block may say: a search over some of its fields instead of a grid of them.

::

    lr-sweep:
      dataset: digits
      ...                                   # the experiment's fields, each with one value
      sweep:
        method: tpe                         # grid, random or tpe (tpe needs convexp[sweeps]: Optuna)
        trials: 12
        seed: 0                             # the same seed samples the same trials
        parameters:                         # dotted paths, as in a grid: block
          optimizer.learning_rate: {loguniform: [0.0001, 0.1]}
          layers.0.filters: {choice: [8, 16, 32]}
        objective: {measure: edge_share, layer: conv1, goal: maximize}   # or {metric: test_accuracy}
        prune: {rule: median, startup_trials: 3}                         # optional (needs convexp[sweeps])

A distribution is ``{uniform: [low, high]}``, ``{loguniform: [low, high]}`` (0 < low), ``{int: [low, high]}``
(both ends included) or ``{choice: [value, ...]}``. Each trial is an ordinary run whose spec holds the values
sampled for it. The objective is a metric the runs record at each epoch (``test_accuracy``, ``test_loss``,
``epoch_seconds``), or a filter measure of a conv layer's kernel at each epoch's end (``edge_share``,
``drift``), taken at the last epoch; ``goal`` defaults to minimize for a loss and time, maximize otherwise.
``prune`` stops a trial whose objective at an epoch is worse than the median of the finished trials' at that
epoch (Optuna's ``MedianPruner``); it ends ``pruned``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from convexp.errors import did_you_mean
from convexp.experiments.axes import check_path
from convexp.model.layers import Conv, flat

#: The experiment's key that holds a sweep.
SWEEP_KEY = "sweep"
METHODS = ("grid", "random", "tpe")
KINDS = ("uniform", "loguniform", "int", "choice")
#: What the runs record at each epoch (:data:`convexp.backends.trainer.EPOCH_METRICS`): an objective may be one.
OBJECTIVE_METRICS = ("test_accuracy", "test_loss", "epoch_seconds")
#: Filter measures of a layer's kernel an objective may be (``similarity`` compares runs, so is none).
OBJECTIVE_MEASURES = ("edge_share", "drift")
#: The longest metric name the database holds: a measure's name, ``edge_share(LAYER)``, must fit.
_METRIC_NAME_LENGTH = 64


@dataclass(frozen=True)
class Distribution:
    """Where one swept field's values come from: ``kind`` with its bounds (``low``/``high``) or ``choices``."""

    path: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    @property
    def finite(self) -> bool:
        """Whether its values can be listed (a grid can take them): a choice or whole numbers."""
        return self.kind in ("choice", "int")

    def values(self) -> Sequence[Any]:
        """Every value of a finite distribution, in order (a grid's axis)."""
        if self.kind == "choice":
            return self.choices
        if self.kind == "int":
            return range(int(self.low), int(self.high) + 1)
        raise ValueError(f"a {self.kind} distribution has no list of values")

    def extent(self) -> Sequence[Any]:
        """The values that bound what it gives: every choice, the whole numbers, or a continuous one's two ends
        (what validation and the storage and memory estimates look at)."""
        return self.values() if self.finite else [self.low, self.high]

    def describe(self) -> str:
        """``loguniform [0.0001, 0.1]``, as people read it."""
        if self.kind == "choice":
            return f"choice of {list(self.choices)}"
        bounds = f"[{int(self.low)}, {int(self.high)}]" if self.kind == "int" else f"[{self.low:g}, {self.high:g}]"
        return f"{self.kind} {bounds}"


class Objective(BaseModel):
    """What a sweep optimises: a metric at the last epoch, or a filter measure of a conv layer."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    metric: str | None = Field(default=None, description="a metric the runs record at each epoch")
    measure: str | None = Field(default=None, description="edge_share or drift, of `layer`'s kernel at each epoch's end")
    layer: str | None = Field(default=None, description="the conv layer a measure is of (default: the first)")
    goal: Literal["maximize", "minimize"] | None = Field(
        default=None, description="default: minimize a loss or a time, maximize anything else"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Objective:
        if (self.metric is None) == (self.measure is None):
            raise ValueError(
                "objective: either {metric: NAME} (test_accuracy, test_loss, epoch_seconds) or "
                "{measure: edge_share, layer: conv1}"
            )
        if self.metric is not None and self.metric not in OBJECTIVE_METRICS:
            raise ValueError(
                f"objective.metric: the runs never record '{self.metric}' at each epoch"
                f"{did_you_mean(self.metric, OBJECTIVE_METRICS)}; they record {', '.join(OBJECTIVE_METRICS)}"
            )
        if self.measure is not None and self.measure not in OBJECTIVE_MEASURES:
            raise ValueError(
                f"objective.measure: '{self.measure}' is no filter measure of one run"
                f"{did_you_mean(self.measure, OBJECTIVE_MEASURES)}; known: {', '.join(OBJECTIVE_MEASURES)}"
            )
        if self.metric is not None and self.layer is not None:
            raise ValueError("objective.layer: a layer goes with a measure, not a metric")
        return self

    @property
    def name(self) -> str:
        """The objective as a metric name: ``test_accuracy``, or ``edge_share(conv1)`` (recorded at each epoch)."""
        return self.metric if self.metric is not None else f"{self.measure}({self.layer})"

    @property
    def maximize(self) -> bool:
        """Whether larger is better."""
        if self.goal is not None:
            return self.goal == "maximize"
        return not (self.metric or "").endswith(("loss", "seconds"))


class Pruning(BaseModel):
    """Stopping poor trials early: the median rule over epochs (Optuna's ``MedianPruner``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rule: Literal["median"] = Field(default="median", description="median: worse than the finished trials' median")
    startup_trials: int = Field(default=5, ge=0, description="finished trials before any is pruned")
    warmup_epochs: int = Field(default=0, ge=0, description="epochs a trial runs before it may be pruned")


class SweepSpec(BaseModel):
    """An experiment's ``sweep:`` block, validated (see the module's docs)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    method: Literal["grid", "random", "tpe"] = Field(description="grid (every combination), random, or tpe (Optuna)")
    trials: int | None = Field(default=None, ge=1, description="how many runs (a grid: default, all of it)")
    seed: int = Field(default=0, ge=0, lt=2**32, description="the sampler's seed: the same seed, the same trials")
    startup_trials: int = Field(default=10, ge=1, description="tpe: random trials before its model takes over")
    parameters: dict[str, Distribution] = Field(description="dotted path -> its distribution")
    objective: Objective = Field(default_factory=lambda: Objective(metric="test_accuracy"))
    prune: Pruning | None = Field(default=None, description="stop poor trials early (needs convexp[sweeps])")

    @field_validator("prune", mode="before")
    @classmethod
    def _rule_alone(cls, value: Any) -> Any:
        return {"rule": value} if isinstance(value, str) else value

    @field_validator("parameters", mode="before")
    @classmethod
    def _distributions(cls, value: Any) -> Any:
        if not isinstance(value, dict) or not value:
            raise ValueError(
                "dotted paths, each with a distribution, e.g. {optimizer.learning_rate: {loguniform: [0.0001, 0.1]}}"
            )
        return {str(path): parse_distribution(str(path), spec) for path, spec in value.items()}

    @model_validator(mode="after")
    def _trials(self) -> SweepSpec:
        if self.method == "grid":
            infinite = [d.path for d in self.parameters.values() if not d.finite]
            if infinite:
                raise ValueError(
                    f"parameters.{infinite[0]}: a grid takes choice or int distributions; use method random or tpe "
                    "for a continuous one"
                )
            if self.trials is not None and self.trials > self.grid_size:
                raise ValueError(f"trials: {self.trials} is more than the grid's {self.grid_size:,} combinations")
        elif self.trials is None:
            raise ValueError(f"trials: how many runs a {self.method} search makes (e.g. trials: 20)")
        return self

    @property
    def grid_size(self) -> float:
        """How many combinations the parameters' values make (a grid's; ``inf`` when one is continuous)."""
        sizes: list[float] = [len(d.values()) if d.finite else math.inf for d in self.parameters.values()]
        return math.prod(sizes)

    @property
    def total_trials(self) -> int:
        """How many trials the sweep makes."""
        return self.trials if self.trials is not None else int(self.grid_size)

    def describe(self) -> str:
        """``tpe search, 12 trials of optimizer.learning_rate, maximizing edge_share(conv1)``."""
        goal = "maximizing" if self.objective.maximize else "minimizing"
        what = ", ".join(self.parameters)
        prune = f", pruning by the {self.prune.rule} rule" if self.prune else ""
        return f"{self.method} search, {self.total_trials:,} trial(s) of {what}, {goal} {self.objective.name}{prune}"

    def needs_optuna(self) -> bool:
        """Whether it needs Optuna (``convexp[sweeps]``): TPE, or pruning."""
        return self.method == "tpe" or self.prune is not None

    def definition(self) -> dict[str, Any]:
        """The block as JSON (what the database keeps of the sweep)."""
        data = self.model_dump(mode="json", exclude={"parameters"})
        data["parameters"] = {
            path: {d.kind: list(d.choices) if d.kind == "choice" else [d.low, d.high]} for path, d in self.parameters.items()
        }
        return data


def parse_distribution(path: str, spec: Any) -> Distribution:
    """``{loguniform: [low, high]}`` (or uniform, int, choice) for ``path``; raises ``ValueError`` naming it."""
    where = f"parameters.{path}"
    if not (isinstance(spec, dict) and len(spec) == 1):
        raise ValueError(
            f"{where}: one distribution, e.g. {{loguniform: [0.0001, 0.1]}}, {{uniform: [0, 0.5]}}, {{int: [8, 64]}} "
            f"or {{choice: [16, 32]}} (got {spec!r})"
        )
    kind, args = next(iter(spec.items()))
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown distribution '{kind}'{did_you_mean(str(kind), KINDS)}; known: {', '.join(KINDS)}")
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ValueError(f"{where}: choice takes a list of values (got {args!r})")
        return Distribution(path, kind, choices=tuple(args))
    if not (isinstance(args, list) and len(args) == 2):
        raise ValueError(f"{where}: {kind} takes [low, high] (got {args!r})")
    low, high = (_number(a, where, kind) for a in args)
    if kind == "int" and not all(float(b).is_integer() for b in (low, high)):
        raise ValueError(f"{where}: int takes whole-number bounds (got {args!r})")
    if not low < high if kind != "int" else not low <= high:
        raise ValueError(f"{where}: {kind} needs low {'<=' if kind == 'int' else '<'} high (got [{low:g}, {high:g}])")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"{where}: loguniform needs 0 < low (got {low:g}); its values are spread evenly in log space")
    return Distribution(path, kind, float(low), float(high))


def _number(value: Any, where: str, kind: str) -> float:
    if isinstance(value, str):  # 1e-4: YAML 1.1 reads it as text, a user means the number
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: {kind}'s bounds are finite numbers (got {value!r})")
    return float(value)


def parse_sweep(block: Any, raw: Mapping[str, Any]) -> SweepSpec:
    """An experiment's ``sweep:`` block, each parameter's path checked against the experiment's fields (``raw``).
    Raises ``ValueError("field 'sweep...': ...")``."""
    if not isinstance(block, dict):
        raise ValueError(f"field '{SWEEP_KEY}': a mapping: method, trials, parameters, objective (got {block!r})")
    try:
        sweep = SweepSpec.model_validate(block)
    except ValidationError as exc:
        raise ValueError(_sweep_error(exc)) from None
    for path in sweep.parameters:
        check_path(raw, path, f"{SWEEP_KEY}.parameters.{path}")
    return sweep


def _sweep_error(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
    message = str(first["msg"]).removeprefix("Value error, ")
    if message.startswith(("parameters.", "trials:", "objective")):  # said by a validator, naming its own field
        where, _, message = message.partition(": ")
        loc = where.removesuffix(":")
    if first["type"] == "extra_forbidden":
        key = str(first["loc"][-1])
        fields = Objective.model_fields if first["loc"][0] == "objective" else SweepSpec.model_fields
        fields = Pruning.model_fields if first["loc"][0] == "prune" else fields
        message = f"unknown field{did_you_mean(key, list(fields))}"
    elif first["type"] not in ("value_error", "missing"):
        message += f" (got {first['input']!r})"
    return f"field '{SWEEP_KEY}{'.' + loc if loc else ''}': {message}"


def check_objective(sweep: SweepSpec, spec: Any) -> SweepSpec:
    """``sweep`` with its objective's layer named (the first conv layer, by default), checked against a run's
    ``spec`` (:class:`~convexp.experiments.spec.RunSpec`): a measure's layer is a conv layer whose kernel is
    recorded at each epoch's end. Raises ``ValueError("field 'sweep.objective...': ...")``."""
    objective = sweep.objective
    if objective.measure is None:
        return sweep
    convs = [p.name for p in flat(spec.plan()) if isinstance(p.layer, Conv)]
    layer = objective.layer or (convs[0] if convs else None)
    if layer is None or layer not in convs:
        raise ValueError(
            f"field '{SWEEP_KEY}.objective.layer': "
            + (
                f"'{layer}' is not a conv layer{did_you_mean(layer, convs)}; conv layers: {', '.join(convs) or 'none'}"
                if layer
                else "the network has no conv layer to measure"
            )
        )
    if not spec.snapshots.epoch_end or layer not in spec.snapshot_layers():
        raise ValueError(
            f"field '{SWEEP_KEY}.objective': {objective.measure} of {layer} is measured on its kernel at each epoch's "
            "end: record it there (snapshots: {epoch_end: true}, and layer "
            f"{layer} in snapshots.layers)"
        )
    named = objective.model_copy(update={"layer": layer})
    if len(named.name) > _METRIC_NAME_LENGTH:
        raise ValueError(f"field '{SWEEP_KEY}.objective.layer': '{layer}' is too long a name to record {named.name}")
    return sweep.model_copy(update={"objective": named})


def sweep_digest(base: Mapping[str, Any], sweep: SweepSpec) -> str:
    """What identifies a sweep for resuming it: the experiment's fields and the sweep block, all but its number of
    trials (a resumed sweep may be given more)."""
    definition = {"experiment": base, "sweep": {k: v for k, v in sweep.definition().items() if k != "trials"}}
    text = json.dumps(definition, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
