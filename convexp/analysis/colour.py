"""Filters that look at a colour image: which layers they are, and their weights as colours.

A conv layer whose input is the network's own 3-channel input (CIFAR-10, or your own RGB arrays) has filters
that are small colour images themselves: channel 0 weighs red, 1 green, 2 blue. Drawn as colours (grey is a
zero weight) they show what AlexNet's first layer made famous: oriented edges that ignore colour, and
colour-opponent blobs. The measures in :mod:`convexp.analysis.filters` are then taken on each channel and on
the luminance (the channels' mean: what the filter does to a grey image, up to a factor of 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from convexp.analysis.network import conv_layers_up_to
from convexp.analysis.recorded_plan import plan_recorded
from convexp.errors import ConvexpError

#: The names of an RGB image's channels, in convexp's (C, H, W) order.
RGB = ("red", "green", "blue")
#: The diverging colormap every picture of weights is drawn in (matplotlib's name): blue negative, white 0, red
#: positive, centred on zero.
CMAP = "RdBu_r"


def colormap_rgb(size: int, name: str = CMAP) -> np.ndarray:
    """A colormap (default :data:`CMAP`: -limit at its first entry, +limit at its last) as ``size`` evenly spaced RGB
    triples of 0-255 (uint8): the palette of convexp's GIFs, and the table the web UI colours kernels with."""
    from matplotlib import colormaps  # heavy, and only its values are read: no figure is drawn

    return np.round(colormaps[name](np.linspace(0.0, 1.0, size))[:, :3] * 255).astype(np.uint8)


def sees_colour_image(spec: Mapping[str, Any], layer: str) -> bool:
    """Whether conv layer ``layer`` of a recorded run's spec takes the network's input directly and that input has 3
    channels (a run recorded from your own loop has no plan: False)."""

    try:
        path = conv_layers_up_to(plan_recorded(dict(spec)), layer)
    except (ValueError, ConvexpError):
        return False
    return len(path) == 1 and path[0].input_shape[0] == len(RGB)


def as_colours(kernels: np.ndarray, limit: float | None = None) -> np.ndarray:
    """(out, 3, kh, kw) weights as (out, kh, kw, 3) colours in [0, 1]: 0.5 + w / (2 * limit) per channel, one
    ``limit`` (default the largest |weight|) for all, so grey is 0 and equal weights are equal intensities."""
    limit = limit or float(np.abs(kernels).max()) or 1.0
    return np.clip(0.5 + kernels.transpose(0, 2, 3, 1) / (2 * limit), 0.0, 1.0)


def chromatic_share(kernel: np.ndarray) -> float:
    """The share of a (3, kh, kw) filter's energy that is colour, not brightness: ||w - mean_c w||^2 / ||w||^2
    (0: the same weights on every channel; near 1: channels of opposite signs, a colour-opponent filter)."""
    total = float(np.square(kernel).sum())
    return float(np.square(kernel - kernel.mean(axis=0)).sum()) / total if total > 0 else 0.0
