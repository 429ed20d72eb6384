"""What a conv layer computes, on arrays the user gives, through any backend — and the worked example.

Arrays follow convexp's layouts: images (N, C, H, W), kernels (out, in, kh, kw). Shorter
arrays are accepted and read as the trailing dimensions: an image (H, W) is one image with
one channel, a kernel (kh, kw) one filter over one channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convexp.backend import Backend
from convexp.errors import ConvexpError, ShapeError
from convexp.layers import Padding, conv_output_size


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


def convolve(
    backend: Backend,
    images: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int = 1,
    padding: Padding = "valid",
) -> np.ndarray:
    """Cross-correlate through ``backend`` after checking that the shapes fit (errors say the sizes)."""
    images, kernel = as_images(images), as_kernel(kernel)
    if images.shape[1] != kernel.shape[1]:
        raise ShapeError(f"the image has {images.shape[1]} channel(s) but the kernel expects {kernel.shape[1]}")
    if bias is not None and bias.shape != (kernel.shape[0],):
        raise ShapeError(f"bias must have shape ({kernel.shape[0]},), not {bias.shape}")
    if stride < 1:
        raise ShapeError(f"stride must be at least 1, not {stride}")
    height, width = images.shape[2:]
    kh, kw = kernel.shape[2:]
    if padding == "valid" and (kh > height or kw > width):
        raise ShapeError(f"kernel {kh}x{kw} is larger than the {height}x{width} image with padding 'valid'")
    out = backend.conv2d(images, kernel, bias, stride=stride, padding=padding)
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
    """The worked example's pieces: inputs, the output, one output spelled out, and true convolution."""

    image: np.ndarray
    kernel: np.ndarray
    output: np.ndarray
    flipped_output: np.ndarray
    first_window: np.ndarray
    first_terms: list[str]


def explain(backend: Backend, image: np.ndarray | None = None, kernel: np.ndarray | None = None) -> ConvExplanation:
    """Work through a single-channel 'valid' convolution (default: the 5x5 image and 3x3 kernel example)."""
    image = EXAMPLE_IMAGE if image is None else np.asarray(image, dtype=np.float32)
    kernel = EXAMPLE_KERNEL if kernel is None else np.asarray(kernel, dtype=np.float32)
    if image.ndim != 2 or kernel.ndim != 2:
        raise ShapeError("--explain works on a single-channel image (H, W) and kernel (kh, kw)")
    output = convolve(backend, image, kernel)[0, 0]
    flipped = convolve(backend, image, kernel[::-1, ::-1].copy())[0, 0]
    kh, kw = kernel.shape
    window = image[:kh, :kw]
    terms = [f"{_num(kernel[i, j])}*{_num(window[i, j])}" for i in range(kh) for j in range(kw)]
    return ConvExplanation(image, kernel, output, flipped, window, terms)


def _num(value: float) -> str:
    return f"({value:g})" if value < 0 else f"{value:g}"


def format_explanation(e: ConvExplanation, backend_name: str) -> str:
    """The worked example as text for the terminal."""
    (h, w), (kh, kw) = e.image.shape, e.kernel.shape
    oh, ow = e.output.shape
    lines = [
        f"Image ({h}x{w}):",
        _matrix(e.image),
        f"Kernel ({kh}x{kw}):",
        _matrix(e.kernel),
        f"With 'valid' padding the {kh}x{kw} kernel fits in {h - kh + 1}x{w - kw + 1} positions, "
        f"so the output is ({h} - {kh} + 1) x ({w} - {kw} + 1) = {oh}x{ow}.",
        "Each output is the sum of the elementwise products of the kernel with one window of the image.",
        "The kernel is NOT flipped: this is cross-correlation, which is what every framework's",
        "'convolution' layer computes. Output[0, 0] uses the top-left window:",
        _matrix(e.first_window),
        f"  output[0, 0] = {' + '.join(e.first_terms)} = {e.output[0, 0]:g}",
        f"Output ({oh}x{ow}), computed by backend '{backend_name}':",
        _matrix(e.output),
        "True (mathematical) convolution flips the kernel in both directions first; with the flipped kernel",
        _matrix(e.kernel[::-1, ::-1]),
        "it would give instead:",
        _matrix(e.flipped_output),
    ]
    if np.allclose(e.output, -e.flipped_output) and np.any(e.output):
        lines.append("Here that is exactly the negative: the kernel is antisymmetric, so flipping it negates it.")
    elif np.allclose(e.output, e.flipped_output):
        lines.append("Here both agree: the kernel is symmetric under the flip.")
    return "\n".join(lines)


def _matrix(array: np.ndarray) -> str:
    return "\n".join("  " + " ".join(f"{v:7g}" for v in row) for row in np.asarray(array))
