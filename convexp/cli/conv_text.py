"""``convexp conv``'s worked example as text for the terminal: the image, the kernel, how the sizes come about, the
first window's sum of products, and what true (flipped) convolution would give instead."""

from __future__ import annotations

import numpy as np

from convexp.model.convolution import ConvExplanation


def _ordinal(n: int) -> str:
    return {2: "second", 3: "third"}.get(n, f"{n}th")


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
