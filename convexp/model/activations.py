"""The activation functions an experiment can name, defined once: their formulas in numpy, and their derivatives.

The numpy backend trains with these, the analysis replays recorded networks with them, and the
conformance checks hold the other backends to them. Each is the framework functions' exact form:

- ``relu``: max(x, 0)
- ``leaky_relu``: x for x > 0, else :data:`LEAKY_SLOPE` * x. The slope is PyTorch's default, 0.01;
  Keras's differs (0.2 for ``keras.activations.leaky_relu``, 0.3 for the ``LeakyReLU`` layer), so the
  tensorflow backend sets it.
- ``elu``: x for x > 0, else exp(x) - 1 (alpha 1, as both frameworks default)
- ``gelu``: x * Phi(x) = x / 2 * (1 + erf(x / sqrt 2)), the exact form (PyTorch's default; Keras 3's
  ``approximate=False``, its default), not the tanh approximation
- ``tanh``; ``sigmoid``: 1 / (1 + exp(-x))
- ``none`` (also written ``linear``): the identity

Derivatives are taken at the input; at x = 0 relu's and leaky_relu's are those of the x < 0 side,
as PyTorch and TensorFlow take them.
"""

from __future__ import annotations

import math

import numpy as np

from convexp.model.layers import ACTIVATION_NAMES

LEAKY_SLOPE = 0.01
"""The negative slope of ``leaky_relu`` (PyTorch's default)."""


def _phi(x: np.ndarray) -> np.ndarray:
    """The standard normal CDF, as erfc(-x / sqrt 2) / 2: no cancellation in the far negative tail, where
    1 + erf(x / sqrt 2) would lose every digit."""
    from scipy.special import erfc  # heavy: loaded only when this is used

    return 0.5 * erfc(-x / math.sqrt(2.0))


def apply(name: str, x: np.ndarray) -> np.ndarray:
    """The activation ``name`` of ``x``, in ``x``'s dtype (a new array)."""
    dtype = x.dtype
    if name == "none":
        return x.copy()
    if name == "relu":
        return np.maximum(x, 0)
    if name == "leaky_relu":
        return np.where(x > 0, x, x * dtype.type(LEAKY_SLOPE))
    if name == "elu":
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))
    if name == "gelu":
        return (x * _phi(x)).astype(dtype, copy=False)
    if name == "tanh":
        return np.tanh(x)
    if name == "sigmoid":
        from scipy.special import expit  # heavy: loaded only when this is used

        return expit(x).astype(dtype, copy=False)
    raise ValueError(f"unknown activation '{name}'; known: {', '.join(ACTIVATION_NAMES)}")


def gradient(name: str, x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """The gradient with respect to the input ``x`` of an activation whose output was ``y``, given the
    gradient ``dy`` with respect to its output."""
    if name == "none":
        return dy
    if name == "relu":
        return dy * (x > 0)
    if name == "leaky_relu":
        return dy * np.where(x > 0, 1.0, LEAKY_SLOPE).astype(dy.dtype)
    if name == "elu":
        return dy * np.where(x > 0, 1.0, y + 1.0).astype(dy.dtype)
    if name == "gelu":
        phi = np.exp(-0.5 * x.astype(np.float64) ** 2) / math.sqrt(2.0 * math.pi)
        return dy * (_phi(x.astype(np.float64)) + x * phi).astype(dy.dtype)
    if name == "tanh":
        return dy * (1 - y * y)
    if name == "sigmoid":
        return dy * (y * (1 - y))
    raise ValueError(f"unknown activation '{name}'; known: {', '.join(ACTIVATION_NAMES)}")
