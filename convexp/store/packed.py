"""A step's kernels as one flat float32 array and its layout: how recorded kernels travel from the
training thread to the database without being cut into rows first."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

from convexp.store.records import SnapshotToWrite

#: How one flat float32 array holds a model's conv layers: per layer its name, its canonical kernel
#: shape (out, in / groups, kh, kw), and its bias length (None without a bias); the kernel's values
#: come first, then the bias's, layer after layer.
Layout = tuple[tuple[str, tuple[int, ...], int | None], ...]


def unpack(layout: Layout, flat: np.ndarray) -> Iterator[tuple[str, tuple[np.ndarray, np.ndarray | None]]]:
    """(name, (kernel, bias)) of each layer in a flat array laid out by ``layout`` (views of it, no copies)."""
    offset = 0
    for name, shape, bias_size in layout:
        size = math.prod(shape)
        kernel = flat[offset : offset + size].reshape(shape)
        offset += size
        bias = None
        if bias_size is not None:
            bias = flat[offset : offset + bias_size]
            offset += bias_size
        yield name, (kernel, bias)


#: Complete steps as (step, epoch, [(layout, flat array), ...]): one entry per model logged at the step.
PackedSteps = list[tuple[int, int, list[tuple[Layout, np.ndarray]]]]


class PackedSnapshots(Sequence[SnapshotToWrite]):
    """Snapshot rows of complete steps, kept as each step's flat arrays: the rows are built where they
    are read (the writer), not on the training thread."""

    def __init__(self, steps: PackedSteps):
        self.steps = steps
        self._count = sum(len(layout) for _, _, logged in steps for layout, _ in logged)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[SnapshotToWrite]:
        for step, epoch, logged in self.steps:
            for layout, flat in logged:
                for name, (kernel, bias) in unpack(layout, flat):
                    yield SnapshotToWrite(name, step, epoch, kernel, bias)

    def __getitem__(self, index):  # a Sequence's; the writer only iterates
        return list(self)[index]
