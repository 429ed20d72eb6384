"""What a conv layer computes, on arrays the user gives, through any backend — and the worked example.

Arrays follow convexp's layouts: images (N, C, H, W), kernels (out, in, kh, kw). Shorter
arrays are accepted and read as the trailing dimensions: an image (H, W) is one image with
one channel, a kernel (kh, kw) one filter over one channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from convexp.errors import ConvexpError, ShapeError
from convexp.model.layers import Padding, conv_output_size, same_padding


class Convolver(Protocol):
    """What computes the convolution here: any backend (:class:`~convexp.backends.protocol.Backend` has both)."""

    @property
    def name(self) -> str:
        """The backend's name, shown under the output."""
        ...

    def conv2d(
        self,
        images: np.ndarray,
        kernel: np.ndarray,
        bias: np.ndarray | None = None,
        *,
        stride: int = 1,
        padding: Padding = "valid",
    ) -> np.ndarray:
        """Cross-correlate images (N, C, H, W) with kernel (O, C, kh, kw); returns (N, O, H', W')."""
        ...


def parse_shape(text: str, what: str) -> tuple[int, ...]:
    """Parse "2,3,5,5" into a shape; raises naming the option on anything else."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise ConvexpError(f"{what}: '{text}' is not a shape (comma-separated positive integers, e.g. 1,1,5,5)")
    return shape


def load_array(path: Path, what: str) -> np.ndarray:
    """A float32 array from a .npy file; raises naming the file when it cannot be read."""
    try:
        return np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
    except (OSError, ValueError) as exc:
        raise ConvexpError(f"{what} {path}: cannot be read as a .npy array ({exc})") from None


def as_images(array: np.ndarray) -> np.ndarray:
    """(H, W) or (C, H, W) or (N, C, H, W) as (N, C, H, W)."""
    if array.ndim not in (2, 3, 4):
        raise ShapeError(f"image must be (H, W), (C, H, W) or (N, C, H, W), not shape {array.shape}")
    return array.reshape((1,) * (4 - array.ndim) + array.shape)


def as_kernel(array: np.ndarray) -> np.ndarray:
    """(kh, kw) or (out, in, kh, kw) as (out, in, kh, kw)."""
    if array.ndim == 2:
        return array.reshape(1, 1, *array.shape)
    if array.ndim != 4:
        raise ShapeError(f"kernel must be (kh, kw) or (out, in, kh, kw), not shape {array.shape}")
    return array


def spread_kernel(kernel: np.ndarray, dilation: int) -> np.ndarray:
    """A (..., kh, kw) kernel with ``dilation - 1`` zeros between its taps: correlating with it is the dilated conv."""
    if dilation == 1:
        return kernel
    kh, kw = kernel.shape[-2:]
    spread = np.zeros((*kernel.shape[:-2], (kh - 1) * dilation + 1, (kw - 1) * dilation + 1), dtype=kernel.dtype)
    spread[..., ::dilation, ::dilation] = kernel
    return spread


def convolve(
    backend: Convolver,
    images: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int = 1,
    padding: Padding = "valid",
    dilation: int = 1,
    groups: int = 1,
) -> np.ndarray:
    """Cross-correlate through ``backend`` after checking that the shapes fit (errors say the sizes).

    A dilated conv is computed as the conv with the kernel spread out by zeros (:func:`spread_kernel`), and a
    grouped one as one conv per group, its filters over its channels, concatenated: what those layers compute,
    by definition, through the backend's plain conv."""
    images, kernel = as_images(images), as_kernel(kernel)
    if stride < 1 or dilation < 1 or groups < 1:
        raise ShapeError(f"stride, dilation and groups must be at least 1, not {stride}, {dilation} and {groups}")
    if images.shape[1] % groups or kernel.shape[0] % groups:
        raise ShapeError(
            f"groups = {groups} must divide both the image's {images.shape[1]} channel(s) and the kernel's {kernel.shape[0]} filter(s)"
        )
    if images.shape[1] != kernel.shape[1] * groups:
        expects = f"{kernel.shape[1]}" if groups == 1 else f"{kernel.shape[1]} per group, {kernel.shape[1] * groups} in all"
        raise ShapeError(f"the image has {images.shape[1]} channel(s) but the kernel expects {expects}")
    if bias is not None and bias.shape != (kernel.shape[0],):
        raise ShapeError(f"bias must have shape ({kernel.shape[0]},), not {bias.shape}")
    height, width = images.shape[2:]
    spread = spread_kernel(kernel, dilation)
    kh, kw = spread.shape[2:]
    if padding == "valid" and (kh > height or kw > width):
        what = f"kernel {kh}x{kw}" if dilation == 1 else f"kernel {kernel.shape[2]}x{kernel.shape[3]} dilated to {kh}x{kw}"
        raise ShapeError(f"{what} is larger than the {height}x{width} image with padding 'valid'")
    channels, filters = images.shape[1] // groups, kernel.shape[0] // groups
    parts = [
        backend.conv2d(
            np.ascontiguousarray(images[:, g * channels : (g + 1) * channels]),
            np.ascontiguousarray(spread[g * filters : (g + 1) * filters]),
            None if bias is None else np.ascontiguousarray(bias[g * filters : (g + 1) * filters]),
            stride=stride,
            padding=padding,
        )
        for g in range(groups)
    ]
    out = parts[0] if groups == 1 else np.concatenate(parts, axis=1)
    expected = (conv_output_size(height, kh, stride, padding), conv_output_size(width, kw, stride, padding))
    if out.shape != (images.shape[0], kernel.shape[0], *expected):
        raise ConvexpError(
            f"backend '{backend.name}' returned shape {out.shape}, expected {(images.shape[0], kernel.shape[0], *expected)}"
        )
    return out


