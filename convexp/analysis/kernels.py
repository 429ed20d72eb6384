"""How kernels move and how two sets of filters resemble each other.

Filters are unordered: filter 3 of one run has no reason to be filter 3 of another. So
two layers are compared by matching their filters one-to-one (the Hungarian assignment
that maximises the total cosine similarity) and averaging the matched similarities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def relative_drift(kernels: np.ndarray) -> np.ndarray:
    """||W_t - W_0||_F / ||W_0||_F for every snapshot of a (snapshots, out, in, kh, kw) series."""
    flat = kernels.reshape(len(kernels), -1).astype(np.float64)
    start = np.linalg.norm(flat[0])
    moved = np.linalg.norm(flat - flat[0], axis=1)
    return moved / start if start > 0 else np.where(moved > 0, np.inf, 0.0)


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every filter of ``a`` (out_a, ...) with every filter of ``b`` (out_b, ...); 0 for a zero filter."""
    fa = a.reshape(len(a), -1).astype(np.float64)
    fb = b.reshape(len(b), -1).astype(np.float64)
    na, nb = np.linalg.norm(fa, axis=1), np.linalg.norm(fb, axis=1)
    dots = fa @ fb.T
    denominator = np.outer(na, nb)
    return np.divide(dots, denominator, out=np.zeros_like(dots), where=denominator > 0)


@dataclass(frozen=True)
class FilterMatching:
    """A one-to-one matching of two layers' filters and how similar the matched pairs are."""

    pairs: list[tuple[int, int, float]]  # (filter in a, filter in b, cosine similarity)

    @property
    def mean_similarity(self) -> float:
        """Mean cosine similarity of the matched pairs (1.0 for identical filter sets)."""
        return float(np.mean([s for _, _, s in self.pairs])) if self.pairs else float("nan")


def match_filters(a: np.ndarray, b: np.ndarray) -> FilterMatching:
    """Match the filters of ``a`` and ``b`` one-to-one so that the total cosine similarity is largest."""
    from scipy.optimize import linear_sum_assignment  # heavy: loaded only when this is used

    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"filters of shape {a.shape[1:]} and {b.shape[1:]} cannot be compared")
    similarity = cosine_matrix(a, b)
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    return FilterMatching([(int(i), int(j), float(similarity[i, j])) for i, j in zip(rows, cols)])
