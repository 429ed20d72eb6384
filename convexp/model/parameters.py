"""How many weights each layer of a planned network has: a conv layer's filters count kh*kw*in_channels weights
each, plus one bias per filter (its text for people: :mod:`convexp.analysis.plan_text`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from convexp.model.layers import BatchNorm, PlannedLayer, flat


@dataclass(frozen=True)
class LayerParameters:
    """One row of a network's parameter table: what a layer outputs and what it learns."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...] | None
    weights: int
    biases: int
    #: What the layer keeps but training's gradients do not change: a batch_norm's running mean and variance.
    statistics: int = 0
    #: Whether it stands inside a residual block (its body or its shortcut).
    nested: bool = False

    @property
    def trainable(self) -> int:
        """Weights plus biases: everything training's updates change in this layer."""
        return self.weights + self.biases

    @property
    def parameters(self) -> int:
        """Everything the layer keeps, as Keras's summary counts it: the trainable ones plus the statistics."""
        return self.trainable + self.statistics


def parameter_table(planned: Sequence[PlannedLayer]) -> list[LayerParameters]:
    """Per layer: output shape, kernel shape, how many weights and biases (conv and dense layers have a bias per output;
    a batch_norm layer's gamma counts as weights, its beta as biases, and its running mean and variance as statistics)."""
    rows = []
    inside = {id(q) for p in planned for q in p.inner}
    for p in flat(planned):
        kernel = p.kernel_shape
        # a layer with weights has one bias per output channel (conv) or unit (dense): output_shape[0]
        weights, biases = (math.prod(kernel), p.output_shape[0]) if kernel else (0, 0)
        statistics = 0
        if isinstance(p.layer, BatchNorm):
            weights = biases = p.output_shape[0]
            statistics = 2 * p.output_shape[0]
        rows.append(LayerParameters(p.name, p.layer.type, p.output_shape, kernel, weights, biases, statistics, id(p) in inside))
    return rows
