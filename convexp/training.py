"""What a backend's trainer is given, and what it hands back while it trains.

A backend never touches the database. The runner gives it a :class:`TrainingJob`
(the resolved experiment plus the data as numpy arrays) and a :class:`TrainingObserver`;
the backend reports every step and epoch to the observer, and hands over its conv
kernels (canonical layout, float32) only when the observer asks for them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

# what a backend hands back lives in a leaf module; re-exported here, where backends look for it
from convexp.augmentation import Augmentation
from convexp.types import Checkpoint, KernelReader, KernelSnapshot, StateReader

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "Schedule",
    "learning_rate_at",
    "clip_factor",
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


class Schedule(BaseModel):
    """How the learning rate changes over the run's updates: a linear warmup, then constant, step or cosine
    decay. The rate of update k (1, 2, ...) is ``learning_rate`` times :meth:`factor` of k - 1, the updates
    made before it (see :func:`learning_rate_at`); every backend is given it before each update."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["constant", "step", "cosine"] = "constant"
    warmup_steps: int = Field(
        default=0, ge=0, description="updates whose rate rises linearly: update k of them uses k / warmup_steps"
    )
    step_size: int | None = Field(default=None, ge=1, description="step: the rate is multiplied by gamma every step_size updates")
    gamma: float = Field(default=0.1, gt=0, le=1, description="step: the factor at each step")
    min_factor: float = Field(default=0.0, ge=0, le=1, description="cosine: the share of learning_rate it decays to")

    @model_validator(mode="after")
    def _complete(self) -> Schedule:
        if self.type == "step" and self.step_size is None:
            raise ValueError("a step schedule needs step_size (the updates between two steps down)")
        return self

    def factor(self, done: int, total: int) -> float:
        """The learning rate's multiplier for the update made after ``done`` updates, of ``total`` in the run."""
        if done < self.warmup_steps:
            return (done + 1) / self.warmup_steps
        after = done - self.warmup_steps
        if self.type == "step":
            return self.gamma ** (after // (self.step_size or 1))
        if self.type == "cosine":
            span = max(1, total - self.warmup_steps)
            return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * min(after, span) / span))
        return 1.0


class SGD(BaseModel):
    """Stochastic gradient descent, with optional (Nesterov) momentum, as Keras and torch define it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["sgd"]
    learning_rate: float = Field(default=0.01, gt=0, description="the step size (a schedule's base)")
    momentum: float = Field(default=0.0, ge=0, lt=1, description="v = momentum * v + g; the step is learning_rate * v")
    nesterov: bool = Field(default=False, description="step by learning_rate * (g + momentum * v) instead")
    weight_decay: float = Field(default=0.0, ge=0, description=WEIGHT_DECAY)
    schedule: Schedule | None = Field(default=None, description="how the learning rate changes over the updates")


class Adam(BaseModel):
    """Adam (Kingma & Ba), bias-corrected. epsilon defaults to Keras's 1e-7 (torch uses 1e-8)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["adam"]
    learning_rate: float = Field(default=0.001, gt=0, description="the step size (a schedule's base)")
    beta_1: float = Field(default=0.9, ge=0, lt=1, description="decay of the mean of the gradients")
    beta_2: float = Field(default=0.999, ge=0, lt=1, description="decay of the mean of their squares")
    epsilon: float = Field(
        default=1e-7, gt=0, description="added to the root of the second moment (Keras's 1e-7; torch's is 1e-8)"
    )
    weight_decay: float = Field(default=0.0, ge=0, description=WEIGHT_DECAY)
    schedule: Schedule | None = Field(default=None, description="how the learning rate changes over the updates")


