"""Pictures of filters and training, drawn with matplotlib's object API (no pyplot, no display needed).

Filters are drawn the way people draw them: a diverging colormap centred on zero, one
shared scale for every filter in a picture, so that a pale filter really is small.
Each ``*_figure`` function takes arrays and returns a :class:`matplotlib.figure.Figure`;
:func:`convexp.analysis.plot.draw` fetches what a picture kind needs from the store.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from convexp.analysis import PICTURE_KINDS
from convexp.analysis.animation import filter_frames, filters_2d, write_gif
from convexp.analysis.colour import CMAP, as_colours
from convexp.analysis.output_files import check_output_path
from convexp.errors import unknown_name
from convexp.model.convolution import spread_kernel
from convexp.model.initializers import fans_of, get_initializer
from convexp.model.layers import Padding, same_padding

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from convexp.analysis.group_curves import GroupCurves
    from convexp.analysis.maximize import PreferredInput
    from convexp.analysis.patches import LayerPatches
    from convexp.analysis.sweep_points import SweepPoints

KINDS = PICTURE_KINDS


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure  # heavy: loaded only when this is used

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _grid_shape(count: int) -> tuple[int, int]:
    columns = math.ceil(math.sqrt(count))
    return math.ceil(count / columns), columns


def _show(ax, image: np.ndarray, limit: float, cmap: str = CMAP):
    ax.set_xticks([])
    ax.set_yticks([])
    return ax.imshow(image, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")


def _numbered_grid(images: np.ndarray, title: str, limit: float | None, cell: float, first=None) -> Figure:
    """Images numbered 0, 1, ... in a grid on one shared diverging scale, with a colorbar.

    ``first``, if given, is a grey-scale image drawn in the first cell (titled "input").
    """
    offset = 0 if first is None else 1
    rows, columns = _grid_shape(len(images) + offset)
    figure = _figure(cell * columns + 1.2, cell * rows + 0.6)
    axes = figure.subplots(rows, columns, squeeze=False)
    cells = list(axes.flat)
    if first is not None:
        cells[0].imshow(first, cmap="gray", interpolation="nearest")
        cells[0].set_title("input", fontsize=7)
        cells[0].set_xticks([])
        cells[0].set_yticks([])
    limit = limit or float(np.abs(images).max()) or 1.0
    for index, ax in enumerate(cells[offset:]):
        if index < len(images):
            mappable = _show(ax, images[index], limit)
            ax.set_title(str(index), fontsize=7, pad=2)
        else:
            ax.axis("off")
    figure.colorbar(mappable, ax=axes, shrink=0.8)
    figure.suptitle(title, fontsize=10)
    return figure


def filter_grid_figure(kernels: np.ndarray, title: str, limit: float | None = None, rgb: bool = False) -> Figure:
    """All filters of a layer in a grid, on one shared diverging scale (±``limit``, default the largest |weight|);
    with ``rgb`` (a layer over a colour image) each filter in colour (:func:`convexp.analysis.colour.as_colours`)."""
    if rgb:
        return _colour_grid(kernels, title, limit)
    suffix = " (mean over input channels)" if kernels.shape[1] > 1 else ""
    return _numbered_grid(filters_2d(kernels), title + suffix, limit, cell=1.1)


def _colour_grid(kernels: np.ndarray, title: str, limit: float | None) -> Figure:
    """Filters over a colour image drawn as colours: red, green and blue weights as those intensities, grey = 0."""

    colours = as_colours(kernels, limit)
    rows, columns = _grid_shape(len(colours))
    figure = _figure(max(1.1 * columns + 0.4, 4.8), 1.1 * rows + 0.9)
    for index, ax in enumerate(figure.subplots(rows, columns, squeeze=False).flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if index < len(colours):
            ax.imshow(colours[index], interpolation="nearest")
            ax.set_title(str(index), fontsize=7, pad=2)
        else:
            ax.axis("off")
    shown = limit or float(np.abs(kernels).max()) or 1.0
    figure.suptitle(f"{title}\nred, green, blue weights as colours: grey = 0, full = ±{shown:.3g}", fontsize=9)
    return figure


def _even_indices(count: int, wanted: int) -> list[int]:
    return sorted({round(i * (count - 1) / max(wanted - 1, 1)) for i in range(min(wanted, count))})


def filter_evolution_figure(
    kernels: np.ndarray, steps: np.ndarray, filters: Sequence[int], title: str, columns: int = 10
) -> Figure:
    """Chosen filters (rows) at evenly spaced snapshots (columns), on one shared scale."""
    chosen = _even_indices(len(steps), columns)
    stack = filters_2d(kernels[chosen][:, list(filters)].reshape(-1, *kernels.shape[2:])).reshape(
        len(chosen), len(filters), *kernels.shape[3:]
    )
    limit = float(np.abs(stack).max()) or 1.0
    figure = _figure(1.0 * len(chosen) + 1.6, 1.0 * len(filters) + 0.8)
    axes = figure.subplots(len(filters), len(chosen), squeeze=False)
    for row, f in enumerate(filters):
        for column, snapshot in enumerate(chosen):
            image = _show(axes[row, column], stack[column, row], limit)
            if row == 0:
                axes[row, column].set_title(f"step {steps[snapshot]}", fontsize=7)
        axes[row, 0].set_ylabel(f"filter {f}", fontsize=8)
    figure.colorbar(image, ax=axes, shrink=0.8)
    figure.suptitle(title, fontsize=10)
    return figure


def evolution_gif(
    kernels: np.ndarray, steps: np.ndarray, title: str, path: Path | IO[bytes], frames: int = 40, rgb: bool = False
) -> None:
    """An animated GIF of the whole filter grid over at most ``frames`` evenly spread snapshots, every frame on the
    same scale (the largest |weight| drawn in any frame), into a file (a path, or a binary file object such as
    ``io.BytesIO``); ``rgb``: in colour. Drawn by :mod:`convexp.analysis.animation`."""
    chosen = _even_indices(len(steps), frames)
    drawn, _, _ = filter_frames(kernels[chosen], np.asarray(steps)[chosen], title, rgb)
    write_gif(drawn, path)


def training_curves_figure(curves: Sequence[tuple[str, dict[str, tuple[np.ndarray, np.ndarray]]]]) -> Figure:
    """Train loss per step (with a moving average) and test accuracy per epoch, one colour per run."""
    figure = _figure(10, 4)
    loss_ax, accuracy_ax = figure.subplots(1, 2)
    for index, (label, metrics) in enumerate(curves):
        colour = f"C{index}"
        if "train_loss" in metrics:
            steps, values = metrics["train_loss"]
            loss_ax.plot(steps, values, color=colour, alpha=0.25, linewidth=0.7)
            window = max(1, len(values) // 50)
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            loss_ax.plot(steps[window - 1 :], smooth, color=colour, label=label)
        if "test_accuracy" in metrics:
            steps, values = metrics["test_accuracy"]
            accuracy_ax.plot(steps, values, "o-", color=colour, label=label)
    loss_ax.set(xlabel="step", ylabel="train loss (batch; line: moving average)", yscale="log")
    accuracy_ax.set(xlabel="step (end of epoch)", ylabel="test accuracy")
    for ax in (loss_ax, accuracy_ax):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a run without test accuracy draws nothing there
            ax.legend(fontsize=8)
    return figure


def group_curves_figure(curves: GroupCurves) -> Figure:
    """Each group's mean over the steps with its 95% band, its single runs faint behind it."""
    figure = _figure(8, 4.5)
    ax = figure.subplots()
    for index, curve in enumerate(curves.curves):
        colour = f"C{index}"
        for steps, values in curve.runs.values():
            ax.plot(steps, values, color=colour, alpha=0.18, linewidth=0.7)
        ax.fill_between(curve.steps, curve.low, curve.high, color=colour, alpha=0.25, linewidth=0)
        ax.plot(curve.steps, curve.mean, color=colour, label=f"{curve.label} (n={int(curve.n.max()) if len(curve.n) else 0})")
    ax.set(xlabel="step", ylabel=curves.quantity)
    ax.set_title(
        f"{curves.experiment}: {curves.quantity} by {', '.join(curves.by)}; mean, 95% t band, single runs faint", fontsize=10
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title=", ".join(curves.by), title_fontsize=8)
    return figure


