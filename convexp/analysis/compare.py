"""``convexp compare``: runs side by side — what differs in their specs, how they scored, how their filters moved and compare."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convexp.analysis.kernels import FilterMatching, match_filters, relative_drift
from convexp.analysis.parameters import run_parameters, varying_fields
from convexp.analysis.selection import step_index
from convexp.errors import ConvexpError
from convexp.store import RunRecord, Store


@dataclass(frozen=True)
class RunScores:
    """A run's headline numbers."""

    run_id: int
    label: str
    final_test_accuracy: float | None
    best_test_accuracy: float | None
    final_test_loss: float | None
    final_train_loss: float | None
    seconds_per_epoch: float | None
    steps: int


@dataclass(frozen=True)
class LayerComparison:
    """One conv layer across the runs: each run's drift at the compared step, and its filters matched to the first run's."""

    layer: str
    steps: list[int]
    drift: list[float]
    similarity: list[float]
    matchings: list[FilterMatching]


@dataclass
class Comparison:
    """Everything ``convexp compare`` reports."""

    runs: list[RunRecord]
    spec_differences: dict[str, list[Any]]
    scores: list[RunScores]
    layers: list[LayerComparison] = field(default_factory=list)
    not_compared: dict[str, str] = field(default_factory=dict)  # layer -> why its filters were not compared


def label(run: RunRecord) -> str:
    """How a run is named in comparisons: ``id experiment:backend (seed S)``."""
    return f"{run.id} {run.experiment}:{run.backend} (seed {run.seed})"


def spec_differences(runs: list[RunRecord]) -> dict[str, list[Any]]:
    """Parameters (spec fields, plus experiment, backend and the concrete initializer) whose values differ between runs."""
    parameters = [run_parameters(r) for r in runs]
    return {k: [p.get(k) for p in parameters] for k in sorted(varying_fields(parameters))}


def scores(store: Store, run: RunRecord) -> RunScores:
    """Final and best metrics of a run, and its mean seconds per epoch."""
    metrics = store.metrics(run.id, ["test_accuracy", "test_loss", "train_loss", "epoch_seconds"])

    def values(name: str) -> list[float]:
        return [m.value for m in metrics if m.name == name]

    accuracy, epoch_seconds = values("test_accuracy"), values("epoch_seconds")
    last = lambda name: values(name)[-1] if values(name) else None  # noqa: E731
    return RunScores(
        run.id,
        label(run),
        last("test_accuracy"),
        max(accuracy) if accuracy else None,
        last("test_loss"),
        last("train_loss"),
        sum(epoch_seconds) / len(epoch_seconds) if epoch_seconds else None,
        run.steps_completed,
    )


def compare_runs(store: Store, runs: list[RunRecord], step: int | str = "last") -> Comparison:
    """Compare runs; each conv layer recorded in every run is compared at ``step`` (a step number or ``last``)."""
    if not runs:
        raise ConvexpError("compare needs at least one run")
    comparison = Comparison(runs, spec_differences(runs), [scores(store, r) for r in runs])
    layer_sets = [set(store.snapshot_layers(r.id)) for r in runs]
    common = sorted(set.intersection(*layer_sets)) if layer_sets else []
    for layer in sorted(set().union(*layer_sets) - set(common)):
        missing = [str(r.id) for r, layers in zip(runs, layer_sets) if layer not in layers]
        comparison.not_compared[layer] = f"no snapshots in run(s) {', '.join(missing)}"
    for layer in common:
        # each run's first snapshot and the one compared: drift and matching need no more
        steps = [store.snapshot_steps(r.id, layer) for r in runs]
        indices = [step_index(s, step, r.id, layer) for r, s in zip(runs, steps)]
        first = [store.snapshot(r.id, layer, s[0]).kernel_array for r, s in zip(runs, steps)]
        chosen = [store.snapshot(r.id, layer, s[i]).kernel_array for r, s, i in zip(runs, steps, indices)]
        if len({k.shape for k in chosen}) > 1:  # same name, different shapes: nothing to match
            shapes = ", ".join(f"run {r.id} {list(k.shape)}" for r, k in zip(runs, chosen))
            comparison.not_compared[layer] = f"kernel shapes differ ({shapes})"
            continue
        matchings = [match_filters(chosen[0], k) for k in chosen]
        comparison.layers.append(
            LayerComparison(
                layer,
                [s[i] for s, i in zip(steps, indices)],
                [float(relative_drift(np.stack([w0, w]))[-1]) for w0, w in zip(first, chosen)],
                [m.mean_similarity for m in matchings],
                matchings,
            )
        )
    return comparison


def comparison_rows(comparison: Comparison) -> tuple[list[str], list[list[Any]]]:
    """One row per run: its scores, then per layer the step compared, the drift and the similarity to the first run."""
    columns = ["run", "final_test_accuracy", "best_test_accuracy", "final_test_loss", "seconds_per_epoch", "steps"]
    for layer in comparison.layers:
        columns += [f"{layer.layer}_step", f"{layer.layer}_drift", f"{layer.layer}_similarity"]
    rows = []
    for index, s in enumerate(comparison.scores):
        row: list[Any] = [
            s.label,
            s.final_test_accuracy,
            s.best_test_accuracy,
            s.final_test_loss,
            None if s.seconds_per_epoch is None else round(s.seconds_per_epoch, 3),
            s.steps,
        ]
        for layer in comparison.layers:
            row += [layer.steps[index], _round(layer.drift[index]), _round(layer.similarity[index])]
        rows.append(row)
    return columns, rows


def _round(value: float) -> float:
    return value if math.isnan(value) or math.isinf(value) else round(value, 6)


def comparison_dict(comparison: Comparison) -> dict[str, Any]:
    """The whole comparison as plain data (for JSON)."""
    columns, rows = comparison_rows(comparison)
    return {
        "runs": [dict(zip(columns, row)) for row in rows],
        "spec_differences": comparison.spec_differences,
        "layers": [
            {
                "layer": layer.layer,
                "steps": layer.steps,
                "drift": layer.drift,
                "similarity_to_first_run": layer.similarity,
                "matches": [
                    [{"filter": i, "matched_filter": j, "cosine": round(sim, 6)} for i, j, sim in m.pairs]
                    for m in layer.matchings
                ],
            }
            for layer in comparison.layers
        ],
        "layers_not_compared": comparison.not_compared,
    }
