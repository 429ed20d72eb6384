"""Conformance checks for backends: does a backend compute, initialise and train as convexp expects?

Run them with ``convexp check BACKEND``, or from a plugin package's own tests::

    from convexp.backends.conformance.checks import CHECKS, run_check

    @pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.name)
    def test_conformance(check):
        run_check(check, "mybackend")   # raises ConformanceFailure with the reason; CheckSkipped if it cannot run

The numpy backend is the reference: convolutions and the first steps of each optimizer are compared
with it. A check never relies on ``assert`` statements (they vanish under ``python -O``): it raises
:class:`ConformanceFailure` itself. For a plugin's own tests, :func:`tiny_job` builds the small job the
checks train (digits, two conv layers) and :func:`with_shared_init` gives it initial weights drawn once
with numpy, so two backends start from the same weights; :class:`CollectingObserver` keeps what a
trainer reports.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from convexp.backends.conformance.kit import (
    CONV_TOLERANCE,
    REFERENCE,
    VARIANCE_TOLERANCE,
    CheckSkipped,
    CollectingObserver,
    ConformanceFailure,
    digits_network,
    require,
    same_steps_as_reference,
    tiny_job,
    with_shared_init,
)
from convexp.backends.conformance.layers import (
    check_activations,
    check_adamw,
    check_augmentation,
    check_average_pooling,
    check_batch_norm,
    check_clipping_and_smoothing,
    check_dilation_and_groups,
    check_residual,
    check_schedule,
    check_weight_decay,
)
from convexp.backends.output_checks import PlanCheck
from convexp.backends.protocol import Backend
from convexp.backends.registry import get_backend
from convexp.backends.trainer import EPOCH_METRICS, STEP_METRICS, TrainingJob, TrainingObserver
from convexp.datasets import load_dataset
from convexp.model.initializers import explain
from convexp.model.layers import Conv, Dense, Dropout, Flatten, MaxPool, flat
from convexp.model.optimizers import SGD, Adam
from convexp.model.weights import KernelSnapshot

#: What a plugin's tests import from here: the checks, and the kit they are made of.
__all__ = [
    "CHECKS",
    "Check",
    "CheckResult",
    "CheckSkipped",
    "CollectingObserver",
    "ConformanceFailure",
    "check_backend",
    "digits_network",
    "require",
    "run_check",
    "same_steps_as_reference",
    "tiny_job",
    "with_shared_init",
]


@dataclass(frozen=True)
class Check:
    """One conformance check: a name, what it verifies, and the function that verifies it."""

    name: str
    description: str
    run: Callable[[Backend], str]


@dataclass(frozen=True)
class CheckResult:
    """How one check went on one backend: ``result`` is "pass", "FAIL" or "skipped" (it could not run; ``detail`` says why)."""

    name: str
    result: str
    detail: str
    seconds: float

    @property
    def passed(self) -> bool:
        """Whether the check did not fail (a skipped check has not failed)."""
        return self.result != "FAIL"


def check_conv(backend: Backend) -> str:
    """conv2d equals the numpy reference (valid/same, stride 1/2, several channels, bias)."""
    reference = get_backend(REFERENCE)
    rng = np.random.default_rng(0)
    worst = 0.0
    for image_shape, kernel_shape in [((2, 3, 9, 8), (4, 3, 3, 3)), ((1, 2, 7, 7), (3, 2, 5, 2)), ((2, 1, 6, 6), (2, 1, 2, 2))]:
        images = rng.standard_normal(image_shape).astype(np.float32)
        kernel = rng.standard_normal(kernel_shape).astype(np.float32)
        bias = rng.standard_normal(kernel_shape[0]).astype(np.float32)
        for padding in ("valid", "same"):
            for stride in (1, 2):
                out = np.asarray(backend.conv2d(images, kernel, bias, stride=stride, padding=padding))
                expected = reference.conv2d(images, kernel, bias, stride=stride, padding=padding)
                where = f"image {image_shape}, kernel {kernel_shape}, {padding}, stride {stride}"
                require(out.shape == expected.shape, f"{where}: shape {out.shape}, expected {expected.shape}")
                require(out.dtype == np.float32, f"{where}: dtype {out.dtype}, expected float32")
                np.testing.assert_allclose(out, expected, rtol=CONV_TOLERANCE, atol=CONV_TOLERANCE, err_msg=where)
                worst = max(worst, float(np.abs(out - expected).max()))
    return f"12 cases, max abs difference {worst:.2e}"


def check_initializers(backend: Backend) -> str:
    """Every initializer the backend offers draws the right shape, range and variance, reproducibly."""
    shape = (64, 32, 3, 3)
    checked = []
    for name in backend.initializer_names():
        concrete = backend.resolve_initializer(name)
        theory = explain(concrete, shape).theory
        drawn = np.asarray(backend.initialize(name, shape, 0))
        require(drawn.shape == shape and drawn.dtype == np.float32, f"{name}: {drawn.shape} {drawn.dtype}")
        np.testing.assert_array_equal(drawn, backend.initialize(name, shape, 0), err_msg=f"{name}: not reproducible for a seed")
        slack = 1e-6 * max(1.0, abs(theory.high))
        require(
            drawn.min() >= theory.low - slack and drawn.max() <= theory.high + slack,
            f"{name}: values in [{drawn.min():.4g}, {drawn.max():.4g}], expected within [{theory.low:.4g}, {theory.high:.4g}]",
        )
        if theory.variance > 0:
            variance = float(drawn.astype(np.float64).var())
            require(
                abs(variance / theory.variance - 1) <= VARIANCE_TOLERANCE,
                f"{name}: variance {variance:.4g}, expected {theory.variance:.4g} within {VARIANCE_TOLERANCE:.0%}",
            )
            require(abs(drawn.mean()) <= 4 * math.sqrt(theory.variance / drawn.size) + 1e-7, f"{name}: mean {drawn.mean():.3g}")
        checked.append(name if name == concrete else f"{name}={concrete}")
    return ", ".join(checked)


def check_one_step(backend: Backend) -> str:
    """From the same initial weights, one plain SGD step on the same batch gives the numpy backend's kernels."""
    return same_steps_as_reference(backend, tiny_job(), 1, "SGD")


