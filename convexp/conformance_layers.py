"""Conformance checks of the layers and activations beyond the first vocabulary: each trains a small network that
uses them from shared initial weights and compares the kernels with the numpy reference's, whose layers are
tested against independent references (scipy, finite differences) in convexp's own tests. A backend that does
not implement a feature (:attr:`convexp.backend.Backend.features`) has the check skipped, saying what it lacks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from convexp.layers import ActivationLayer, AvgPool, Conv, Dense, Flatten, GlobalAvgPool, MaxPool, features_of
from convexp.training import SGD

if TYPE_CHECKING:
    from convexp.backend import Backend


def _same_as_reference(backend: Backend, layers: tuple, steps: int, what: str) -> str:
    from convexp.conformance import CheckSkipped, _same_steps_as_reference, digits_network, tiny_job

    missing = sorted(features_of(layers) - backend.features)
    if missing:
        raise CheckSkipped(f"the backend does not implement {', '.join(m.replace(':', ' ') for m in missing)}")
    job = tiny_job(layers=digits_network(*layers), optimizer=SGD(name="sgd", learning_rate=0.5))
    return _same_steps_as_reference(backend, job, steps, what)


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