class AdamW(BaseModel):
    """Adam with decoupled weight decay (Loshchilov & Hutter): before each Adam step, every kernel shrinks by
    learning_rate * weight_decay of itself (w -= lr * wd * w; biases are not decayed), as torch.optim.AdamW and
    keras.optimizers.AdamW do it; the Adam step is Adam's above."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["adamw"]
    learning_rate: float = Field(default=0.001, gt=0, description="the step size (a schedule's base)")
    beta_1: float = Field(default=0.9, ge=0, lt=1, description="decay of the mean of the gradients")
    beta_2: float = Field(default=0.999, ge=0, lt=1, description="decay of the mean of their squares")
    epsilon: float = Field(
        default=1e-7, gt=0, description="added to the root of the second moment (Keras's 1e-7; torch's is 1e-8)"
    )
    weight_decay: float = Field(default=0.01, ge=0, description="decoupled: w -= learning_rate * weight_decay * w each step")
    schedule: Schedule | None = Field(default=None, description="how the learning rate changes over the updates")


Optimizer = Union[SGD, Adam, AdamW]


def clip_factor(global_norm: float, clip_norm: float | None) -> float:
    """What gradients whose norm, taken all together, is ``global_norm`` are multiplied by when clipped to
    ``clip_norm``: min(1, clip_norm / global_norm) -- TensorFlow's clip_by_global_norm; torch's clip_grad_norm_
    divides by global_norm + 1e-6, which the torch backend does not."""
    if clip_norm is None or global_norm <= clip_norm:
        return 1.0
    return clip_norm / global_norm


def learning_rate_at(optimizer: Optimizer, done: int, total: int) -> float:
    """The learning rate of the update made after ``done`` updates, of ``total`` in the run: ``learning_rate``
    times its schedule's factor (the one definition every backend is held to)."""
    if optimizer.schedule is None:
        return optimizer.learning_rate
    return optimizer.learning_rate * optimizer.schedule.factor(done, total)


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
    #: When set, every update's gradients (the loss's, before any weight decay) are scaled by
    #: min(1, gradient_clip_norm / ||g||), ||g|| their norm taken all together (:func:`clip_factor`).
    gradient_clip_norm: float | None = None
    #: The training loss's targets are (1 - s) * one-hot + s / num_classes (the test loss is plain cross-entropy).
    label_smoothing: float = 0.0
    #: When set, each batch's images are shifted and flipped (:mod:`convexp.augmentation`) before the step, and
    #: ``train_batch`` is given them (see :func:`run_epochs`).
    augmentation: Augmentation | None = None

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
    train_batch: Callable[..., tuple[float, float]],
    evaluate: Callable[[], tuple[float, float]],
    kernels: KernelReader,
    state: StateReader | None = None,
    set_learning_rate: Callable[[float], None] | None = None,
) -> None:
    """The epoch and step loop every backend shares, so that a step means the same everywhere.

    Reports step 0 (unless resuming: then the backend has restored ``job.resume_from`` and the
    loop goes on with the epoch after it), then each epoch visits the training examples in the seeded batch order
    (:func:`convexp.seeding.batch_order`); ``train_batch(indices)`` makes one update on those
    examples and returns its (loss, accuracy); ``evaluate()`` returns the test set's
    (mean loss, accuracy). With ``job.augmentation`` it is called ``train_batch(indices, images)``, ``images`` the
    batch's (N, C, H, W) float32 images shifted and flipped by that epoch's seeded draws, to train on instead of
    those ``indices`` select. Stops after ``job.max_steps`` updates if set. ``epoch_seconds``
    times the training pass, including the observer's work, not the evaluation. With a learning-rate
    schedule, ``set_learning_rate(rate)`` is called before each update with :func:`learning_rate_at`'s rate
    (a backend that implements schedules passes it; the rate of a resumed run follows from its step).
    """
    import time

    from convexp.augmentation import augment, epoch_draws
    from convexp.seeding import batch_order

    if job.resume_from is None:
        observer.on_train_start(kernels)
        first_epoch, step = 1, 0
    else:
        first_epoch, step = job.resume_from.epoch + 1, job.resume_from.step
    total_steps = job.total_steps
    scheduled = job.optimizer.schedule is not None
    if scheduled and set_learning_rate is None:
        raise ValueError("this backend's trainer does not set the learning rate per update: it cannot train a schedule")
    augmentation = job.augmentation if job.augmentation is not None and job.augmentation.active else None
    for epoch in range(first_epoch, job.epochs + 1):
        started = time.perf_counter()
        order = batch_order(len(job.train_labels), epoch, job.seed, job.shuffle)
        if augmentation is not None:
            shifts, flips = epoch_draws(augmentation, len(order), epoch, job.seed)
        for start in range(0, len(order), job.batch_size):
            if step >= total_steps:
                break
            if scheduled:
                set_learning_rate(learning_rate_at(job.optimizer, step, total_steps))  # type: ignore[misc]
            indices = order[start : start + job.batch_size]
            if augmentation is None:
                loss, accuracy = train_batch(indices)
            else:
                end = start + len(indices)
                loss, accuracy = train_batch(indices, augment(job.train_images[indices], shifts[start:end], flips[start:end]))
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