def check_momentum(backend: Backend) -> str:
    """Three SGD steps with momentum 0.9 give the numpy backend's kernels (velocity carried between steps)."""
    return same_steps_as_reference(
        backend, tiny_job(optimizer=SGD(name="sgd", learning_rate=0.05, momentum=0.9)), 3, "SGD with momentum 0.9"
    )


def check_nesterov(backend: Backend) -> str:
    """Three SGD steps with Nesterov momentum give the numpy backend's kernels (the step looks ahead by the velocity)."""
    optimizer = SGD(name="sgd", learning_rate=0.05, momentum=0.9, nesterov=True)
    return same_steps_as_reference(backend, tiny_job(optimizer=optimizer), 3, "SGD with Nesterov momentum 0.9")


def check_adam(backend: Backend) -> str:
    """Five Adam steps give the numpy backend's kernels: both moments, their bias correction and the betas. Epsilon is
    1e-10 here: where it is added (before the bias correction, as Keras does, or after, as torch.optim does) is a
    documented difference between frameworks that only shows for gradients near epsilon."""
    optimizer = Adam(name="adam", learning_rate=0.001, epsilon=1e-10)
    return same_steps_as_reference(backend, tiny_job(optimizer=optimizer), 5, "Adam")


def check_strided_same(backend: Backend) -> str:
    """A network whose first conv layer is 3x3 'same' with stride 2 (odd input: padding split 0/1 as TensorFlow
    does) trains one step like the numpy backend."""
    layers = digits_network(
        Conv(type="conv", filters=4, kernel_size=3, stride=2, padding="same", activation="relu"),  # 8x8 -> 4x4
        Conv(type="conv", filters=6, kernel_size=3, padding="same", activation="relu"),
        Flatten(type="flatten"),
        Dense(type="dense", units=10),
    )
    return same_steps_as_reference(backend, tiny_job(layers=layers), 1, "SGD through a stride-2 'same' conv layer")


