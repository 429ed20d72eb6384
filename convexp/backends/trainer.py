"""What a backend's trainer is given, and what it hands back while it trains.

A backend never touches the database. The runner gives it a :class:`TrainingJob`
(the resolved experiment plus the data as numpy arrays) and a :class:`TrainingObserver`;
the backend reports every step and epoch to the observer, and hands over its conv
kernels (canonical layout, float32) only when the observer asks for them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from convexp.model.augmentation import Augmentation, augment, epoch_draws
from convexp.model.optimizers import Optimizer, learning_rate_at
from convexp.model.seeding import batch_order
from convexp.model.weights import Checkpoint, KernelReader, KernelSnapshot, StateReader

__all__ = ["TrainingJob", "TrainingObserver", "run_epochs", "STEP_METRICS", "EPOCH_METRICS"]

if TYPE_CHECKING:
    import numpy as np

    from convexp.model.layers import PlannedLayer


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
    #: When set, each batch's images are shifted and flipped (:mod:`convexp.model.augmentation`) before the step, and
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
    (:func:`convexp.model.seeding.batch_order`); ``train_batch(indices)`` makes one update on those
    examples and returns its (loss, accuracy); ``evaluate()`` returns the test set's
    (mean loss, accuracy). With ``job.augmentation`` it is called ``train_batch(indices, images)``, ``images`` the
    batch's (N, C, H, W) float32 images shifted and flipped by that epoch's seeded draws, to train on instead of
    those ``indices`` select. Stops after ``job.max_steps`` updates if set. ``epoch_seconds``
    times the training pass, including the observer's work, not the evaluation. With a learning-rate
    schedule, ``set_learning_rate(rate)`` is called before each update with :func:`learning_rate_at`'s rate
    (a backend that implements schedules passes it; the rate of a resumed run follows from its step).
    """

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


STEP_METRICS = ("train_loss", "train_accuracy")
"""Per-step metrics every trainer reports."""
EPOCH_METRICS = ("test_loss", "test_accuracy", "epoch_seconds")
"""Per-epoch metrics every trainer reports."""
