"""How a layer's weights and biases are spread, step by step: TensorBoard's distribution and histogram views,
computed at read time from the exact stored kernels (nothing is binned when a run is recorded).

The distribution of one snapshot is its values' percentiles at TensorBoard's nine levels -- the minimum, the
maximum, the median, and where a normal distribution puts 0.5, 1 and 1.5 standard deviations either side --
so the bands read as they do there; the percentiles are exact (linear interpolation between order statistics),
of float32 values widened to float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from convexp.errors import ConvexpError
from convexp.store import Store

#: The percentile levels of one snapshot's distribution: TensorBoard's, in percent.
PERCENTILES = (0.0, 6.68, 15.87, 30.85, 50.0, 69.15, 84.13, 93.32, 100.0)
#: At most this many snapshots make a distribution over steps (evenly spread, the first and last always in).
MAX_POINTS = 200
MAX_BINS = 200


@dataclass(frozen=True)
class Spread:
    """One snapshot's values: their percentiles at :data:`PERCENTILES`, mean and standard deviation."""

    percentiles: tuple[float, ...]
    mean: float
    std: float

    @classmethod
    def of(cls, values: np.ndarray) -> Spread:
        """The spread of an array of any shape."""
        flat = np.asarray(values, dtype=np.float64).ravel()
        return cls(tuple(float(v) for v in np.percentile(flat, PERCENTILES)), float(flat.mean()), float(flat.std()))


def _spreads(rows: np.ndarray) -> list[Spread]:
    """:meth:`Spread.of` of each row of a (snapshots, values) array, computed for all rows at once."""
    values = rows.astype(np.float64)
    levels = np.percentile(values, PERCENTILES, axis=1).T
    means, stds = values.mean(axis=1), values.std(axis=1)
    return [Spread(tuple(float(v) for v in row), float(m), float(s)) for row, m, s in zip(levels, means, stds)]


def sampled_steps(steps: list[int], points: int) -> list[int]:
    """At most ``points`` of the recorded ``steps``, evenly spread over their positions, first and last included."""
    if points < 2:
        raise ConvexpError(f"a distribution over steps needs at least 2 points, not {points}")
    if len(steps) <= points:
        return list(steps)
    positions = np.unique(np.round(np.linspace(0, len(steps) - 1, points)).astype(int))
    return [steps[int(p)] for p in positions]


def layer_distribution(store: Store, run_id: int, layer: str, points: int = MAX_POINTS) -> dict[str, Any]:
    """The spread of a layer's kernel and bias at up to ``points`` of its recorded steps, as JSON-able lists:
    ``{"layer", "steps", "recorded", "percentiles", "kernel": {"values": [[9 per step]...], "mean", "std"},
    "bias": the same, or None for a layer without bias}``."""
    recorded = store.snapshot_steps(run_id, layer)
    if not recorded:
        store.snapshot(run_id, layer, 0)  # raises, naming the layers the run has
    points = min(points, MAX_POINTS)
    steps = sampled_steps(recorded, points)
    if len(steps) < len(recorded):
        # when only some steps are drawn, those stored whole (a raw row every few snapshots) are as evenly spread
        # and need no delta chain decoded: sample among them, the first and last recorded steps always in
        whole = store.self_contained_steps(run_id, layer)
        if len(whole) >= points:
            steps = sorted({recorded[0], *sampled_steps(whole, points)[1:-1], recorded[-1]})
    snapshots = store.snapshots_at(run_id, layer, steps)
    steps = [s.step for s in snapshots]
    kernels = _spreads(np.stack([s.kernel_array.reshape(-1) for s in snapshots]))
    bias_bytes = [s.bias for s in snapshots if s.bias is not None]
    biases = _spreads(np.stack([np.frombuffer(b, "<f4") for b in bias_bytes])) if len(bias_bytes) == len(snapshots) else []

    def series(spreads: list[Spread]) -> dict[str, Any] | None:
        if len(spreads) != len(steps):
            return None
        return {
            "values": [list(s.percentiles) for s in spreads],
            "mean": [s.mean for s in spreads],
            "std": [s.std for s in spreads],
        }

    return {
        "layer": layer,
        "steps": steps,
        "recorded": len(recorded),
        "percentiles": list(PERCENTILES),
        "kernel": series(kernels),
        "bias": series(biases),
    }


def layer_histogram(store: Store, run_id: int, layer: str, step: int, bins: int = 30) -> dict[str, Any]:
    """Histograms of a layer's kernel and bias at one recorded step: ``bins`` equal bins from the smallest to
    the largest value (``numpy.histogram``'s edges and counts); ``bias`` is None for a layer without bias."""
    if not 1 <= bins <= MAX_BINS:
        raise ConvexpError(f"bins must be from 1 to {MAX_BINS}, not {bins}")
    snapshot = store.snapshot(run_id, layer, step)

    def histogram(values: np.ndarray) -> dict[str, Any]:
        counts, edges = np.histogram(np.asarray(values, dtype=np.float64).ravel(), bins=bins)
        return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts], "size": int(values.size)}

    bias = None if snapshot.bias is None else histogram(np.frombuffer(snapshot.bias, dtype="<f4"))
    return {
        "layer": layer,
        "step": snapshot.step,
        "epoch": snapshot.epoch,
        "kernel": histogram(snapshot.kernel_array),
        "bias": bias,
    }
