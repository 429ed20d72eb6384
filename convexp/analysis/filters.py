"""What first-layer filters look like: the classical operator each resembles, and how edge-like the layer is.

Each 3x3 filter (averaged over its input channels) is correlated (Pearson, so its mean
does not count) with a bank of classical operators and their negatives. A filter is
*edge-like* when its best match is an edge operator (Sobel, Prewitt, Scharr or a diagonal
edge, either sign) with correlation at least :data:`EDGE_THRESHOLD`.

A filter's orientation is the direction of its dominant intensity gradient (from the
structure tensor of the filter seen as a tiny image), in degrees in [0, 180):
0 means the filter changes left to right (it responds to vertical edges), 90 top to bottom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from convexp.errors import ConvexpError

#: Correlation a filter needs with an edge operator to count as edge-like.
EDGE_THRESHOLD = 0.8

_SOBEL_X = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
_PREWITT_X = [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]]
_SCHARR_X = [[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]]
_BASE = {
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
#: The operator bank: each classical 3x3 operator and its negative ("-sobel_x").
OPERATORS: dict[str, np.ndarray] = {
    **{name: np.asarray(k, dtype=np.float64) for name, k in _BASE.items()},
    **{f"-{name}": -np.asarray(k, dtype=np.float64) for name, k in _BASE.items()},
}
EDGE_OPERATORS = frozenset(
    name for name in OPERATORS if name.lstrip("-").split("_")[0] in ("sobel", "prewitt", "scharr", "diagonal")
)


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


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denominator) if denominator > 0 else 0.0


def best_operator(filter_2d: np.ndarray) -> tuple[str, float]:
    """The operator of the bank that correlates best with a 3x3 filter, and the correlation."""
    scores = {name: _pearson(filter_2d, op) for name, op in OPERATORS.items()}
    name = max(scores, key=scores.get)
    return name, scores[name]


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


def analyse_layer(kernels: np.ndarray, step: int) -> LayerFilters:
    """Analyse every filter of a (out, in, 3, 3) kernel."""
    if kernels.ndim != 4 or kernels.shape[2:] != (3, 3):
        raise ConvexpError(f"filter analysis compares 3x3 filters with 3x3 operators; this layer's kernels are {kernels.shape[2:]}")
    infos = []
    for index, kernel in enumerate(kernels.astype(np.float64)):
        filter_2d = kernel.mean(axis=0)
        name, correlation = best_operator(filter_2d)
        angle, coherence = orientation(filter_2d)
        infos.append(FilterInfo(
            index, name, correlation, name in EDGE_OPERATORS and correlation >= EDGE_THRESHOLD,
            float(np.linalg.norm(kernel)), float(kernel.mean()), angle, coherence,
        ))
    return LayerFilters(step, infos)
