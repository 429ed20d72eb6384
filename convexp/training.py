"""What a backend's trainer is given, and what it hands back while it trains.

A backend never touches the database. The runner gives it a :class:`TrainingJob`
(the resolved experiment plus the data as numpy arrays) and a :class:`TrainingObserver`;
the backend reports every step and epoch to the observer, and hands over its conv
kernels (canonical layout, float32) only when the observer asks for them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, Union

from pydantic import BaseModel, ConfigDict, Field

# what a backend hands back lives in a leaf module; re-exported here, where backends look for it
from convexp.types import Checkpoint, KernelReader, KernelSnapshot, StateReader

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "Optimizer",
    "TrainingJob",
    "TrainingObserver",
    "run_epochs",
    "Checkpoint",
    "KernelReader",
    "KernelSnapshot",
    "StateReader",
    "STEP_METRICS",
    "EPOCH_METRICS",
]

if TYPE_CHECKING:
    import numpy as np

    from convexp.layers import PlannedLayer


#: What ``weight_decay`` means on sgd and adam: the one definition, for the spec's docs and every backend.
WEIGHT_DECAY = (
    "L2 regularisation: weight_decay * w added to each kernel's gradient (conv and dense kernels; biases are not "
    "decayed), i.e. weight_decay / 2 * ||w||^2 added to the loss, as torch.optim's weight_decay does for the kernels"
)


class SGD(BaseModel):
    """Stochastic gradient descent, with optional (Nesterov) momentum, as Keras and torch define it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["sgd"]
    learning_rate: float = Field(default=0.01, gt=0)
    momentum: float = Field(default=0.0, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(default=0.0, ge=0, description=WEIGHT_DECAY)


class Adam(BaseModel):
    """Adam (Kingma & Ba), bias-corrected. epsilon defaults to Keras's 1e-7 (torch uses 1e-8)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["adam"]
    learning_rate: float = Field(default=0.001, gt=0)
    beta_1: float = Field(default=0.9, ge=0, lt=1)
    beta_2: float = Field(default=0.999, ge=0, lt=1)
    epsilon: float = Field(default=1e-7, gt=0)
    weight_decay: float = Field(default=0.0, ge=0, description=WEIGHT_DECAY)


class AdamW(BaseModel):
    """Adam with decoupled weight decay (Loshchilov & Hutter): before each Adam step, every kernel shrinks by
    learning_rate * weight_decay of itself (w -= lr * wd * w; biases are not decayed), as torch.optim.AdamW and
    keras.optimizers.AdamW do it; the Adam step is Adam's above."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["adamw"]
    learning_rate: float = Field(default=0.001, gt=0)
    beta_1: float = Field(default=0.9, ge=0, lt=1)
    beta_2: float = Field(default=0.999, ge=0, lt=1)
    epsilon: float = Field(default=1e-7, gt=0)
    weight_decay: float = Field(default=0.01, ge=0, description="decoupled: w -= learning_rate * weight_decay * w each step")


Optimizer = Union[SGD, Adam, AdamW]


@dataclass(frozen=True)
class TrainingJob:
    """Everything a backend needs to train one run. Arrays are float32 images (N, C, H, W) and int64 labels."""

    layers: tuple[PlannedLayer, ...]
    num_classes: int
    kernel_initializer: str
    bias_initializer: str
    optimizer: Optimizer
    epochs: int
    batch_size: int
    seed: int
    shuffle: bool
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    max_steps: int | None = None
    #: Where to train, as the backend resolved the spec's ``device`` (:meth:`Backend.resolve_device`).
    device: str = "cpu"
    snapshot_layers: tuple[str, ...] = field(default=())
    #: When set, every conv and dense layer starts from these canonical weights (shared_init),
    #: instead of the backend drawing its own.
    initial_weights: Mapping[str, KernelSnapshot] | None = None
    #: When set, the backend restores this state and training goes on after its epoch.
    resume_from: Checkpoint | None = None

    @property
    def steps_per_epoch(self) -> int:
        """Number of batches in one pass over the training set (the last one may be short)."""
        return -(-len(self.train_labels) // self.batch_size)

    @property
    def total_steps(self) -> int:
        """Number of optimizer updates the whole run makes."""
        steps = self.steps_per_epoch * self.epochs
        return min(steps, self.max_steps) if self.max_steps else steps


class TrainingObserver(Protocol):
    """Receives a backend's progress. Steps count optimizer updates: step 0 is before any update."""

    def on_train_start(self, kernels: KernelReader) -> None:
        """Called once, after initialisation and before the first update."""

    def on_step(self, step: int, epoch: int, metrics: Mapping[str, float], kernels: KernelReader) -> None:
        """Called after each update with that batch's ``train_loss`` and ``train_accuracy``."""

    def on_epoch_end(
        self, epoch: int, step: int, metrics: Mapping[str, float], kernels: KernelReader, state: StateReader | None = None
    ) -> None:
        """Called after each epoch with ``test_loss``, ``test_accuracy`` and ``epoch_seconds``.

        ``epoch_seconds`` is the wall time of the epoch's training pass (forward, backward,
        update and the observer's own work), excluding the test evaluation. ``state`` is given
        by backends that can resume: reading it gives a checkpoint of this moment.
        """


def run_epochs(
    job: TrainingJob,
    observer: TrainingObserver,
    train_batch: Callable[[np.ndarray], tuple[float, float]],
    evaluate: Callable[[], tuple[float, float]],
    kernels: KernelReader,
    state: StateReader | None = None,
) -> None:
    """The epoch and step loop every backend shares, so that a step means the same everywhere.

    Reports step 0 (unless resuming: then the backend has restored ``job.resume_from`` and the
    loop goes on with the epoch after it), then each epoch visits the training examples in the seeded batch order
    (:func:`convexp.seeding.batch_order`); ``train_batch(indices)`` makes one update on those
    examples and returns its (loss, accuracy); ``evaluate()`` returns the test set's
    (mean loss, accuracy). Stops after ``job.max_steps`` updates if set. ``epoch_seconds``
    times the training pass, including the observer's work, not the evaluation.
    """
    import time

    from convexp.seeding import batch_order

    if job.resume_from is None:
        observer.on_train_start(kernels)
        first_epoch, step = 1, 0
    else:
        first_epoch, step = job.resume_from.epoch + 1, job.resume_from.step
    total_steps = job.total_steps
    for epoch in range(first_epoch, job.epochs + 1):
        started = time.perf_counter()
        order = batch_order(len(job.train_labels), epoch, job.seed, job.shuffle)
        for start in range(0, len(order), job.batch_size):
            if step >= total_steps:
                break
            loss, accuracy = train_batch(order[start : start + job.batch_size])
            step += 1
            observer.on_step(step, epoch, {"train_loss": float(loss), "train_accuracy": float(accuracy)}, kernels)
        seconds = time.perf_counter() - started
        test_loss, test_accuracy = evaluate()
        metrics = {"test_loss": float(test_loss), "test_accuracy": float(test_accuracy), "epoch_seconds": seconds}
        observer.on_epoch_end(epoch, step, metrics, kernels, state)
        if step >= total_steps:
            break


#: Per-step metrics every trainer reports, and per-epoch ones.
STEP_METRICS = ("train_loss", "train_accuracy")
EPOCH_METRICS = ("test_loss", "test_accuracy", "epoch_seconds")
