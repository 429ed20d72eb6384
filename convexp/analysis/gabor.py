"""A Gabor function fitted to a filter: orientation, wavelength and how well a Gabor describes it.

Filters of 5x5 and larger that learn from natural images (and from MNIST strokes) often look like
Gabor functions, the receptive fields of simple cells in the visual cortex. With pixel
coordinates x (to the right) and y (upwards) measured from the kernel's centre:

    g(x, y) = A * exp(-(u^2 + (gamma * v)^2) / (2 * sigma^2)) * cos(2 * pi * u / wavelength + phase) + c
    u =  (x - x0) * cos(theta) + (y - y0) * sin(theta)
    v = -(x - x0) * sin(theta) + (y - y0) * cos(theta)

theta is the direction across the stripes (the direction in which intensity changes: 0 deg
for vertical stripes, 90 deg for horizontal ones, as :func:`convexp.analysis.filters.orientation`),
reported in [0, 180) with phase in [0, 360) and A >= 0. The fit is least squares
(``scipy.optimize.least_squares``, Levenberg-Marquardt, with the model's exact Jacobian) from starts at
the peak of the filter's Fourier spectrum, with the wavelength between 2 pixels (the shortest a kernel
can show) and 4 kernel widths. A fitted wavelength near that upper end means no stripes: with an odd
phase (90 or 270 deg) the filter is an edge, a single step from dark to bright across the orientation;
with an even phase (0 or 180 deg), a blob or a single bar; its quality is R^2 = 1 - SS_residual /
SS_total (1 = a perfect Gabor).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

#: Smallest kernel a Gabor is fitted to: a 3x3 kernel has 9 values for the fit's 9 parameters.
MIN_SIZE = 5
#: Longest wavelength fitted, in kernel widths: beyond it the stripes are flat across the kernel.
MAX_WAVELENGTH = 4


@dataclass(frozen=True)
class GaborFit:
    """The fitted Gabor's parameters (angles in degrees, lengths in pixels) and the fit's R^2."""

    orientation: float
    wavelength: float
    phase: float
    sigma: float
    aspect: float  # gamma
    amplitude: float
    x0: float
    y0: float
    offset: float
    r2: float


def coordinates(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of every pixel of a (kh, kw) kernel, from its centre, x right and y up."""
    x, y = _coordinates(tuple(size))
    return x.copy(), y.copy()