DROPOUT_RATE = 0.5


def check_dropout_scaling(backend: Backend) -> str:
    """Dropout is inverted: in training, kept activations are scaled by 1 / (1 - rate), so the expected update is
    the update without dropout. Measured on the input dropout of a conv layer whose first update is linear in its
    input (zero kernel, no activation): the update's projection on the no-dropout update must be 1 (within 20%;
    an unscaled dropout gives 1 - rate = 0.5)."""

    def network(rate: float):
        return digits_network(
            Dropout(type="dropout", rate=rate),
            Conv(type="conv", filters=4, kernel_size=3, activation="none"),
            Flatten(type="flatten"),
            Dense(type="dense", units=10),
        )

    data = load_dataset("digits")  # every training image in one batch, so the masks average out
    job = with_shared_init(
        tiny_job(
            layers=network(DROPOUT_RATE),
            max_steps=1,
            batch_size=len(data.train_labels),
            train_images=data.train_images,
            train_labels=data.train_labels,
            snapshot_layers=("conv1",),
        )
    )
    weights = dict(job.initial_weights or {})
    conv1 = weights["conv1"]
    # a zero conv kernel and bias: the logits start at 0, so the first update is linear in the dropped input
    weights["conv1"] = KernelSnapshot(np.zeros_like(conv1.kernel), None if conv1.bias is None else np.zeros_like(conv1.bias))
    job = replace(job, initial_weights=weights)
    mine, reference = CollectingObserver(), CollectingObserver()
    backend.train(job, mine)
    get_backend(REFERENCE).train(replace(job, layers=network(0.0)), reference)
    require(1 in mine.snapshots, f"no snapshot after step 1 (steps seen: {sorted(mine.snapshots)})")
    got = np.asarray(mine.snapshots[1]["conv1"].kernel, np.float64).ravel()
    expected = np.asarray(reference.snapshots[1]["conv1"].kernel, np.float64).ravel()
    ratio = float(got @ expected / (expected @ expected))
    require(
        abs(ratio - 1) <= 0.2,
        f"with dropout {DROPOUT_RATE} on the input, the first update is {ratio:.3f} times the "
        f"update without dropout; inverted dropout gives 1 (an unscaled dropout gives {1 - DROPOUT_RATE:g})",
    )
    return f"update with dropout {DROPOUT_RATE} / update without: {ratio:.3f} (inverted dropout: 1)"


def check_snapshot_layout(backend: Backend) -> str:
    """Snapshots are float32 copies in (out, in, kh, kw) layout, and step 0 is exactly the initial weights."""
    job = with_shared_init(tiny_job(max_steps=3))
    weights = job.initial_weights or {}
    observer = CollectingObserver(plan=PlanCheck.for_job(backend.name, job))
    backend.train(job, observer)
    observer.finished()
    for layer in ("conv1", "conv2"):
        expected_shape = next(tuple(p.kernel_shape or ()) for p in flat(job.layers) if p.name == layer)
        for step, snapshots in observer.snapshots.items():
            snap = snapshots[layer]
            require(snap.kernel.dtype == np.float32, f"{layer} step {step}: dtype {snap.kernel.dtype}")
            require(
                snap.kernel.shape == expected_shape, f"{layer} step {step}: shape {snap.kernel.shape}, expected {expected_shape}"
            )
            require(snap.bias is not None and snap.bias.shape == (expected_shape[0],), f"{layer} step {step}: bias shape")
        np.testing.assert_array_equal(observer.snapshots[0][layer].kernel, weights[layer].kernel, err_msg=f"{layer} at step 0")
    require(sorted(observer.snapshots) == [0, 1, 2, 3], f"snapshots at steps {sorted(observer.snapshots)}")
    require(
        not np.array_equal(observer.snapshots[0]["conv1"].kernel, observer.snapshots[3]["conv1"].kernel),
        "the step-0 snapshot changed with training: snapshots must be copies",
    )
    return "conv1 (4, 1, 3, 3), conv2 (6, 4, 3, 3) at steps 0-3"