#: The worked example: a 5x5 image with a vertical edge, and a kernel that responds to it.
EXAMPLE_IMAGE = (
    np.array([[0, 0, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 1, 1, 1]], dtype=np.float32)
    * np.array([1, 2, 3, 4, 5], dtype=np.float32)[:, None]
)
EXAMPLE_KERNEL = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float32)


@dataclass(frozen=True)
class ConvExplanation:
    """The worked example's pieces: inputs and settings, the output, one output spelled out, and true convolution;
    with groups, the depthwise example's channels and outputs."""

    image: np.ndarray
    kernel: np.ndarray
    output: np.ndarray
    flipped_output: np.ndarray
    first_window: np.ndarray
    first_terms: list[str]
    stride: int = 1
    padding: Padding = "valid"
    dilation: int = 1
    pads: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
    groups: int = 1
    group_outputs: np.ndarray | None = None  # (groups, H', W'): channel g of the example correlated with filter g


def explain(
    backend: Convolver,
    image: np.ndarray | None = None,
    kernel: np.ndarray | None = None,
    stride: int = 1,
    padding: Padding = "valid",
    dilation: int = 1,
    groups: int = 1,
) -> ConvExplanation:
    """Work through a single-channel convolution (default: the 5x5 image and 3x3 kernel example) with this stride,
    padding and dilation; with ``groups`` G, also a depthwise conv of G channels (channel g is the image times
    g + 1) with G copies of the kernel, each filter seeing only its own channel."""

    image = EXAMPLE_IMAGE if image is None else np.asarray(image, dtype=np.float32)
    kernel = EXAMPLE_KERNEL if kernel is None else np.asarray(kernel, dtype=np.float32)
    if image.ndim != 2 or kernel.ndim != 2:
        raise ShapeError("--explain works on a single-channel image (H, W) and kernel (kh, kw)")
    output = convolve(backend, image, kernel, stride=stride, padding=padding, dilation=dilation)[0, 0]
    flipped = convolve(backend, image, kernel[::-1, ::-1].copy(), stride=stride, padding=padding, dilation=dilation)[0, 0]
    kh, kw = kernel.shape
    span_h, span_w = (kh - 1) * dilation + 1, (kw - 1) * dilation + 1
    pads = (
        (same_padding(image.shape[0], span_h, stride), same_padding(image.shape[1], span_w, stride))
        if padding == "same"
        else ((0, 0), (0, 0))
    )
    window = np.pad(image, pads)[:span_h:dilation, :span_w:dilation]
    terms = [f"{_num(kernel[i, j])}*{_num(window[i, j])}" for i in range(kh) for j in range(kw)]
    group_outputs = None
    if groups > 1:
        channels = np.stack([image * (g + 1) for g in range(groups)])
        filters = np.stack([kernel[None]] * groups)
        group_outputs = convolve(backend, channels, filters, stride=stride, padding=padding, dilation=dilation, groups=groups)[0]
    return ConvExplanation(image, kernel, output, flipped, window, terms, stride, padding, dilation, pads, groups, group_outputs)


def _num(value: float) -> str:
    return f"({value:g})" if value < 0 else f"{value:g}"