@functools.lru_cache(maxsize=64)
def _coordinates(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    # kept per size and read-only: a fit samples its model thousands of times on the same kernel
    kh, kw = size
    rows, cols = np.mgrid[0:kh, 0:kw].astype(np.float64)
    x, y = cols - (kw - 1) / 2, (kh - 1) / 2 - rows
    x.flags.writeable = y.flags.writeable = False
    return x, y


def gabor(
    size: tuple[int, int],
    orientation: float,
    wavelength: float,
    phase: float,
    sigma: float,
    aspect: float = 1.0,
    amplitude: float = 1.0,
    x0: float = 0.0,
    y0: float = 0.0,
    offset: float = 0.0,
) -> np.ndarray:
    """The Gabor function of the module docstring sampled on a (kh, kw) kernel (angles in degrees)."""
    x, y = _coordinates(tuple(size))
    theta = math.radians(orientation)
    u = (x - x0) * math.cos(theta) + (y - y0) * math.sin(theta)
    v = -(x - x0) * math.sin(theta) + (y - y0) * math.cos(theta)
    envelope = np.exp(-(u**2 + (aspect * v) ** 2) / (2 * sigma**2))
    return amplitude * envelope * np.cos(2 * math.pi * u / wavelength + math.radians(phase)) + offset


def _model(params: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    # unconstrained parameters for Levenberg-Marquardt: sigma and gamma = exp(.), the wavelength between
    # 2 pixels and 4 kernel widths through a logistic function
    amplitude, theta, wavelength_logit, phase, log_sigma, log_aspect, x0, y0, offset = params
    return gabor(
        size,
        math.degrees(theta),
        _wavelength(wavelength_logit, size),
        math.degrees(phase),
        _exp(log_sigma),
        _exp(log_aspect),
        amplitude,
        x0,
        y0,
        offset,
    )


def _jacobian(params: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """d _model / d params, (pixels, 9): the chain rule through u, v, the envelope and the cosine (the
    parameters' order of :func:`_model`; a clamped exp has slope 0 beyond its clamp)."""
    amplitude, theta, wavelength_logit, phase, log_sigma, log_aspect, x0, y0, _ = params
    x, y = _coordinates(tuple(size))
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    dx, dy = x - x0, y - y0
    u, v = dx * cos_t + dy * sin_t, -dx * sin_t + dy * cos_t
    wavelength, sigma, aspect = _wavelength(wavelength_logit, size), _exp(log_sigma), _exp(log_aspect)
    # slopes of the unconstrained parameters' transforms
    e = _exp(-wavelength_logit)
    d_wavelength = (MAX_WAVELENGTH * max(size) - 2.0) * e / (1.0 + e) ** 2 if abs(wavelength_logit) <= _EXP_CLAMP else 0.0
    d_sigma = sigma if abs(log_sigma) <= _EXP_CLAMP else 0.0
    d_aspect = aspect if abs(log_aspect) <= _EXP_CLAMP else 0.0
    quadratic = (u**2 + (aspect * v) ** 2) / (2 * sigma**2)
    envelope = np.exp(-quadratic)
    argument = 2 * math.pi * u / wavelength + phase
    cosine, sine = np.cos(argument), np.sin(argument)
    scaled = amplitude * envelope
    by_u = scaled * (-(u / sigma**2) * cosine - sine * (2 * math.pi / wavelength))  # d g / d u
    by_v = scaled * (-(aspect**2) * v / sigma**2) * cosine  # d g / d v
    columns = [
        envelope * cosine,  # amplitude
        by_u * v - by_v * u,  # theta: du/dtheta = v, dv/dtheta = -u
        scaled * sine * (2 * math.pi * u / wavelength**2) * d_wavelength,
        -scaled * sine,  # phase
        scaled * cosine * (2 * quadratic / sigma) * d_sigma,
        -scaled * cosine * (aspect * v**2 / sigma**2) * d_aspect,
        -by_u * cos_t + by_v * sin_t,  # x0
        -by_u * sin_t - by_v * cos_t,  # y0
        np.ones_like(u),  # offset
    ]
    return np.stack([column.ravel() for column in columns], axis=1)


_EXP_CLAMP = 30.0  # the exponents _exp allows: the parameters' transforms stay finite (and flat beyond it)


def _exp(value: float) -> float:
    return math.exp(min(max(value, -_EXP_CLAMP), _EXP_CLAMP))


def _wavelength(logit: float, size: tuple[int, int]) -> float:
    return 2.0 + (MAX_WAVELENGTH * max(size) - 2.0) / (1.0 + _exp(-logit))


def _logit(wavelength: float, size: tuple[int, int]) -> float:
    share = (wavelength - 2.0) / (MAX_WAVELENGTH * max(size) - 2.0)
    share = min(max(share, 1e-3), 1 - 1e-3)
    return math.log(share / (1 - share))


def _starts(filter_2d: np.ndarray) -> list[np.ndarray]:
    """Initial guesses: the orientation and wavelength of the Fourier spectrum's peak (and a long
    wavelength there, for edge-like filters), each at four phases."""
    kh, kw = filter_2d.shape
    size = max(kh, kw)
    centred = filter_2d - filter_2d.mean()
    pad = 8 * size
    spectrum = np.abs(np.fft.fft2(centred, s=(pad, pad)))
    spectrum[0, 0] = 0
    peak = np.unravel_index(int(spectrum.argmax()), spectrum.shape)
    fy, fx = np.fft.fftfreq(pad)[peak[0]], np.fft.fftfreq(pad)[peak[1]]
    # rows grow downwards, y upwards: a row frequency fy is a y frequency -fy
    theta = math.atan2(-fy, fx)
    frequency = math.hypot(fx, fy)
    wavelengths = {min(max(1 / frequency, 2.0), 4.0 * size) if frequency > 0 else 2.0 * size, 2.0 * size}
    amplitude = float(np.abs(centred).max()) or 1.0
    return [
        np.array(
            [
                amplitude,
                theta,
                _logit(wavelength, filter_2d.shape),
                phase,
                math.log(size / 4),
                0.0,
                0.0,
                0.0,
                float(filter_2d.mean()),
            ]
        )
        for wavelength in wavelengths
        for phase in (0.0, math.pi / 2, math.pi, 3 * math.pi / 2)
    ]


def fit_gabor(filter_2d: np.ndarray) -> GaborFit:
    """The Gabor (see module docstring) that fits a 2-D filter best in least squares, with the fit's R^2."""
    from scipy.optimize import least_squares  # heavy: loaded only when this is used

    target = np.asarray(filter_2d, dtype=np.float64)
    size = target.shape
    total = float(((target - target.mean()) ** 2).sum())
    best = None

    def residuals(params: np.ndarray) -> np.ndarray:
        difference = (_model(params, size) - target).ravel()
        if np.isfinite(difference).all():  # almost always: nan_to_num's copy only where a step overflowed
            return difference
        return np.nan_to_num(difference, nan=1e6, posinf=1e6, neginf=-1e6)

    def jacobian(params: np.ndarray) -> np.ndarray:
        slopes = _jacobian(params, size)
        return slopes if np.isfinite(slopes).all() else np.nan_to_num(slopes, nan=0.0, posinf=0.0, neginf=0.0)

    for start in _starts(target):
        with np.errstate(over="ignore", invalid="ignore"):
            result = least_squares(residuals, start, jac=jacobian, method="lm", max_nfev=600)
        if best is None or result.cost < best.cost:
            best = result
    if best is None:  # _starts always gives starts
        raise ValueError("no starting point for the Gabor fit")
    amplitude, theta, wavelength_logit, phase, log_sigma, log_aspect, x0, y0, offset = best.x
    if amplitude < 0:  # -A cos(t) = A cos(t + 180 deg)
        amplitude, phase = -amplitude, phase + math.pi
    r2 = 1 - 2 * best.cost / total if total > 0 else 0.0
    orientation, phase = _canonical(math.degrees(theta), math.degrees(phase))
    return GaborFit(
        orientation,
        _wavelength(wavelength_logit, size),
        phase,
        _exp(log_sigma),
        _exp(log_aspect),
        float(amplitude),
        float(x0),
        float(y0),
        float(offset),
        float(r2),
    )


def _canonical(orientation: float, phase: float) -> tuple[float, float]:
    """(theta in [0, 180), phase in [0, 360)): turning theta by 180 deg flips u, which the phase's sign absorbs."""
    turns = math.floor(orientation / 180.0)
    orientation -= 180.0 * turns
    if turns % 2:
        phase = -phase
    orientation, phase = orientation % 180.0, phase % 360.0
    return (0.0 if orientation > 180.0 - 1e-6 else orientation), (0.0 if phase > 360.0 - 1e-6 else phase)