def check_trainer(backend: Backend) -> str:
    """Training on digits reports every step and epoch, and learns (test accuracy above 0.7; chance is 0.1)."""

    data = load_dataset("digits")
    job = tiny_job(
        optimizer=Adam(name="adam", learning_rate=0.01),
        epochs=5,
        shuffle=True,
        train_images=data.train_images,
        train_labels=data.train_labels,
    )
    observer = CollectingObserver(plan=PlanCheck.for_job(backend.name, job))
    backend.train(job, observer)
    observer.finished()
    require([s[0] for s in observer.steps] == list(range(1, job.total_steps + 1)), "steps must be numbered 1, 2, ... once each")
    require(
        [(e[0], e[1]) for e in observer.epochs] == [(e, e * job.steps_per_epoch) for e in range(1, job.epochs + 1)],
        f"epoch ends at {[(e[0], e[1]) for e in observer.epochs]}",
    )
    for step, _, metrics in observer.steps:
        require(set(metrics) >= set(STEP_METRICS), f"step {step} metrics: {sorted(metrics)}")
        require(math.isfinite(metrics["train_loss"]) and 0 <= metrics["train_accuracy"] <= 1, f"step {step}: {metrics}")
    final = observer.epochs[-1][2]
    require(set(final) >= set(EPOCH_METRICS), f"epoch metrics: {sorted(final)}")
    require(final["test_accuracy"] > 0.7, f"test accuracy {final['test_accuracy']:.3f} after {job.epochs} epochs on digits")
    return f"{job.total_steps} steps, test accuracy {final['test_accuracy']:.3f}"


def check_reproducible(backend: Backend) -> str:
    """Two runs with the same seed end with the same kernels (within 1e-6)."""
    job = tiny_job(max_steps=5, shuffle=True, optimizer=Adam(name="adam", learning_rate=0.01))
    first, second = CollectingObserver(), CollectingObserver()
    backend.train(job, first)
    backend.train(job, second)
    diff = max(float(np.abs(first.snapshots[5][k].kernel - second.snapshots[5][k].kernel).max()) for k in ("conv1", "conv2"))
    require(diff <= 1e-6, f"kernels after 5 steps differ by {diff:.2e} between two runs with seed 0")
    return f"max abs difference {diff:.1e}"


def check_resume(backend: Backend) -> str:
    """A run resumed from its epoch-1 checkpoint ends with the kernels of the run left alone (within 1e-6)."""
    layers = digits_network(
        Conv(type="conv", filters=4, kernel_size=3, padding="same", activation="relu"),
        MaxPool(type="maxpool", pool_size=2),
        Dropout(type="dropout", rate=0.25),
        Conv(type="conv", filters=6, kernel_size=3, activation="relu"),
        Flatten(type="flatten"),
        Dense(type="dense", units=10),
    )
    base = tiny_job()
    job = replace(
        base,
        layers=layers,
        epochs=3,
        shuffle=True,
        optimizer=Adam(name="adam", learning_rate=0.01),
        train_images=base.train_images[:96],
        train_labels=base.train_labels[:96],
    )
    straight = CollectingObserver()
    backend.train(job, straight)
    if not straight.checkpoints:
        raise CheckSkipped("no checkpoints handed out: `convexp run --resume` restarts this backend's runs from step 0")
    require(sorted(straight.checkpoints) == [1, 2, 3], f"checkpoints at epochs {sorted(straight.checkpoints)}")
    checkpoint = straight.checkpoints[1]
    require(checkpoint.step == job.steps_per_epoch, f"epoch-1 checkpoint at step {checkpoint.step}")
    resumed = CollectingObserver()
    backend.train(replace(job, resume_from=checkpoint), resumed)
    first = min(resumed.snapshots, default=None)
    require(first == checkpoint.step + 1, f"the resumed run's first step is {first}, expected {checkpoint.step + 1}")
    last = job.total_steps
    diff = max(
        float(np.abs(straight.snapshots[last][k].kernel - resumed.snapshots[last][k].kernel).max()) for k in ("conv1", "conv2")
    )
    require(diff <= 1e-6, f"kernels after {last} steps differ by {diff:.2e} between the resumed run and the run left alone")
    return f"resumed after epoch 1 of 3 (dropout, Adam): max abs difference {diff:.1e}"


