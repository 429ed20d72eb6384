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


def spread_kernel(kernel: np.ndarray, dilation: int) -> np.ndarray:
    """A (..., kh, kw) kernel with ``dilation - 1`` zeros between its taps: correlating with it is the dilated conv."""
    if dilation == 1:
        return kernel
    kh, kw = kernel.shape[-2:]
    spread = np.zeros((*kernel.shape[:-2], (kh - 1) * dilation + 1, (kw - 1) * dilation + 1), dtype=kernel.dtype)
    spread[..., ::dilation, ::dilation] = kernel
    return spread


def convolve(
    backend: Backend,
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
    backend: Backend,
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
    from convexp.layers import same_padding

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


def _ordinal(n: int) -> str:
    return {2: "second", 3: "third"}.get(n, f"{n}th")


def _num(value: float) -> str:
    return f"({value:g})" if value < 0 else f"{value:g}"


def _size_sentences(e: ConvExplanation) -> list[str]:
    """How the output's size follows from the image, the kernel's span, the padding and the stride."""
    (h, w), (kh, kw) = e.image.shape, e.kernel.shape
    oh, ow = e.output.shape
    span_h, span_w = (kh - 1) * e.dilation + 1, (kw - 1) * e.dilation + 1
    lines = []
    if e.dilation > 1:
        lines.append(
            f"Dilation {e.dilation} spaces the kernel's taps {e.dilation} pixels apart: the {kh}x{kw} kernel spans "
            f"({kh} - 1) * {e.dilation} + 1 = {span_h} rows and {span_w} columns, and reads every {_ordinal(e.dilation)} pixel there."
        )
    if e.padding == "valid":
        if e.stride == 1:
            lines.append(
                f"With 'valid' padding the {span_h}x{span_w} {'span' if e.dilation > 1 else 'kernel'} fits in "
                f"{h - span_h + 1}x{w - span_w + 1} positions, so the output is ({h} - {span_h} + 1) x ({w} - {span_w} + 1) = {oh}x{ow}."
            )
        else:
            lines.append(
                f"With 'valid' padding and stride {e.stride} the window moves {e.stride} pixels at a time and must fit "
                f"whole: the output is (floor(({h} - {span_h}) / {e.stride}) + 1) x (floor(({w} - {span_w}) / {e.stride}) + 1) "
                f"= {oh}x{ow}."
            )
    else:
        (top, bottom), (left, right) = e.pads
        lines.append(
            f"With 'same' padding the output is ceil({h} / {e.stride}) x ceil({w} / {e.stride}) = {oh}x{ow}: the image gets "
            f"{top} row(s) of zeros above and {bottom} below, {left} column(s) on the left and {right} on the right "
            "(an odd one goes to the bottom and right, as TensorFlow pads)."
        )
    return lines


def format_explanation(e: ConvExplanation, backend_name: str) -> str:
    """The worked example as text for the terminal."""
    (h, w), (kh, kw) = e.image.shape, e.kernel.shape
    oh, ow = e.output.shape
    settings = f"stride {e.stride}, '{e.padding}' padding" + (f", dilation {e.dilation}" if e.dilation > 1 else "")
    lines = [
        f"Image ({h}x{w}):",
        _matrix(e.image),
        f"Kernel ({kh}x{kw}), {settings}:",
        _matrix(e.kernel),
        *_size_sentences(e),
        "Each output is the sum of the elementwise products of the kernel with one window of the image.",
        "The kernel is NOT flipped: this is cross-correlation, which is what every framework's",
        f"'convolution' layer computes. Output[0, 0] uses the top-left window{' (its taps only)' if e.dilation > 1 else ''}:",
        _matrix(e.first_window),
        f"  output[0, 0] = {' + '.join(e.first_terms)} = {e.output[0, 0]:g}",
    ]
    if e.stride > 1 and ow > 1:
        lines.append(f"Output[0, 1] uses the window {e.stride} columns to the right, output[1, 0] the one {e.stride} rows down.")
    lines += [
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
    if e.group_outputs is not None:
        lines += _groups_lines(e)
    return "\n".join(lines)


def _groups_lines(e: ConvExplanation) -> list[str]:
    """The depthwise example: G channels, G filters, each filter seeing its own channel only."""
    g, (kh, kw) = e.groups, e.kernel.shape
    lines = [
        f"Groups: with groups = {g} the input channels and the filters are split into {g} groups, and each filter sees",
        "only its own group's channels. Its kernel is (filters, channels / groups, kh, kw), so the layer has groups",
        f"times fewer weights. Here {g} channels (channel c is the image times c + 1) and {g} filters, each the kernel",
        f"above: a depthwise conv (groups = channels), kernel ({g}, 1, {kh}, {kw}), {g * kh * kw} weights instead of "
        f"{g * g * kh * kw} without groups. Filter c sees channel c alone: its output is the output above times c + 1.",
    ]
    assert e.group_outputs is not None
    for c, out in enumerate(e.group_outputs):
        lines += [f"Output of filter {c} (channel {c} only):", _matrix(out)]
    return lines


def _matrix(array: np.ndarray) -> str:
    return "\n".join("  " + " ".join(f"{v:7g}" for v in row) for row in np.asarray(array))
