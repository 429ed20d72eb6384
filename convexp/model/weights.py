"""A network's weights as convexp holds them, whoever produced them: a layer's kernel and bias at one moment
(:class:`KernelSnapshot`, canonical layout, float32), the readers that produce them, a trainer's checkpoint, and
the test that values are finite. Backends hand these back; the seeded initial weights and the store use them.

A leaf module: it imports nothing of convexp, so the trainer interface (:mod:`convexp.backends.trainer`),
the initial weights (:mod:`convexp.model.seeding`) and the store can all use these types without
importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class KernelSnapshot:
    """One conv layer's weights at one moment: kernel (out, in, kh, kw) and bias (out,), float32."""

    kernel: np.ndarray
    bias: np.ndarray | None


KernelReader = Callable[[], Mapping[str, KernelSnapshot]]
"""Called by the observer when it wants the current conv kernels, keyed by layer name."""

StateReader = Callable[[], bytes]
"""Called by the observer at the end of an epoch when it wants a checkpoint: the backend's whole training state
(weights, optimizer state, random generators) as bytes in the backend's own format."""


@dataclass(frozen=True)
class Checkpoint:
    """A run's training state after its ``epoch``-th epoch (``step`` updates), to resume from.

    ``state`` is what the backend's :data:`StateReader` produced; only that backend reads it.
    """

    epoch: int
    step: int
    state: bytes


def non_finite(values: np.ndarray) -> str | None:
    """What non-finite value an array holds ("NaN" before "infinity"), or None when all are finite."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    if np.isfinite(values).all():
        return None
    return "NaN" if np.isnan(values).any() else "infinity"
