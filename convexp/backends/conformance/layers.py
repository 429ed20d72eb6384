"""Conformance checks of the features beyond the first vocabulary (layers, activations, weight decay, AdamW): each
trains a small network that uses them from shared initial weights and compares the kernels with the numpy
reference's, whose layers and updates are tested against independent references (scipy, finite differences,
the update formulas written out) in convexp's own tests. A backend that does
not implement a feature (:attr:`convexp.backends.protocol.Backend.features`) has the check skipped, saying what it lacks."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from convexp.backends.conformance.kit import CheckSkipped, digits_network, same_steps_as_reference, tiny_job
from convexp.backends.features import described, features_needed
from convexp.model.augmentation import Augmentation
from convexp.model.layers import ActivationLayer, AvgPool, BatchNorm, Conv, Dense, Flatten, GlobalAvgPool, MaxPool, Residual, flat
from convexp.model.optimizers import SGD, Adam, AdamW, Schedule

if TYPE_CHECKING:
    from convexp.backends.protocol import Backend


def _same_as_reference(
    backend: Backend, layers: tuple | None, steps: int, what: str, optimizer=None, test_loss: bool = False, **settings
) -> str:
    optimizer = optimizer or SGD(name="sgd", learning_rate=0.5)
    changes = {"optimizer": optimizer, **settings} | ({} if layers is None else {"layers": digits_network(*layers)})
    job = tiny_job(**changes)
    needed = features_needed([p.layer for p in job.layers], optimizer) | {name for name, value in settings.items() if value}
    missing = sorted(needed - backend.features)
    if missing:
        raise CheckSkipped(f"the backend does not implement {described(missing)}")
    job = replace(job, snapshot_layers=tuple(p.name for p in flat(job.layers) if p.snapshot_shape))
    return same_steps_as_reference(backend, job, steps, what, test_loss=test_loss)


def check_weight_decay(backend: Backend) -> str:
    """Weight decay as an L2 term on the kernels (not the biases): three steps of SGD with momentum and three of
    Adam (epsilon 1e-10, as in the Adam check) give the numpy backend's kernels and biases."""
    sgd = _same_as_reference(
        backend,
        None,
        3,
        "SGD, momentum 0.9, weight decay 0.05",
        SGD(name="sgd", learning_rate=0.05, momentum=0.9, weight_decay=0.05),
    )
    adam = _same_as_reference(
        backend, None, 3, "Adam, weight decay 0.05", Adam(name="adam", learning_rate=0.001, epsilon=1e-10, weight_decay=0.05)
    )
    return f"{sgd}; {adam}"


def check_adamw(backend: Backend) -> str:
    """AdamW: each kernel shrinks by learning_rate * weight_decay of itself before the Adam step, the biases do not;
    five steps give the numpy backend's kernels and biases."""
    optimizer = AdamW(name="adamw", learning_rate=0.01, epsilon=1e-10, weight_decay=0.5)
    return _same_as_reference(backend, None, 5, "AdamW, weight decay 0.5", optimizer)


def check_activations(backend: Backend) -> str:
    """tanh, gelu (exact), leaky_relu (slope 0.01), elu and sigmoid, after conv and dense layers and as layers of
    their own, train three SGD steps like the numpy backend."""
    layers = (
        Conv(type="conv", filters=4, kernel_size=3, padding="same", activation="tanh"),
        MaxPool(type="maxpool", pool_size=2),
        ActivationLayer(type="activation", activation="gelu"),
        Conv(type="conv", filters=6, kernel_size=3, activation="leaky_relu"),
        ActivationLayer(type="activation", activation="elu"),
        Flatten(type="flatten"),
        Dense(type="dense", units=16, activation="sigmoid"),
        Dense(type="dense", units=10),
    )
    return _same_as_reference(backend, layers, 3, "tanh, gelu, leaky_relu, elu and sigmoid")


def check_average_pooling(backend: Backend) -> str:
    """Average pooling (2x2, stride 2, on an odd 5x5 input: the remainder dropped) and global average pooling
    train three SGD steps like the numpy backend."""
    layers = (
        Conv(type="conv", filters=4, kernel_size=4, activation="relu"),
        AvgPool(type="avgpool", pool_size=2),
        Conv(type="conv", filters=6, kernel_size=1, activation="relu"),
        GlobalAvgPool(type="global_avgpool"),
        Dense(type="dense", units=10),
    )
    return _same_as_reference(backend, layers, 3, "avgpool and global_avgpool")