def _check(name: str, run: Callable[[Backend], str]) -> Check:
    return Check(name, " ".join((run.__doc__ or "").split()), run)


CHECKS: tuple[Check, ...] = (
    _check("conv", check_conv),
    _check("initializers", check_initializers),
    _check("one-step", check_one_step),
    _check("momentum", check_momentum),
    _check("nesterov", check_nesterov),
    _check("adam", check_adam),
    _check("weight-decay", check_weight_decay),
    _check("adamw", check_adamw),
    _check("schedule", check_schedule),
    _check("clipping-smoothing", check_clipping_and_smoothing),
    _check("strided-same", check_strided_same),
    _check("activations", check_activations),
    _check("average-pooling", check_average_pooling),
    _check("dilation-groups", check_dilation_and_groups),
    _check("batch-norm", check_batch_norm),
    _check("residual", check_residual),
    _check("augmentation", check_augmentation),
    _check("dropout", check_dropout_scaling),
    _check("snapshots", check_snapshot_layout),
    _check("trainer", check_trainer),
    _check("reproducible", check_reproducible),
    _check("resume", check_resume),
)
"""Every conformance check, in the order ``convexp check`` runs them (:func:`run_check` runs one)."""


def run_check(check: Check, backend_name: str) -> str:
    """Run one check on a backend; returns its detail, or raises :class:`ConformanceFailure` (an AssertionError)
    saying what is wrong, or :class:`CheckSkipped` saying why it cannot run."""
    return check.run(get_backend(backend_name))


class _OnDevice:
    """The backend under check with every job it trains sent to ``device`` (the numpy reference stays on the CPU)."""

    def __init__(self, backend: Backend, device: str):
        self._backend, self._device = backend, device

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def train(self, job: TrainingJob, observer: TrainingObserver) -> None:
        self._backend.train(replace(job, device=self._device), observer)


def check_backend(backend_name: str, device: str = "cpu") -> list[CheckResult]:
    """Run every check on a backend, its training on ``device`` (auto, cpu, cuda: as a spec's
    ``device``; the conv and initializer checks run where the backend runs them); failures are
    reported, not raised. Raises ValueError when the backend cannot train on ``device`` here."""
    backend: Any = get_backend(backend_name)
    resolved = backend.resolve_device(device)
    if resolved != "cpu":
        backend = _OnDevice(backend, resolved)
    results = []
    for check in CHECKS:
        started = time.perf_counter()
        try:
            detail, result = check.run(backend), "pass"
        except CheckSkipped as exc:
            detail, result = str(exc), "skipped"
        except AssertionError as exc:  # ConformanceFailure, or numpy.testing's
            detail, result = " ".join(str(exc).split()), "FAIL"
        except Exception as exc:  # a crash in the backend is a failed check, with its reason
            detail, result = f"{type(exc).__name__}: {exc}", "FAIL"
        results.append(CheckResult(check.name, result, detail, time.perf_counter() - started))
    return results
