"""Conformance checks for backends: does a backend compute, initialise and train as convexp expects?

Run them with ``convexp check BACKEND``, or from a plugin package's own tests::

    from convexp.conformance import CHECKS, run_check

    @pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.name)
    def test_conformance(check):
        run_check(check, "mybackend")          # raises AssertionError with the reason on failure

The numpy backend is the reference: convolutions and one SGD step are compared with it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from convexp.backend import Backend
from convexp.initializers import explain
from convexp.layers import Conv, Dense, Flatten, MaxPool, plan
from convexp.plugins import get_backend
from convexp.seeding import initial_weights
from convexp.training import (
    EPOCH_METRICS,
    SGD,
    STEP_METRICS,
    Adam,
    Checkpoint,
    KernelReader,
    KernelSnapshot,
    StateReader,
    TrainingJob,
)

REFERENCE = "numpy"
CONV_TOLERANCE = 1e-5
STEP_TOLERANCE = 1e-5
VARIANCE_TOLERANCE = 0.05


@dataclass
class CollectingObserver:
    """A TrainingObserver that keeps everything it is told, with a kernel snapshot at every step."""

    snapshots: dict[int, dict[str, KernelSnapshot]] = field(default_factory=dict)
    steps: list[tuple[int, int, dict[str, float]]] = field(default_factory=list)
    epochs: list[tuple[int, int, dict[str, float]]] = field(default_factory=list)
    #: The checkpoint of each epoch end, for backends that hand one out.
    checkpoints: dict[int, Checkpoint] = field(default_factory=dict)

    def on_train_start(self, kernels: KernelReader) -> None:
        self.snapshots[0] = dict(kernels())

    def on_step(self, step: int, epoch: int, metrics: Mapping[str, float], kernels: KernelReader) -> None:
        self.steps.append((step, epoch, dict(metrics)))
        self.snapshots[step] = dict(kernels())

    def on_epoch_end(
        self, epoch: int, step: int, metrics: Mapping[str, float], kernels: KernelReader, state: StateReader | None = None
    ) -> None:
        self.epochs.append((epoch, step, dict(metrics)))
        if state is not None:
            self.checkpoints[epoch] = Checkpoint(epoch, step, state())


@dataclass(frozen=True)
class Check:
    """One conformance check: a name, what it verifies, and the function that verifies it."""

    name: str
    description: str
    run: Callable[[Backend], str]


@dataclass(frozen=True)
class CheckResult:
    """How one check went on one backend."""

    name: str
    passed: bool
    detail: str
    seconds: float


def _tiny_job(**changes) -> TrainingJob:
    """A small network on the first examples of scikit-learn's digits (bundled, no download)."""
    from convexp.datasets import load_dataset

    data = load_dataset("digits")
    layers = tuple(plan(
        [Conv(type="conv", filters=4, kernel_size=3, padding="same", activation="relu"),
         MaxPool(type="maxpool", pool_size=2),
         Conv(type="conv", filters=6, kernel_size=3, activation="relu"),
         Flatten(type="flatten"), Dense(type="dense", units=10)],
        (1, 8, 8), 10,
    ))
    settings = dict(
        layers=layers, num_classes=10, kernel_initializer="glorot_uniform", bias_initializer="zeros",
        optimizer=SGD(name="sgd", learning_rate=0.1), epochs=1, batch_size=32, seed=0, shuffle=False,
        train_images=data.train_images[:256], train_labels=data.train_labels[:256],
        test_images=data.test_images, test_labels=data.test_labels, max_steps=None,
        snapshot_layers=("conv1", "conv2"), initial_weights=None,
    )
    settings.update(changes)
    return TrainingJob(**settings)


def _with_shared_init(job: TrainingJob) -> TrainingJob:
    weights = initial_weights(job.layers, job.kernel_initializer, job.bias_initializer, job.seed)
    return replace(job, initial_weights=weights)


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
                assert out.shape == expected.shape, f"{where}: shape {out.shape}, expected {expected.shape}"
                assert out.dtype == np.float32, f"{where}: dtype {out.dtype}, expected float32"
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
        assert drawn.shape == shape and drawn.dtype == np.float32, f"{name}: {drawn.shape} {drawn.dtype}"
        np.testing.assert_array_equal(drawn, backend.initialize(name, shape, 0), err_msg=f"{name}: not reproducible for a seed")
        slack = 1e-6 * max(1.0, abs(theory.high))
        assert drawn.min() >= theory.low - slack and drawn.max() <= theory.high + slack, (
            f"{name}: values in [{drawn.min():.4g}, {drawn.max():.4g}], expected within [{theory.low:.4g}, {theory.high:.4g}]"
        )
        if theory.variance > 0:
            variance = float(drawn.astype(np.float64).var())
            assert abs(variance / theory.variance - 1) <= VARIANCE_TOLERANCE, (
                f"{name}: variance {variance:.4g}, expected {theory.variance:.4g} within {VARIANCE_TOLERANCE:.0%}"
            )
            assert abs(drawn.mean()) <= 4 * math.sqrt(theory.variance / drawn.size) + 1e-7, f"{name}: mean {drawn.mean():.3g}"
        checked.append(name if name == concrete else f"{name}={concrete}")
    return ", ".join(checked)


