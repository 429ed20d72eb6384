"""How much memory a run needs at least, before it starts, and whether this machine has it.

A conv layer of 100,000,000 filters validates (the shapes fit) and would start, to fail half a
minute later asking for hundreds of GiB. The estimate comes from the spec alone, like the
storage estimate (:mod:`convexp.experiments.estimate_disk`): float32 parameters and their gradients, the
optimizer's state (Adam's two moments; SGD's momentum buffer), one batch's activations and
their gradients (every planned layer's output), the training images as float32, and the
snapshots waiting for the writer. It leaves out what a framework itself takes (hundreds of MB
for torch or TensorFlow) and its workspaces, so it is a lower bound: a run over it cannot fit,
one under it may still not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from convexp.datasets import dataset_info
from convexp.errors import ConvexpError
from convexp.experiments.axes import product, top_field
from convexp.experiments.grids import Grid
from convexp.experiments.spec import RunSpec
from convexp.machine import available_memory
from convexp.model.layers import flat
from convexp.model.parameters import parameter_table
from convexp.store.background import FLUSH_BYTES, MAX_PENDING
from convexp.store.space import format_bytes

FLOAT = 4


@dataclass(frozen=True)
class MemoryEstimate:
    """The bytes a run holds at least while it trains, by what holds them."""

    weights: int  # parameters, their gradients and the optimizer's state
    activations: int  # one batch through every layer and back
    dataset: int  # the training images as float32
    snapshots: int  # batches waiting for the writer

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.dataset + self.snapshots

    def describe(self) -> str:
        """The parts in one line."""
        return (
            f"parameters, gradients and optimizer state {format_bytes(self.weights)}, one batch's activations "
            f"{format_bytes(self.activations)}, the training images {format_bytes(self.dataset)}"
        )


def estimate_memory(spec: RunSpec) -> MemoryEstimate:
    """The least memory one run of ``spec`` holds while it trains (see the module's docs)."""
    planned = spec.plan()
    parameters = sum(row.trainable for row in parameter_table(planned))
    optimizer = spec.optimizer
    states = 2 if optimizer.name == "adam" else (1 if getattr(optimizer, "momentum", 0) else 0)
    info = dataset_info(spec.dataset)
    outputs = sum(math.prod(p.output_shape) for p in flat(planned)) + math.prod(info.input_shape)
    train = min(info.train_examples, spec.train_examples or info.train_examples)
    recorded = set(spec.snapshot_layers())
    kernels = sum(p.snapshot_values for p in flat(planned) if p.name in recorded)
    return MemoryEstimate(
        weights=(2 + states) * parameters * FLOAT,
        activations=2 * outputs * spec.batch_size * FLOAT,
        dataset=train * math.prod(info.input_shape) * FLOAT,
        snapshots=(MAX_PENDING + 1) * max(FLUSH_BYTES, kernels * FLOAT),
    )


def check_memory(experiment: str, spec: RunSpec, available: int | None = None) -> MemoryEstimate:
    """The run's estimate; raises in one line when it cannot fit in the memory there is."""
    needed = estimate_memory(spec)
    available = available_memory() if available is None else available
    if available is not None and needed.total > available:
        raise ConvexpError(
            f"experiment '{experiment}': a run needs at least {format_bytes(needed.total)} of memory "
            f"({needed.describe()}), more than the {format_bytes(available)} this machine has available; "
            "use fewer filters or units, a smaller batch_size, or train_examples"
        )
    return needed


#: The fields that decide the memory a run holds; the others (seed, epochs, initializer...) do not.
MEMORY_FIELDS = ("dataset", "layers", "batch_size", "train_examples", "optimizer", "snapshots")


def decides_memory(axis: str) -> bool:
    """Whether a grid axis can change the memory a run holds: one in :data:`MEMORY_FIELDS`, but not an optimizer's
    numbers (its kind decides the state it keeps; a learning rate does not)."""
    top = top_field(axis)
    return top in MEMORY_FIELDS and not (top == "optimizer" and axis not in ("optimizer", "optimizer.name"))


def check_grids(grids: Iterable[Grid], available: int | None = None) -> int:
    """Check every run of each grid without expanding it: one run per combination of the values of the
    axes that decide memory (:data:`MEMORY_FIELDS`); returns the most a run needs."""
    available = available_memory() if available is None else available
    most = 0
    for grid in grids:
        axes = [axis for axis in grid.axes if decides_memory(axis)]
        seen: set[str] = set()
        for choice in product([grid.bounds(axis) if grid.sweep else grid.values(axis) for axis in axes]):
            spec = grid.spec(**dict(zip(axes, choice)))
            key = spec.model_dump_json(include=set(MEMORY_FIELDS))
            if key not in seen:
                seen.add(key)
                most = max(most, check_memory(grid.experiment, spec, available).total)
    return most
