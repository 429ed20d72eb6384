"""Activation maximization: the input window each filter would like best, found by gradient ascent on the input.

For filter f of a conv layer, start from windows of the receptive field's size (a few seeded random
ones around grey, and a blank one) and climb the filter's response r(x) (see
:mod:`convexp.analysis.network`) with its exact gradient, computed in numpy:

    x <- clip(x + rate * g / rms(g) - decay * (x - 0.5), 0, 1),     g = dr/dx

for a fixed number of steps, then a quarter as many more of x <- clip(x + rate * sign(g), 0, 1)
without the decay; the best window met wins. The clip keeps the window in the pixel range of the
data ([0, 1]) so the result is a real image and can be compared with test patches; the decay pulls
pixels the filter does not see (zero gradient) back to grey, so the picture shows what the filter
wants rather than the random start; the last, undecayed steps push every pixel that matters to
where the filter likes it best (for a first-layer filter, a linear function of the window, that is
the exact optimum: white where the weight is positive, black where it is negative). The same seeds
at two steps of training give comparable pictures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from convexp.analysis.network import RecordedNetwork, receptive_field, window_responses

STEPS = 200
RATE = 0.05
DECAY = 0.01
STARTS = 6


@dataclass(frozen=True)
class PreferredInput:
    """The window found for one filter, and the filter's response to it."""

    filter: int
    response: float
    pixels: np.ndarray  # (C, size, size) in [0, 1]


def maximize_layer(
    network: RecordedNetwork,
    filters: Sequence[int] | None = None,
    *,
    steps: int = STEPS,
    rate: float = RATE,
    decay: float = DECAY,
    starts: int = STARTS,
    seed: int = 0,
) -> list[PreferredInput]:
    """For every filter of the layer (or the chosen ones), the input window that (locally) maximizes its
    response, best of ``starts`` seeded starts. Filter f's starts depend only on (seed, f, start), so the
    same filter at two steps of training starts from the same windows."""
    if starts < 1:
        raise ValueError(f"starts must be at least 1, not {starts}")
    chosen = list(range(network.filters) if filters is None else filters)
    field = receptive_field(network.layers)
    shape = (network.input_shape[0], *field.size)
    # each filter's starts: `starts` seeded random windows around grey, and a blank (all 0) window;
    # all starts of all filters climb together, as one batch
    owners = np.repeat(chosen, starts + 1)
    x = np.stack(
        [
            window
            for f in chosen
            for window in (
                *(np.random.default_rng([seed, f, s]).uniform(0.4, 0.6, size=shape) for s in range(starts)),
                np.zeros(shape),
            )
        ]
    )
    axes = tuple(range(1, x.ndim))
    best_values = np.full(len(x), -np.inf)
    best_x = x.copy()
    for iteration in range(steps + steps // 4 + 1):
        values, grad = window_responses(network, x, owners)
        improved = values > best_values  # keep each start's best window so far
        best_values[improved], best_x[improved] = values[improved], x[improved]
        if iteration == steps + steps // 4:
            break
        if iteration < steps:
            rms = np.sqrt(np.mean(grad * grad, axis=axes, keepdims=True))
            # a start whose every path to the unit is cut by a ReLU has no gradient: it only decays
            step = np.divide(grad, rms, out=np.zeros_like(grad), where=rms > 0)
            x = np.clip(x + rate * step - decay * (x - 0.5), 0.0, 1.0)
        else:  # every pixel that matters moves a full step towards what the filter wants
            x = np.clip(x + rate * np.sign(grad), 0.0, 1.0)
    per_filter = best_values.reshape(len(chosen), starts + 1)
    winner = per_filter.argmax(axis=1)
    return [
        PreferredInput(f, float(per_filter[i, w]), best_x[i * (starts + 1) + w]) for i, (f, w) in enumerate(zip(chosen, winner))
    ]


def maximize_filter(network: RecordedNetwork, filter_index: int, **options) -> PreferredInput:
    """:func:`maximize_layer` for one filter."""
    return maximize_layer(network, [filter_index], **options)[0]
