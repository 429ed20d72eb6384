"""The named weight initializers: their formulas, their fans, and how to draw from them.

This module is the one source of truth for initializers. Every backend draws its
initial weights from these definitions (a framework backend may add ``default``,
its framework's own choice, which resolves to one of these names).

Shapes are in convexp's canonical layouts:

- conv kernel: ``(out_channels, in_channels, kh, kw)``
  fan_in = kh*kw*in_channels, fan_out = kh*kw*out_channels
- dense kernel: ``(in_features, units)``; fan_in = in_features, fan_out = units
- bias: ``(units,)``; its fans are those of the layer's kernel, passed explicitly.

Conventions follow Keras 3 (``keras.initializers``): the ``*_normal`` initializers are
*truncated* normals (values beyond two standard deviations are re-drawn), with the
standard deviation divided by 0.87962566103423978 so that the variance after
truncation is exactly the target variance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from convexp.errors import ConvexpError, unknown_name

if TYPE_CHECKING:
    import numpy as np

Distribution = Literal["uniform", "truncated_normal", "orthogonal", "constant"]

#: Keras divides the target stddev by this, the stddev of a unit normal truncated to ±2.
TRUNCATED_NORMAL_STDDEV_FACTOR = 0.87962566103423978


@dataclass(frozen=True)
class Fans:
    """Fan-in and fan-out of a weight tensor."""

    fan_in: int
    fan_out: int


def fans_of(shape: tuple[int, ...]) -> Fans:
    """Fans of a kernel in canonical layout: conv ``(out, in, kh, kw)`` or dense ``(in, units)``."""
    if len(shape) == 4:
        out_channels, in_channels, kh, kw = shape
        receptive_field = kh * kw
        return Fans(receptive_field * in_channels, receptive_field * out_channels)
    if len(shape) == 2:
        return Fans(shape[0], shape[1])
    raise ConvexpError(f"fans are defined for conv (out, in, kh, kw) and dense (in, units) kernels, not shape {shape}")


@dataclass(frozen=True)
class Initializer:
    """One named initializer.

    ``scale(fans)`` is the distribution's parameter: the limit of a uniform, the
    (pre-truncation) standard deviation of a truncated normal, the gain of an
    orthogonal matrix, or the constant's value.
    """

    name: str
    distribution: Distribution
    formula: str
    scale: Callable[[Fans], float]
    reference: str

    def parameter_name(self) -> str:
        """What :attr:`scale` means for this distribution (limit, stddev, gain, value)."""
        return {
            "uniform": "limit",
            "truncated_normal": "stddev",
            "orthogonal": "gain",
            "constant": "value",
        }[self.distribution]

    def theory(self, shape: tuple[int, ...], fans: Fans | None = None) -> TheoreticalStats:
        """Mean, variance and bounds that a large draw of this initializer should show."""
        fans = fans or fans_of(shape)
        s = self.scale(fans)
        if self.distribution == "uniform":
            return TheoreticalStats(0.0, s * s / 3.0, -s, s)
        if self.distribution == "truncated_normal":
            return TheoreticalStats(0.0, s * s * _unit_truncated_normal_variance(2.0), -2 * s, 2 * s)
        if self.distribution == "orthogonal":
            units, vector_length = _orthogonal_matrix_shape(shape)
            return TheoreticalStats(0.0, s * s / max(units, vector_length), -s, s)
        return TheoreticalStats(s, 0.0, s, s)

    def sample(self, shape: tuple[int, ...], rng: np.random.Generator, fans: Fans | None = None) -> np.ndarray:
        """Draw a float32 array of ``shape`` from this initializer with ``rng``."""
        import numpy as np  # numpy on first use: the store and the spec load without it

        fans = fans or fans_of(shape)
        s = self.scale(fans)
        if self.distribution == "uniform":
            values = rng.uniform(-s, s, size=shape)
        elif self.distribution == "truncated_normal":
            values = _truncated_normal(rng, s, shape)
        elif self.distribution == "orthogonal":
            values = _orthogonal(rng, shape) * s
        else:
            values = np.full(shape, s)
        return np.asarray(values, dtype=np.float32)


@dataclass(frozen=True)
class TheoreticalStats:
    """What an initializer's distribution implies for mean, variance and range."""

    mean: float
    variance: float
    low: float
    high: float


