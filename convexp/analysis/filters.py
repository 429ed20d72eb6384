"""What filters look like: the classical operator each resembles, how edge-like a layer is, and Gabor fits.

Each filter (averaged over its input channels) is correlated (Pearson, so its mean does not
count) with a bank of operators of its own size and their negatives (:func:`operator_bank`):

* 3x3: the classical operators, Sobel, Prewitt and Scharr x/y, the two diagonal edges, the
  Laplacian and a center-surround blob.
* 5x5, 7x7 and any larger odd size k, built for that size with sigma = (k - 1) / 4:
  derivative-of-Gaussian edges ``edge_<angle>`` at 8 orientations 22.5 deg apart
  (u * exp(-(x^2 + y^2) / (2 sigma^2)), u = x cos(angle) + y sin(angle)), the Laplacian of
  Gaussian and a center-surround difference of Gaussians (sigmas 0.6 sigma and 1.6 sigma).

A filter is *edge-like* when its best match is an edge operator (3x3: Sobel, Prewitt, Scharr or
a diagonal edge; larger: a derivative-of-Gaussian edge; either sign) with correlation at least
:data:`EDGE_THRESHOLD`. Filters of 5x5 and larger also get a Gabor fit (:mod:`convexp.analysis.gabor`).

A filter's orientation is the direction of its dominant intensity gradient (from the
structure tensor of the filter seen as a tiny image), in degrees in [0, 180):
0 means the filter changes left to right (it responds to vertical edges), 90 top to bottom.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from convexp.analysis.colour import chromatic_share
from convexp.analysis.gabor import MIN_SIZE as GABOR_MIN_SIZE
from convexp.analysis.gabor import GaborFit, coordinates, fit_gabor
from convexp.errors import ConvexpError

#: Correlation a filter needs with an edge operator to count as edge-like.
EDGE_THRESHOLD = 0.8
#: Orientations (degrees) of the derivative-of-Gaussian edge operators of 5x5 and larger banks.
EDGE_ANGLES = (0, 22.5, 45, 67.5, 90, 112.5, 135, 157.5)

_SOBEL_X = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
_PREWITT_X = [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]]
_SCHARR_X = [[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]]
_BASE_3X3 = {
    "sobel_x": _SOBEL_X,
    "sobel_y": np.transpose(_SOBEL_X),
    "prewitt_x": _PREWITT_X,
    "prewitt_y": np.transpose(_PREWITT_X),
    "scharr_x": _SCHARR_X,
    "scharr_y": np.transpose(_SCHARR_X),
    "diagonal_45": [[0, 1, 2], [-1, 0, 1], [-2, -1, 0]],
    "diagonal_135": [[2, 1, 0], [1, 0, -1], [0, -1, -2]],
    "laplacian": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "center_surround": [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]],
}
_EDGE_FAMILIES = ("sobel", "prewitt", "scharr", "diagonal", "edge")


def _gaussian(x: np.ndarray, y: np.ndarray, sigma: float) -> np.ndarray:
    g = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    return g / g.sum()


def _generated_bank(size: int) -> dict[str, np.ndarray]:
    """Derivative-of-Gaussian edges, Laplacian of Gaussian and center-surround for a size x size kernel."""
    sigma = (size - 1) / 4
    x, y = coordinates((size, size))
    g = _gaussian(x, y, sigma)
    bank = {
        f"edge_{angle:g}": (x * math.cos(math.radians(angle)) + y * math.sin(math.radians(angle))) * g for angle in EDGE_ANGLES
    }
    bank["laplacian_of_gaussian"] = (x**2 + y**2 - 2 * sigma**2) / sigma**4 * g
    bank["center_surround"] = _gaussian(x, y, 0.6 * sigma) - _gaussian(x, y, 1.6 * sigma)
    return bank


@functools.cache
def operator_bank(size: int) -> dict[str, np.ndarray]:
    """The operators a size x size filter is compared with (see the module docstring), each also negated ("-sobel_x")."""
    if size < 3 or size % 2 == 0:
        raise ConvexpError(f"filter analysis needs square kernels of odd size 3 or more (3x3, 5x5, 7x7 ...), not {size}x{size}")
    base = {n: np.asarray(k, dtype=np.float64) for n, k in _BASE_3X3.items()} if size == 3 else _generated_bank(size)
    return {**base, **{f"-{name}": -k for name, k in base.items()}}


def is_edge_operator(name: str) -> bool:
    """Whether an operator of a bank is an edge operator (either sign)."""
    return name.lstrip("-").split("_")[0] in _EDGE_FAMILIES


#: The 3x3 operator bank (kept under its old name).
OPERATORS: dict[str, np.ndarray] = operator_bank(3)
EDGE_OPERATORS = frozenset(name for name in OPERATORS if is_edge_operator(name))


@dataclass(frozen=True)
class FilterInfo:
    """One filter's analysis."""

    index: int
    best_operator: str
    correlation: float
    edge_like: bool
    norm: float
    mean: float
    orientation: float
    orientedness: float
    gabor: GaborFit | None = None  # for filters of 5x5 and larger
    #: For a filter over a colour image: the measures of each channel (red, green, blue), the main ones being the
    #: luminance's (the channels' mean).
    channels: tuple[ChannelMeasures, ...] = ()
    #: For a filter over a colour image: :func:`convexp.analysis.colour.chromatic_share`.
    chromatic_share: float | None = None