def sweep_figure(points: SweepPoints) -> Figure:
    """One point per run: a parameter on x (log when it spans decades), the objective on y, coloured by another
    parameter (a colour per value for text, a colormap for numbers)."""
    figure = _figure(7, 4.5)
    ax = figure.subplots()
    numeric_x = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in points.xs)
    categories = list(dict.fromkeys(map(str, points.xs)))
    xs = points.xs if numeric_x else [categories.index(str(x)) for x in points.xs]
    numeric_colour = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in points.colours)
    if points.colour_field and numeric_colour:
        drawn = ax.scatter(xs, points.ys, c=points.colours, cmap="viridis", s=28)
        figure.colorbar(drawn, ax=ax, label=points.colour_field)
    elif points.colour_field:
        for index, value in enumerate(dict.fromkeys(map(str, points.colours))):
            chosen = [i for i, c in enumerate(points.colours) if str(c) == value]
            ax.scatter([xs[i] for i in chosen], [points.ys[i] for i in chosen], s=28, color=f"C{index}", label=value)
    else:
        ax.scatter(xs, points.ys, s=28)
    shown = [(x if numeric_x else categories.index(str(x)), y) for x, y in zip(points.pruned_xs, points.pruned_ys)
             if numeric_x or str(x) in categories]  # fmt: skip
    if shown:
        ax.scatter(
            [x for x, _ in shown], [y for _, y in shown], s=28, facecolors="none", edgecolors="0.45",
            label=f"pruned ({len(shown)}): at the epoch it stopped",
        )  # fmt: skip
    if shown or (points.colour_field and not numeric_colour):
        ax.legend(fontsize=8, title=None if numeric_colour else points.colour_field, title_fontsize=8)
    if not numeric_x:
        ax.set_xticks(range(len(categories)), categories)
    elif points.log_x:
        ax.set_xscale("log")
    ax.set(xlabel=points.x_field, ylabel=points.y_name)
    ax.set_title(
        f"{points.experiment}: {points.y_name} against {points.x_field}, one point per finished run ({len(points.ids)})",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    return figure


def init_histogram_figure(kernel: np.ndarray, initializer: str, title: str) -> Figure:
    """Histogram of step-0 kernel weights with the initializer's theoretical density on top."""
    from scipy import stats  # heavy: loaded only when this is used

    init = get_initializer(initializer)
    shape = tuple(kernel.shape)
    theory = init.theory(shape)
    scale = init.scale(fans_of(shape))
    values = kernel.ravel().astype(np.float64)
    figure = _figure(7, 4)
    ax = figure.subplots()
    ax.hist(
        values, bins=60, density=init.distribution != "constant", color="C0", alpha=0.6, label=f"step-0 weights ({values.size})"
    )
    if init.distribution != "constant":
        low, high = min(theory.low, values.min()), max(theory.high, values.max())
        x = np.linspace(low - 0.05 * (high - low), high + 0.05 * (high - low), 400)
        if init.distribution == "uniform":
            density = stats.uniform(-scale, 2 * scale).pdf(x)
        elif init.distribution == "truncated_normal":
            density = stats.truncnorm(-2, 2, scale=scale).pdf(x)
        else:  # orthogonal: entries are close to N(0, variance) for large layers
            density = stats.norm(0, math.sqrt(theory.variance)).pdf(x)
        ax.plot(x, density, color="C3", linewidth=2, label=f"{initializer} density")
    ax.set(xlabel="weight", ylabel="density", title=title)
    ax.text(
        0.01,
        0.98,
        f"{init.parameter_name()} = {scale:.4g}\nvariance: sample {values.var():.4g}, theory {theory.variance:.4g}",
        transform=ax.transAxes,
        va="top",
        fontsize=8,
    )
    ax.legend(fontsize=8, loc="upper right")
    return figure


def correlate_layer(
    image: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None,
    stride: int,
    padding: Padding,
    dilation: int = 1,
    groups: int = 1,
) -> np.ndarray:
    """A conv layer's pre-activation output (out, H', W') for one (C, H, W) image, computed with scipy: a dilated
    kernel is correlated as the kernel with dilation - 1 zeros between its taps; filter o of a grouped conv sees the
    input channels of its group."""
    from scipy.signal import correlate2d  # heavy: loaded only when this is used

    image = image.astype(np.float64)
    out_channels, per_group = kernel.shape[:2]
    spread = spread_kernel(np.asarray(kernel, dtype=np.float64), dilation)
    if padding == "same":
        pads = [same_padding(image.shape[axis], spread.shape[axis + 1], stride) for axis in (1, 2)]
        image = np.pad(image, ((0, 0), pads[0], pads[1]))
    per_filter = out_channels // groups
    maps = np.stack(
        [
            sum(correlate2d(image[(o // per_filter) * per_group + c], k[c], mode="valid") for c in range(per_group))
            for o, k in enumerate(spread)
        ]
    )
    maps = maps[:, ::stride, ::stride]
    return maps + (0 if bias is None else bias[:, None, None])


def feature_maps_figure(image: np.ndarray, maps: np.ndarray, title: str) -> Figure:
    """The input image and each filter's feature map (on one shared scale)."""
    return _numbered_grid(maps, title, None, cell=1.3, first=image.mean(axis=0))


def _mosaic(windows: Sequence[np.ndarray], columns: int) -> np.ndarray:
    """(C, h, w) windows side by side (their mean over channels), ``columns`` to a row, split by NaN lines."""
    h, w = windows[0].shape[1:]
    rows = math.ceil(len(windows) / columns)
    out = np.full((rows * (h + 1) - 1, columns * (w + 1) - 1), np.nan)
    for index, window in enumerate(windows):
        r, c = divmod(index, columns)
        out[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = window.mean(axis=0)
    return out


def _image_grid(figure_or_subfigure, images: Sequence[np.ndarray], titles: Sequence[str], title: str) -> None:
    """Grey-scale images (pixel range 0 to 1, NaN drawn pale) in a grid, titled."""
    from matplotlib import colormaps  # heavy: loaded only when this is used

    cmap = colormaps["gray"].with_extremes(bad="#f0e6c8")
    rows, columns = _grid_shape(len(images))
    axes = figure_or_subfigure.subplots(rows, columns, squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if index < len(images):
            ax.imshow(images[index], cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(titles[index], fontsize=7, pad=2)
        else:
            ax.axis("off")
    figure_or_subfigure.suptitle(title, fontsize=10)


def patches_figure(found: LayerPatches, title: str) -> Figure:
    """Each filter's top test-image patches as one small mosaic (strongest first, row by row), filters in a grid."""
    top = max(len(p) for p in found.filters)
    columns = math.ceil(math.sqrt(top))
    mosaics = [_mosaic([p.pixels for p in patches], columns) for patches in found.filters]
    rows, grid_columns = _grid_shape(len(mosaics))
    figure = _figure(1.3 * grid_columns + 0.4, 1.3 * rows + 0.8)
    size = "x".join(map(str, found.field.size))
    _image_grid(
        figure,
        mosaics,
        [str(i) for i in range(len(mosaics))],
        f"{title}: each filter's {top} strongest test-image patches ({size} receptive field, {found.images} images searched)",
    )
    return figure


def preferred_inputs_figure(columns: Sequence[tuple[str, Sequence[PreferredInput]]], title: str) -> Figure:
    """Activation maximization's windows, one grid per step given (e.g. step 0 and the last step side by side)."""
    count = len(columns[0][1])
    rows, grid_columns = _grid_shape(count)
    figure = _figure((1.1 * grid_columns + 0.3) * len(columns), 1.1 * rows + 0.9)
    panels = figure.subfigures(1, len(columns), squeeze=False)[0]
    for panel, (label, found) in zip(panels, columns):
        _image_grid(panel, [p.pixels.mean(axis=0) for p in found], [f"{p.filter}: {p.response:.3g}" for p in found], label)
    figure.suptitle(title + " (filter: its response)", fontsize=10)
    return figure


def picture_suffixes(kind: str) -> set[str]:
    """The file suffixes a picture of ``kind`` can be written as (what matplotlib can write; .gif
    for evolution is an animation)."""
    from matplotlib.backend_bases import FigureCanvasBase  # heavy: loaded only when this is used

    static = {f".{name}" for name in FigureCanvasBase.get_supported_filetypes()} - {".raw", ".rgba"}
    return static | {".gif"} if kind == "evolution" else static  # the animation is written with Pillow


def check_picture_request(kind: str, path: Path) -> None:
    """Refuse an unknown picture kind, or a ``--out`` that cannot be written, before drawing."""

    if kind not in KINDS:
        raise unknown_name("picture kind", kind, KINDS)
    check_output_path(path, "--out", picture_suffixes(kind))


def save(figure: Figure, path: Path) -> None:
    """Write a figure as PNG (or any format matplotlib infers from the suffix)."""
    figure.savefig(path)


def png_bytes(figure: Figure) -> bytes:
    """A figure as PNG bytes (for embedding in a report)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