def check_one_step(backend: Backend) -> str:
    """From the same initial weights, one SGD step on the same batch gives the numpy backend's kernels."""
    job = _with_shared_init(_tiny_job(max_steps=1))
    mine, reference = CollectingObserver(), CollectingObserver()
    backend.train(job, mine)
    get_backend(REFERENCE).train(job, reference)
    assert 1 in mine.snapshots, f"no snapshot after step 1 (steps seen: {sorted(mine.snapshots)})"
    worst = 0.0
    for layer, expected in reference.snapshots[1].items():
        got = mine.snapshots[1][layer]
        np.testing.assert_allclose(got.kernel, expected.kernel, atol=STEP_TOLERANCE, err_msg=f"{layer} kernel after one step")
        np.testing.assert_allclose(got.bias, expected.bias, atol=STEP_TOLERANCE, err_msg=f"{layer} bias after one step")
        worst = max(worst, float(np.abs(got.kernel - expected.kernel).max()))
    moved = float(np.abs(reference.snapshots[1]["conv1"].kernel - reference.snapshots[0]["conv1"].kernel).max())
    return f"max abs difference {worst:.2e} (the step moved kernels by up to {moved:.2e})"


def check_snapshot_layout(backend: Backend) -> str:
    """Snapshots are float32 copies in (out, in, kh, kw) layout, and step 0 is exactly the initial weights."""
    job = _with_shared_init(_tiny_job(max_steps=3))
    weights = job.initial_weights
    observer = CollectingObserver()
    backend.train(job, observer)
    for layer in ("conv1", "conv2"):
        expected_shape = next(p.kernel_shape for p in job.layers if p.name == layer)
        for step, snapshots in observer.snapshots.items():
            snap = snapshots[layer]
            assert snap.kernel.dtype == np.float32, f"{layer} step {step}: dtype {snap.kernel.dtype}"
            assert snap.kernel.shape == expected_shape, f"{layer} step {step}: shape {snap.kernel.shape}, expected {expected_shape}"
            assert snap.bias is not None and snap.bias.shape == (expected_shape[0],), f"{layer} step {step}: bias shape"
        np.testing.assert_array_equal(observer.snapshots[0][layer].kernel, weights[layer].kernel, err_msg=f"{layer} at step 0")
    assert sorted(observer.snapshots) == [0, 1, 2, 3], f"snapshots at steps {sorted(observer.snapshots)}"
    assert not np.array_equal(observer.snapshots[0]["conv1"].kernel, observer.snapshots[3]["conv1"].kernel), (
        "the step-0 snapshot changed with training: snapshots must be copies"
    )
    return "conv1 (4, 1, 3, 3), conv2 (6, 4, 3, 3) at steps 0-3"


def check_trainer(backend: Backend) -> str:
    """Training on digits reports every step and epoch, and learns (test accuracy above 0.7; chance is 0.1)."""
    from convexp.datasets import load_dataset

    data = load_dataset("digits")
    job = _tiny_job(
        optimizer=Adam(name="adam", learning_rate=0.01), epochs=5, shuffle=True,
        train_images=data.train_images, train_labels=data.train_labels,
    )
    observer = CollectingObserver()
    backend.train(job, observer)
    assert [s[0] for s in observer.steps] == list(range(1, job.total_steps + 1)), "steps must be numbered 1, 2, ... once each"
    assert [(e[0], e[1]) for e in observer.epochs] == [(e, e * job.steps_per_epoch) for e in range(1, job.epochs + 1)], (
        f"epoch ends at {[(e[0], e[1]) for e in observer.epochs]}"
    )
    for step, _, metrics in observer.steps:
        assert set(metrics) >= set(STEP_METRICS), f"step {step} metrics: {sorted(metrics)}"
        assert math.isfinite(metrics["train_loss"]) and 0 <= metrics["train_accuracy"] <= 1, f"step {step}: {metrics}"
    final = observer.epochs[-1][2]
    assert set(final) >= set(EPOCH_METRICS), f"epoch metrics: {sorted(final)}"
    assert final["test_accuracy"] > 0.7, f"test accuracy {final['test_accuracy']:.3f} after {job.epochs} epochs on digits"
    return f"{job.total_steps} steps, test accuracy {final['test_accuracy']:.3f}"