@dataclass(frozen=True)
class ChannelMeasures:
    """One colour channel of a filter: its best operator, orientation and Gabor fit, as for a whole filter."""

    channel: str
    best_operator: str
    correlation: float
    orientation: float
    orientedness: float
    gabor: GaborFit | None = None


@dataclass(frozen=True)
class LayerFilters:
    """Every filter of a layer at one step, and the share that is edge-like."""

    step: int
    filters: list[FilterInfo]

    @property
    def edge_like(self) -> int:
        """How many filters are edge-like."""
        return sum(f.edge_like for f in self.filters)

    @property
    def edge_share(self) -> float:
        """The share of filters that are edge-like."""
        return self.edge_like / len(self.filters) if self.filters else float("nan")


@functools.cache
def _unit_bank(size: int) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """A bank's names, its operators centred and scaled to unit norm as rows (operators, size*size), and which are
    edge operators."""
    bank = operator_bank(size)
    rows = np.stack([k.ravel() - k.mean() for k in bank.values()])
    names = tuple(bank)
    return names, rows / np.linalg.norm(rows, axis=1, keepdims=True), np.array([is_edge_operator(n) for n in names])


def _scores(filters_2d: np.ndarray) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """The Pearson correlation of each of n square filters (n, k, k) with each operator of their size's bank (n, ops);
    0 for a constant filter. Each row is computed alone, in the same order, whatever n is: a filter scores the same
    analysed on its own, with its layer, or with every snapshot of a run."""
    names, unit, edge = _unit_bank(filters_2d.shape[-1])
    flat = np.asarray(filters_2d, dtype=np.float64).reshape(len(filters_2d), -1)
    centred = flat - flat.mean(axis=1, keepdims=True)
    norms = np.sqrt(np.einsum("nk,nk->n", centred, centred))
    products = np.einsum("nk,ok->no", centred, unit)  # einsum's own loops (not BLAS): a row does not depend on n
    with np.errstate(invalid="ignore", divide="ignore"):
        return names, np.where(norms[:, None] > 0, products / norms[:, None], 0.0), edge


