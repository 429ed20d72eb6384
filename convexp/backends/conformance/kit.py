"""What the conformance checks are built from, and what a plugin's own tests use beside them.

:class:`ConformanceFailure` and :class:`CheckSkipped` are how a check ends when it does not pass;
:func:`tiny_job` builds the small job the checks train (digits, two conv layers) and
:func:`with_shared_init` gives it initial weights drawn once with numpy, so two backends start from
the same weights; :class:`CollectingObserver` keeps what a trainer reports; and
:func:`same_steps_as_reference` trains a job on a backend and on the numpy reference and compares
the kernels. :mod:`convexp.backends.conformance.checks` (the checks themselves, and where a plugin imports these
from) and :mod:`convexp.backends.conformance.layers` are made of them.
"""

from __future__ import annotations

import contextlib
import unittest
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from convexp.backends.output_checks import NonFiniteKernel, PlanCheck, PluginBreach
from convexp.backends.protocol import Backend
from convexp.backends.registry import get_backend
from convexp.backends.trainer import TrainingJob
from convexp.datasets import load_dataset
from convexp.model.layers import Conv, Dense, Flatten, MaxPool, PlannedLayer, plan
from convexp.model.optimizers import SGD
from convexp.model.seeding import initial_weights
from convexp.model.weights import Checkpoint, KernelReader, KernelSnapshot, StateReader


class ConformanceFailure(AssertionError):
    """A backend does not do what convexp expects; the message says what differs."""


class CheckSkipped(unittest.SkipTest):
    """A check cannot run on this backend (e.g. resume, for a backend that hands out no checkpoints); says why.
    A ``unittest.SkipTest``, so that a plugin's own pytest or unittest test that calls :func:`run_check` for every
    check reports one convexp added since, for a feature the plugin does not declare, as skipped, not failed."""


def require(condition: object, message: str) -> None:
    """Raise :class:`ConformanceFailure` with ``message`` unless ``condition`` holds (works under ``python -O``)."""
    if not condition:
        raise ConformanceFailure(message)


REFERENCE = "numpy"
CONV_TOLERANCE = 1e-5
STEP_TOLERANCE = 1e-5
VARIANCE_TOLERANCE = 0.05


@contextlib.contextmanager
def _breach_fails() -> Iterator[None]:
    """A breach of the plan (:mod:`convexp.backends.output_checks`) inside the block is a failed check, with its line."""
    try:
        yield
    except (PluginBreach, NonFiniteKernel) as exc:
        raise ConformanceFailure(str(exc)) from None


@dataclass
class CollectingObserver:
    """A TrainingObserver that keeps everything it is told, with a kernel snapshot at every step.

    With a ``plan`` it checks what the backend hands back as the runner does
    (:class:`~convexp.backends.output_checks.PlanCheck`), so a plugin author meets a breach here first."""

    snapshots: dict[int, dict[str, KernelSnapshot]] = field(default_factory=dict)
    steps: list[tuple[int, int, dict[str, float]]] = field(default_factory=list)
    epochs: list[tuple[int, int, dict[str, float]]] = field(default_factory=list)
    #: The checkpoint of each epoch end, for backends that hand one out.
    checkpoints: dict[int, Checkpoint] = field(default_factory=dict)
    plan: PlanCheck | None = None

    def _kernels(self, kernels: KernelReader, step: int, epoch: int) -> dict[str, KernelSnapshot]:
        handed = dict(kernels())
        if self.plan is not None:
            with _breach_fails():
                self.plan.kernels(handed, step, epoch)
        return handed

    def on_train_start(self, kernels: KernelReader) -> None:
        """Keeps the kernels before the first update as step 0's snapshot."""
        self.snapshots[0] = self._kernels(kernels, 0, 0)

    def on_step(self, step: int, epoch: int, metrics: Mapping[str, float], kernels: KernelReader) -> None:
        """Keeps the step's metrics and its kernels (checked against the plan, when there is one)."""
        if self.plan is not None:
            with _breach_fails():
                self.plan.step(step, epoch)
        self.steps.append((step, epoch, dict(metrics)))
        self.snapshots[step] = self._kernels(kernels, step, epoch)

    def on_epoch_end(
        self, epoch: int, step: int, metrics: Mapping[str, float], kernels: KernelReader, state: StateReader | None = None
    ) -> None:
        """Keeps the epoch's metrics and its checkpoint, when the backend hands one out."""
        if self.plan is not None:
            with _breach_fails():
                self.plan.epoch_end(epoch, step)
        self.epochs.append((epoch, step, dict(metrics)))
        if state is not None:
            self.checkpoints[epoch] = Checkpoint(epoch, step, state())

    def finished(self) -> None:
        """After the backend's train returned: it made every step and epoch of the plan."""
        if self.plan is not None:
            with _breach_fails():
                self.plan.finished()