def check_dilation_and_groups(backend: Backend) -> str:
    """A dilated conv (3x3 taps 2 pixels apart, 'same'), a grouped conv (2 groups) and a depthwise conv (groups =
    channels, two filters each) train three SGD steps like the numpy backend. Kernels are (out, in / groups, kh, kw)."""
    layers = (
        Conv(type="conv", filters=4, kernel_size=3, padding="same", dilation=2, activation="relu"),
        Conv(type="conv", filters=6, kernel_size=3, groups=2, activation="tanh"),
        Conv(type="conv", filters=12, kernel_size=2, stride=2, groups=6, padding="same"),
        Flatten(type="flatten"),
        Dense(type="dense", units=10),
    )
    return _same_as_reference(backend, layers, 3, "dilation 2, 2 groups, depthwise")


def check_batch_norm(backend: Backend) -> str:
    """batch_norm after a conv (per channel) and after a dense layer (per feature), with two momentums: three SGD
    steps with momentum give the numpy backend's kernels, gamma, beta and running statistics (their (4, C)
    snapshots), and the test loss after them, computed with the running statistics, is the numpy backend's."""
    layers = (
        Conv(type="conv", filters=4, kernel_size=3, padding="same"),
        BatchNorm(type="batch_norm"),
        ActivationLayer(type="activation", activation="relu"),
        MaxPool(type="maxpool", pool_size=2),
        Conv(type="conv", filters=6, kernel_size=3),
        BatchNorm(type="batch_norm", momentum=0.5, epsilon=1e-5),
        Flatten(type="flatten"),
        Dense(type="dense", units=16, activation="tanh"),
        BatchNorm(type="batch_norm", momentum=0.9),
        Dense(type="dense", units=10),
    )
    optimizer = SGD(name="sgd", learning_rate=0.1, momentum=0.9)
    return _same_as_reference(backend, layers, 3, "batch_norm after conv and dense", optimizer, test_loss=True)


def check_residual(backend: Backend) -> str:
    """Residual blocks: one with a 1x1 conv shortcut (stride 2, more channels) and a relu after the sum, one with the
    identity shortcut and batch_norm in its body; three SGD steps with momentum give the numpy backend's kernels."""
    layers = (
        Conv(type="conv", filters=4, kernel_size=3, padding="same", activation="relu"),
        Residual(
            type="residual",
            layers=[
                Conv(type="conv", filters=6, kernel_size=3, stride=2, padding="same", activation="relu"),
                Conv(type="conv", filters=6, kernel_size=3, padding="same"),
            ],
            shortcut="conv",
            activation="relu",
        ),
        Residual(
            type="residual",
            layers=[Conv(type="conv", filters=6, kernel_size=3, padding="same"), BatchNorm(type="batch_norm", momentum=0.9)],
        ),
        GlobalAvgPool(type="global_avgpool"),
        Dense(type="dense", units=10),
    )
    optimizer = SGD(name="sgd", learning_rate=0.1, momentum=0.9)
    return _same_as_reference(backend, layers, 3, "residual blocks (conv and identity shortcuts)", optimizer, test_loss=True)


def check_augmentation(backend: Backend) -> str:
    """Seeded augmentation (shifts of up to 2 pixels and left-right flips): the backend trains on the images
    convexp hands it for each step, not on those the batch's indices select, so three SGD steps give the numpy
    backend's kernels."""

    optimizer = SGD(name="sgd", learning_rate=0.5)
    return _same_as_reference(
        backend, None, 3, "augmented: shift 2, flip", optimizer, augmentation=Augmentation(shift=2, flip=True)
    )


def check_schedule(backend: Backend) -> str:
    """A learning-rate schedule: two updates of linear warmup, then cosine decay (SGD with momentum), and a step
    schedule (Adam): six updates each give the numpy backend's kernels and biases."""
    cosine = SGD(name="sgd", learning_rate=0.1, momentum=0.9, schedule=Schedule(type="cosine", warmup_steps=2, min_factor=0.1))
    step = Adam(name="adam", learning_rate=0.01, epsilon=1e-10, schedule=Schedule(type="step", step_size=2, gamma=0.5))
    first = _same_as_reference(backend, None, 6, "SGD, warmup then cosine", cosine)
    return f"{first}; {_same_as_reference(backend, None, 6, 'Adam, step schedule', step)}"


def check_clipping_and_smoothing(backend: Backend) -> str:
    """Gradient clipping by the global norm (to 0.05, below this job's gradients: every update is clipped) and
    label smoothing 0.1: three SGD steps with momentum give the numpy backend's kernels and biases."""
    optimizer = SGD(name="sgd", learning_rate=0.5, momentum=0.9)
    return _same_as_reference(
        backend, None, 3, "clipped to norm 0.05, label smoothing 0.1", optimizer, gradient_clip_norm=0.05, label_smoothing=0.1
    )