def _best(filters_2d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """For each of n square filters (n, k, k): the index of the operator it correlates best with (the first in the
    bank's order on a tie), that correlation, and whether the filter is edge-like (an edge operator, at least
    :data:`EDGE_THRESHOLD`); and the bank's names."""
    names, scores, edge = _scores(filters_2d)
    best = scores.argmax(axis=1)
    correlations = scores[np.arange(len(best)), best]
    return best, correlations, edge[best] & (correlations >= EDGE_THRESHOLD), names


def best_operators(filters_2d: np.ndarray) -> tuple[list[str], np.ndarray]:
    """For each of n square filters (n, k, k): the operator of its size's bank it correlates best with (Pearson; the
    first in the bank's order on a tie) and that correlation."""
    best, correlations, _, names = _best(filters_2d)
    return [names[i] for i in best], correlations


def best_operator(filter_2d: np.ndarray) -> tuple[str, float]:
    """The operator of the filter's size's bank that correlates best with a square 2-D filter, and the correlation."""
    names, correlations = best_operators(np.asarray(filter_2d)[None])
    return names[0], float(correlations[0])


def edge_shares(kernels: np.ndarray) -> np.ndarray:
    """The edge share of each snapshot of a layer (snapshots, out, in, k, k): what ``analyse_layer(kernel).edge_share``
    gives for each, computed over all snapshots at once (the experiment page's curves, thousands of snapshots)."""
    filters_2d = np.asarray(kernels, dtype=np.float64).mean(axis=2)
    _, _, edge_like, _ = _best(filters_2d.reshape(-1, *filters_2d.shape[2:]))
    return edge_like.reshape(filters_2d.shape[:2]).sum(axis=1) / filters_2d.shape[1]


def orientation(filter_2d: np.ndarray) -> tuple[float, float]:
    """(dominant gradient direction in degrees [0, 180), coherence in [0, 1]) from the structure tensor."""
    gy, gx = np.gradient(np.asarray(filter_2d, dtype=np.float64))
    jxx, jyy, jxy = float((gx * gx).sum()), float((gy * gy).sum()), float((gx * gy).sum())
    total = jxx + jyy
    if total == 0:
        return 0.0, 0.0
    # image rows grow downwards; measure angles with y pointing up
    angle = 0.5 * math.degrees(math.atan2(-2 * jxy, jxx - jyy)) % 180.0
    coherence = math.hypot(jxx - jyy, 2 * jxy) / total
    return angle, coherence


def analyse_layer(kernels: np.ndarray, step: int, gabor: bool = True, channels: tuple[str, ...] = ()) -> LayerFilters:
    """Analyse every filter of an (out, in, k, k) kernel, k odd; with a Gabor fit per filter when k >= 5 and ``gabor``.
    The measures are of the filter's mean over its input channels; with ``channels`` (their names, for a layer over
    a colour image) each channel is measured too, and the filter's chromatic share."""
    if kernels.ndim != 4 or kernels.shape[2] != kernels.shape[3] or kernels.shape[2] % 2 == 0 or kernels.shape[2] < 3:
        raise ConvexpError(
            "filter analysis compares square filters of odd size (3x3, 5x5, 7x7 ...) with operators of "
            f"that size; this layer's kernels are {'x'.join(map(str, kernels.shape[2:]))}"
        )
    infos = []
    wide = kernels.astype(np.float64)
    means = wide.mean(axis=1)
    best, correlations, edge_like, bank = _best(means)
    for index, kernel in enumerate(wide):
        filter_2d, name, correlation = means[index], bank[best[index]], float(correlations[index])
        angle, coherence = orientation(filter_2d)
        fit = fit_gabor(filter_2d) if gabor and filter_2d.shape[0] >= GABOR_MIN_SIZE else None
        per_channel: tuple[ChannelMeasures, ...] = ()
        share = None
        if channels:
            per_channel = tuple(_channel_measures(name, plane, gabor) for name, plane in zip(channels, kernel))
            share = chromatic_share(kernel)
        infos.append(
            FilterInfo(
                index,
                name,
                correlation,
                bool(edge_like[index]),
                float(np.linalg.norm(kernel)),
                float(kernel.mean()),
                angle,
                coherence,
                fit,
                per_channel,
                share,
            )
        )
    return LayerFilters(step, infos)


def _channel_measures(name: str, plane: np.ndarray, gabor: bool) -> ChannelMeasures:
    operator, correlation = best_operator(plane)
    angle, coherence = orientation(plane)
    fit = fit_gabor(plane) if gabor and plane.shape[0] >= GABOR_MIN_SIZE else None
    return ChannelMeasures(name, operator, correlation, angle, coherence, fit)