def _unit_truncated_normal_variance(bound: float) -> float:
    """Variance of a standard normal truncated to [-bound, bound]."""
    pdf = math.exp(-bound * bound / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(bound / math.sqrt(2))
    return 1.0 - 2 * bound * pdf / mass


def _truncated_normal(rng: np.random.Generator, stddev: float, shape: tuple[int, ...]) -> np.ndarray:
    """Normal(0, stddev) with values beyond ±2 stddev re-drawn (as Keras does)."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    values = rng.standard_normal(size=shape)
    outside = np.abs(values) > 2.0
    while outside.any():
        values[outside] = rng.standard_normal(size=int(outside.sum()))
        outside = np.abs(values) > 2.0
    return values * stddev


def _orthogonal_matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """(units, length of each unit's weight vector) for a canonical kernel shape."""
    if len(shape) == 4:
        return shape[0], shape[1] * shape[2] * shape[3]
    if len(shape) == 2:
        return shape[1], shape[0]
    raise ConvexpError(f"orthogonal needs a conv or dense kernel shape, not {shape}")


def _orthogonal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A kernel whose units' weight vectors are orthonormal (or whose columns are, if wider)."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    units, length = _orthogonal_matrix_shape(shape)
    a = rng.standard_normal(size=(max(units, length), min(units, length)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    matrix = q.T if units < length else q  # (units, length)
    if len(shape) == 4:
        return matrix.reshape(shape)
    return matrix.T  # dense kernels are (in_features, units)


def _variance_scaling(scale: float, mode: str, distribution: Distribution) -> Callable[[Fans], float]:
    def scale_of(fans: Fans) -> float:
        n = {"fan_in": fans.fan_in, "fan_avg": (fans.fan_in + fans.fan_out) / 2.0}[mode]
        if distribution == "uniform":
            return math.sqrt(3.0 * scale / n)
        return math.sqrt(scale / n) / TRUNCATED_NORMAL_STDDEV_FACTOR

    return scale_of


_TRUNC = "values beyond ±2·stddev re-drawn (the division makes the variance exact)"

INITIALIZERS: dict[str, Initializer] = {
    init.name: init
    for init in [
        Initializer(
            "glorot_uniform",
            "uniform",
            "U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out))",
            _variance_scaling(1.0, "fan_avg", "uniform"),
            "Glorot & Bengio 2010; Keras GlorotUniform (the Keras Conv2D default)",
        ),
        Initializer(
            "glorot_normal",
            "truncated_normal",
            f"N(0, stddev), stddev = sqrt(2 / (fan_in + fan_out)) / 0.87962566, {_TRUNC}",
            _variance_scaling(1.0, "fan_avg", "truncated_normal"),
            "Glorot & Bengio 2010; Keras GlorotNormal",
        ),
        Initializer(
            "he_uniform",
            "uniform",
            "U(-limit, limit), limit = sqrt(6 / fan_in)",
            _variance_scaling(2.0, "fan_in", "uniform"),
            "He et al. 2015; Keras HeUniform; torch kaiming_uniform_(a=0)",
        ),
        Initializer(
            "he_normal",
            "truncated_normal",
            f"N(0, stddev), stddev = sqrt(2 / fan_in) / 0.87962566, {_TRUNC}",
            _variance_scaling(2.0, "fan_in", "truncated_normal"),
            "He et al. 2015; Keras HeNormal (torch kaiming_normal_ is not truncated)",
        ),
        Initializer(
            "lecun_uniform",
            "uniform",
            "U(-limit, limit), limit = sqrt(3 / fan_in)",
            _variance_scaling(1.0, "fan_in", "uniform"),
            "LeCun et al. 1998; Keras LecunUniform",
        ),
        Initializer(
            "lecun_normal",
            "truncated_normal",
            f"N(0, stddev), stddev = sqrt(1 / fan_in) / 0.87962566, {_TRUNC}",
            _variance_scaling(1.0, "fan_in", "truncated_normal"),
            "LeCun et al. 1998; Keras LecunNormal",
        ),
        Initializer(
            "orthogonal",
            "orthogonal",
            "each output unit's weight vector (length fan_in) orthonormal to the others, gain 1 "
            "(the columns instead, when there are more units than the vector length)",
            lambda fans: 1.0,
            "Saxe et al. 2014; Keras Orthogonal; torch orthogonal_",
        ),
        Initializer("zeros", "constant", "every weight = 0", lambda fans: 0.0, "Keras Zeros"),
        Initializer("ones", "constant", "every weight = 1", lambda fans: 1.0, "Keras Ones"),
        Initializer(
            "torch_default",
            "uniform",
            "U(-limit, limit), limit = 1 / sqrt(fan_in)  (kaiming_uniform with a = sqrt(5))",
            lambda fans: 1.0 / math.sqrt(fans.fan_in),
            "PyTorch nn.Conv2d / nn.Linear reset_parameters (kernel and bias)",
        ),
    ]
}

INITIALIZER_NAMES: tuple[str, ...] = tuple(INITIALIZERS)
"""Every initializer name an experiment's ``initializer`` (or a layer's) and ``convexp init`` accept."""


def get_initializer(name: str) -> Initializer:
    """The initializer called ``name``; raises with the known names if there is none."""
    try:
        return INITIALIZERS[name]
    except KeyError:
        raise unknown_name("initializer", name, INITIALIZER_NAMES) from None


def draw(name: str, shape: tuple[int, ...], seed: int, fans: Fans | None = None) -> np.ndarray:
    """Draw a float32 kernel (or bias, with ``fans``) from initializer ``name`` with ``seed``."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    return get_initializer(name).sample(shape, np.random.default_rng(seed), fans)


def shape_from_hwio(text: str) -> tuple[int, int, int, int]:
    """Parse ``"kh,kw,in,out"`` (the Keras way of writing a conv kernel) into canonical (out, in, kh, kw)."""
    try:
        parts = [int(p) for p in text.replace("x", ",").split(",")]
    except ValueError:
        parts = []
    if len(parts) != 4 or min(parts) < 1:
        raise ConvexpError(f"--shape must be four positive integers kh,kw,in,out (e.g. 3,3,1,32), not '{text}'")
    kh, kw, in_channels, out_channels = parts
    return (out_channels, in_channels, kh, kw)


@dataclass(frozen=True)
class KernelInitExplanation:
    """What an initializer means for one conv kernel shape: formula, fans, parameter and moments."""

    initializer: Initializer
    shape: tuple[int, int, int, int]
    fans: Fans
    parameter: float
    theory: TheoreticalStats

    @property
    def weights(self) -> int:
        """Number of weights in the kernel."""
        return math.prod(self.shape)


def explain(name: str, shape: tuple[int, int, int, int]) -> KernelInitExplanation:
    """Explain initializer ``name`` for a conv kernel of canonical ``shape`` (out, in, kh, kw)."""
    init = get_initializer(name)
    fans = fans_of(shape)
    return KernelInitExplanation(init, shape, fans, init.scale(fans), init.theory(shape, fans))
