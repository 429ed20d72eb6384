"""Independent references the backends are checked against."""

from __future__ import annotations

import numpy as np
from scipy.signal import correlate2d

from convexp.model.layers import same_padding


def scipy_conv(images: np.ndarray, kernel: np.ndarray, stride: int, padding: str) -> np.ndarray:
    """Sum over input channels of scipy.signal.correlate2d, padded as TensorFlow pads 'same', in float64."""
    images, kernel = images.astype(np.float64), kernel.astype(np.float64)
    n, c, h, w = images.shape
    o, _, kh, kw = kernel.shape
    if padding == "same":
        (top, bottom), (left, right) = same_padding(h, kh, stride), same_padding(w, kw, stride)
        images = np.pad(images, ((0, 0), (0, 0), (top, bottom), (left, right)))
    out = []
    for i in range(n):
        maps = [sum(correlate2d(images[i, ch], kernel[f, ch], mode="valid") for ch in range(c)) for f in range(o)]
        out.append(np.stack(maps)[:, ::stride, ::stride])
    return np.stack(out)


CONV_CASES = [
    ((2, 3, 7, 6), (4, 3, 3, 3)),
    ((1, 2, 9, 9), (3, 2, 5, 3)),
    ((2, 1, 8, 8), (2, 1, 2, 2)),
]
