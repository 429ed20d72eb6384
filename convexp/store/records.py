"""Plain records the store hands out and takes in: no ORM objects leave the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class RunRecord:
    """A row of ``runs`` plus the run's last test accuracy."""

    id: int
    experiment: str
    backend: str
    status: str
    seed: int
    dataset: str
    kernel_initializer: str
    bias_initializer: str
    spec: dict[str, Any]
    convexp_version: str
    backend_version: str
    framework: str
    framework_version: str
    epochs_completed: int
    steps_completed: int
    started_at: datetime
    finished_at: datetime | None
    message: str | None
    test_accuracy: float | None

    @property
    def seconds(self) -> float | None:
        """Wall time from start to finish (None while running)."""
        return None if self.finished_at is None else (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class MetricRecord:
    """One metric value at one step (read from, or to be written to, ``metrics``)."""

    step: int
    epoch: int
    name: str
    value: float


@dataclass(frozen=True)
class SnapshotRow:
    """A conv layer's kernel (out, in, kh, kw) and bias (out,) to write."""

    layer: str
    step: int
    epoch: int
    kernel: np.ndarray
    bias: np.ndarray | None


@dataclass(frozen=True)
class KernelSeries:
    """Every snapshot of one layer of one run: ``kernels`` is (snapshots, out, in, kh, kw), float32."""

    run_id: int
    layer: str
    steps: np.ndarray
    epochs: np.ndarray
    kernels: np.ndarray
    biases: np.ndarray | None