def check_reproducible(backend: Backend) -> str:
    """Two runs with the same seed end with the same kernels (within 1e-6)."""
    job = _tiny_job(max_steps=5, shuffle=True, optimizer=Adam(name="adam", learning_rate=0.01))
    first, second = CollectingObserver(), CollectingObserver()
    backend.train(job, first)
    backend.train(job, second)
    diff = max(float(np.abs(first.snapshots[5][k].kernel - second.snapshots[5][k].kernel).max()) for k in ("conv1", "conv2"))
    assert diff <= 1e-6, f"kernels after 5 steps differ by {diff:.2e} between two runs with seed 0"
    return f"max abs difference {diff:.1e}"


def check_resume(backend: Backend) -> str:
    """A run resumed from its epoch-1 checkpoint ends with the kernels of the run left alone (within 1e-6)."""
    from convexp.layers import Dropout

    layers = tuple(plan(
        [Conv(type="conv", filters=4, kernel_size=3, padding="same", activation="relu"),
         MaxPool(type="maxpool", pool_size=2), Dropout(type="dropout", rate=0.25),
         Conv(type="conv", filters=6, kernel_size=3, activation="relu"),
         Flatten(type="flatten"), Dense(type="dense", units=10)],
        (1, 8, 8), 10,
    ))
    base = _tiny_job()
    job = replace(base, layers=layers, epochs=3, shuffle=True, optimizer=Adam(name="adam", learning_rate=0.01),
                  train_images=base.train_images[:96], train_labels=base.train_labels[:96])
    straight = CollectingObserver()
    backend.train(job, straight)
    if not straight.checkpoints:
        return "no checkpoints handed out: `convexp run --resume` restarts this backend's runs from step 0"
    assert sorted(straight.checkpoints) == [1, 2, 3], f"checkpoints at epochs {sorted(straight.checkpoints)}"
    checkpoint = straight.checkpoints[1]
    assert checkpoint.step == job.steps_per_epoch, f"epoch-1 checkpoint at step {checkpoint.step}"
    resumed = CollectingObserver()
    backend.train(replace(job, resume_from=checkpoint), resumed)
    first = min(resumed.snapshots, default=None)
    assert first == checkpoint.step + 1, f"the resumed run's first step is {first}, expected {checkpoint.step + 1}"
    last = job.total_steps
    diff = max(
        float(np.abs(straight.snapshots[last][k].kernel - resumed.snapshots[last][k].kernel).max()) for k in ("conv1", "conv2")
    )
    assert diff <= 1e-6, f"kernels after {last} steps differ by {diff:.2e} between the resumed run and the run left alone"
    return f"resumed after epoch 1 of 3 (dropout, Adam): max abs difference {diff:.1e}"


CHECKS: tuple[Check, ...] = (
    Check("conv", check_conv.__doc__, check_conv),
    Check("initializers", check_initializers.__doc__, check_initializers),
    Check("one-step", check_one_step.__doc__, check_one_step),
    Check("snapshots", check_snapshot_layout.__doc__, check_snapshot_layout),
    Check("trainer", check_trainer.__doc__, check_trainer),
    Check("reproducible", check_reproducible.__doc__, check_reproducible),
    Check("resume", check_resume.__doc__, check_resume),
)


def run_check(check: Check, backend_name: str) -> str:
    """Run one check on a backend; returns its detail, or raises AssertionError saying what is wrong."""
    return check.run(get_backend(backend_name))


def check_backend(backend_name: str) -> list[CheckResult]:
    """Run every check on a backend; failures are reported, not raised."""
    backend = get_backend(backend_name)
    results = []
    for check in CHECKS:
        started = time.perf_counter()
        try:
            detail, passed = check.run(backend), True
        except AssertionError as exc:
            detail, passed = " ".join(str(exc).split()), False
        except Exception as exc:  # a crash in the backend is a failed check, with its reason
            detail, passed = f"{type(exc).__name__}: {exc}", False
        results.append(CheckResult(check.name, passed, detail, time.perf_counter() - started))
    return results