def digits_network(*layers: Any) -> tuple[PlannedLayer, ...]:
    """``layers`` planned for scikit-learn's 8x8 digits (one channel, 10 classes), as the checks train them."""
    return tuple(plan(list(layers), (1, 8, 8), 10))


def tiny_job(**changes: Any) -> TrainingJob:
    """A small job for checks and a plugin's tests: conv 3x3 'same' (4) -> maxpool -> conv 3x3 (6) -> dense, plain SGD,
    one epoch on 256 of scikit-learn's digits (bundled, no download); ``changes`` replace any field."""

    data = load_dataset("digits")
    layers = digits_network(
        Conv(type="conv", filters=4, kernel_size=3, padding="same", activation="relu"),
        MaxPool(type="maxpool", pool_size=2),
        Conv(type="conv", filters=6, kernel_size=3, activation="relu"),
        Flatten(type="flatten"),
        Dense(type="dense", units=10),
    )
    settings: dict[str, Any] = dict(
        layers=layers,
        num_classes=10,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        optimizer=SGD(name="sgd", learning_rate=0.1),
        epochs=1,
        batch_size=32,
        seed=0,
        shuffle=False,
        train_images=data.train_images[:256],
        train_labels=data.train_labels[:256],
        test_images=data.test_images,
        test_labels=data.test_labels,
        max_steps=None,
        snapshot_layers=("conv1", "conv2"),
        initial_weights=None,
    )
    settings.update(changes)
    return TrainingJob(**settings)


def with_shared_init(job: TrainingJob) -> TrainingJob:
    """``job`` with initial weights drawn once with numpy from its seed (:func:`convexp.model.seeding.initial_weights`):
    every backend given it starts from the same weights, so their steps can be compared."""
    weights = initial_weights(job.layers, job.kernel_initializer, job.bias_initializer, job.seed)
    return replace(job, initial_weights=weights)


def same_steps_as_reference(
    backend: Backend, job: TrainingJob, steps: int, what: str, tolerance: float = STEP_TOLERANCE, test_loss: bool = False
) -> str:
    """Train ``steps`` updates of ``job`` from shared initial weights on ``backend`` and on the numpy reference;
    the recorded layers (conv kernels and biases, batch_norm's rows) after the last step must agree within
    ``tolerance``, and with ``test_loss`` the test loss evaluated after them too."""
    job = with_shared_init(replace(job, max_steps=steps))
    mine, reference = CollectingObserver(), CollectingObserver()
    backend.train(job, mine)
    get_backend(REFERENCE).train(job, reference)
    require(steps in mine.snapshots, f"no snapshot after step {steps} (steps seen: {sorted(mine.snapshots)})")
    worst = 0.0
    for layer, expected in reference.snapshots[steps].items():
        got = mine.snapshots[steps][layer]
        for part, a, b in (("kernel", got.kernel, expected.kernel), ("bias", got.bias, expected.bias)):
            if a is None and b is None:  # batch_norm's snapshots have no bias
                continue
            if a is None or b is None or np.shape(a) != np.shape(b):
                raise ConformanceFailure(
                    f"{layer} {part}: {None if a is None else np.shape(a)}, expected {None if b is None else np.shape(b)}"
                )
            difference = float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())
            require(
                difference <= tolerance,
                f"{layer} {part} after {steps} step(s) of {what}: differs from the numpy "
                f"reference by up to {difference:.2e} (tolerance {tolerance:.0e})",
            )
            worst = max(worst, difference)
    moved = float(np.abs(reference.snapshots[steps]["conv1"].kernel - reference.snapshots[0]["conv1"].kernel).max())
    tested = ""
    if test_loss:
        require(bool(mine.epochs), "no epoch end was reported, so no test loss to compare")
        got_loss, expected_loss = mine.epochs[-1][2]["test_loss"], reference.epochs[-1][2]["test_loss"]
        require(
            abs(got_loss - expected_loss) <= tolerance * max(1.0, abs(expected_loss)),
            f"test loss after {steps} step(s) of {what}: {got_loss:.7g}, the numpy reference's {expected_loss:.7g}",
        )
        tested = f", test loss {got_loss:.6g} (reference {expected_loss:.6g})"
    return f"{what}, {steps} step(s): max abs difference {worst:.2e} (training moved kernels by up to {moved:.2e}){tested}"
