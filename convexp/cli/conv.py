"""``convexp conv``: run one conv layer of a backend on your arrays, or walk through the worked example."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from convexp.cli.app import app
from convexp.cli.options import PaddingChoice


@app.command("conv", short_help="Cross-correlate an image with a kernel.")
def conv_command(
    image: Annotated[Optional[Path], typer.Option(help="Image .npy: (H, W), (C, H, W) or (N, C, H, W).")] = None,
    kernel: Annotated[Optional[Path], typer.Option(help="Kernel .npy: (kh, kw) or (out, in, kh, kw).")] = None,
    bias: Annotated[Optional[Path], typer.Option(help="Bias .npy: (out,).")] = None,
    random_image: Annotated[Optional[str], typer.Option(help="Draw a standard-normal image of this shape, e.g. 1,3,7,7.")] = None,
    random_kernel: Annotated[
        Optional[str], typer.Option(help="Draw a standard-normal kernel of this shape, e.g. 4,3,3,3.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for --random-image / --random-kernel.")] = 0,
    backend: Annotated[str, typer.Option(help="Backend that computes the convolution.")] = "numpy",
    padding: Annotated[
        PaddingChoice, typer.Option(help="'valid' uses only full windows; 'same' pads to ceil(H / stride).")
    ] = PaddingChoice.valid,
    stride: Annotated[int, typer.Option(help="Stride in both directions.")] = 1,
    dilation: Annotated[int, typer.Option(help="Space the kernel's taps this many pixels apart.")] = 1,
    groups: Annotated[
        int,
        typer.Option(help="Split channels and filters into this many groups; each filter sees its group's channels only."),
    ] = 1,
    out: Annotated[
        Optional[Path], typer.Option(help="Write the result (N, out, H', W') to this .npy instead of printing it.")
    ] = None,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Walk through a 5x5 image and 3x3 kernel (or your 2-D arrays) with the padding, stride and dilation given; "
            "with --groups, a depthwise example too.",
        ),
    ] = False,
) -> None:
    """Cross-correlate an image with a kernel on a backend, as its conv layer does (the kernel is not flipped)."""
    import numpy as np

    from convexp.backends.registry import get_backend
    from convexp.cli.conv_text import format_explanation
    from convexp.errors import ConvexpError
    from convexp.model import convolution

    if out is not None:
        from convexp.analysis.output_files import check_output_path

        check_output_path(out, "--out", {".npy"})
    chosen = get_backend(backend)
    rng = np.random.default_rng(seed)

    def array(path, shape, what):
        if path is not None and shape is not None:
            raise ConvexpError(f"give either --{what} or --random-{what}, not both")
        if path is not None:
            return convolution.load_array(path, f"--{what}")
        if shape is not None:
            return rng.standard_normal(convolution.parse_shape(shape, f"--random-{what}")).astype(np.float32)
        return None

    images, kernel_array = array(image, random_image, "image"), array(kernel, random_kernel, "kernel")
    bias_array = convolution.load_array(bias, "--bias") if bias else None
    if explain:
        typer.echo(
            format_explanation(
                convolution.explain(chosen, images, kernel_array, stride, padding.value, dilation, groups), chosen.name
            )
        )
        return
    if images is None or kernel_array is None:
        raise ConvexpError(
            "give an image (--image FILE or --random-image SHAPE) and a kernel (--kernel FILE or --random-kernel SHAPE), or use --explain"
        )
    result = convolution.convolve(chosen, images, kernel_array, bias_array, stride, padding.value, dilation, groups)
    if out is not None:
        np.save(out, result)
        typer.echo(f"wrote {out}: shape {result.shape}")
        return
    typer.echo(
        f"output {result.shape} (N, out_channels, H', W') from backend '{chosen.name}', {padding} padding, stride {stride}"
        + (f", dilation {dilation}" if dilation > 1 else "")
        + (f", {groups} groups" if groups > 1 else "")
        + ":"
    )
    typer.echo(np.array2string(result, precision=5, suppress_small=True, max_line_width=120, threshold=10_000))
