"""Animated GIFs of a layer's filter grid over training, drawn straight into palette images with numpy and Pillow.

A frame is the filter grid of one snapshot: each weight a square of ``scale`` pixels, filters numbered, one
colour scale for every frame (the largest |weight| drawn over all of them: a filter that pales really shrank),
and a colour bar labelled with that limit. Drawing into a fixed palette rather than through matplotlib makes a
frame cost microseconds, not most of a second, and keeps colours exact: the weight ``w`` is palette entry
``round((w / limit + 1) / 2 * (LEVELS - 1))`` of the :data:`~convexp.analysis.colour.CMAP` colormap. Filters
over a colour image are drawn as colours (:func:`~convexp.analysis.colour.as_colours`) and Pillow picks their
palette.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from convexp.analysis.colour import as_colours, colormap_rgb

if TYPE_CHECKING:
    from PIL import Image as PILImage

#: Colormap levels in a frame's palette; the palette's last entries are the paper and the ink.
LEVELS = 250
PAPER, INK = LEVELS, LEVELS + 1
#: About how many pixels a filter is drawn across, and the space between and around filters.
CELL_PIXELS, GAP, MARGIN = 48, 6, 8
LABEL, TITLE = 12, 18
BAR_WIDTH, BAR_TEXT = 14, 56
#: How long each frame shows, milliseconds.
FRAME_MS = 200


def filters_2d(kernels: np.ndarray) -> np.ndarray:
    """(..., out, in, kh, kw) -> (..., out, kh, kw): the filter itself for one input channel, else the mean over
    the input channels (what the filter does to an input that is the same on every channel)."""
    return kernels.mean(axis=-3)


def colour_limit(kernels: np.ndarray, rgb: bool = False) -> float:
    """The one colour scale of a picture of ``kernels`` (any leading axes, e.g. frames): the largest |weight| drawn,
    after the mean over input channels unless drawn in colour; 1.0 for all-zero filters."""
    drawn = kernels if rgb else filters_2d(kernels)
    return float(np.abs(drawn).max()) or 1.0


@dataclass(frozen=True)
class GridLayout:
    """Where a frame draws what: filter ``i``'s weight (row, col) fills the ``scale``-pixel square at
    ``cell(i)`` + (col, row) * scale."""

    count: int
    columns: int
    kh: int
    kw: int
    scale: int
    width: int
    height: int

    @classmethod
    def for_filters(cls, count: int, kh: int, kw: int) -> GridLayout:
        """The layout of ``count`` filters of kh x kw in a near-square grid."""
        columns = math.ceil(math.sqrt(count))
        rows = math.ceil(count / columns)
        scale = max(2, round(CELL_PIXELS / max(kh, kw)))
        grid_width = columns * (kw * scale + GAP) - GAP
        grid_height = rows * (LABEL + kh * scale + GAP) - GAP
        width = max(2 * MARGIN + grid_width + GAP + BAR_WIDTH + BAR_TEXT, 260)
        height = MARGIN + 2 * TITLE + max(grid_height, 120) + MARGIN
        return cls(count, columns, kh, kw, scale, width, height)

    def cell(self, index: int) -> tuple[int, int]:
        """The top-left pixel (x, y) of filter ``index``'s weights."""
        row, column = divmod(index, self.columns)
        x = MARGIN + column * (self.kw * self.scale + GAP)
        y = MARGIN + 2 * TITLE + row * (LABEL + self.kh * self.scale + GAP) + LABEL
        return x, y

    def bar(self) -> tuple[int, int, int]:
        """The colour bar's left x, top y and height (its top is +limit, its bottom -limit)."""
        return self.width - MARGIN - BAR_TEXT - BAR_WIDTH, MARGIN + 2 * TITLE, self.height - 2 * MARGIN - 2 * TITLE


def palette() -> list[int]:
    """The flat RGB palette of a frame: :data:`LEVELS` colours of the colormap from -limit to +limit, then paper
    (white) and ink (black)."""
    return [*colormap_rgb(LEVELS).reshape(-1).tolist(), 255, 255, 255, 0, 0, 0]


def levels(weights: np.ndarray, limit: float) -> np.ndarray:
    """The palette entries of ``weights`` on the scale ±``limit``."""
    return np.round((np.clip(weights / limit, -1.0, 1.0) + 1.0) / 2.0 * (LEVELS - 1)).astype(np.uint8)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError, ImportError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def _background(layout: GridLayout, note: str, limit: float, rgb: bool) -> np.ndarray:
    """A frame without its filters and step: the title, the filter numbers and the colour bar with its limit."""
    from PIL import Image, ImageDraw

    frame = Image.new("P", (layout.width, layout.height), PAPER)
    draw = ImageDraw.Draw(frame)
    draw.fontmode = "1"  # palette frames: ink or paper, no blended edges
    small = _font(10)
    draw.text((MARGIN, MARGIN + TITLE), note, fill=INK, font=small)
    for index in range(layout.count):
        x, y = layout.cell(index)
        draw.text((x, y - LABEL), str(index), fill=INK, font=small)
    left, top, height = layout.bar()
    pixels = np.array(frame)
    if rgb:
        return pixels
    pixels[top : top + height, left : left + BAR_WIDTH] = levels(np.linspace(limit, -limit, height), limit)[:, None]
    frame = Image.fromarray(pixels, mode="P")
    draw = ImageDraw.Draw(frame)
    draw.fontmode = "1"
    for y, text in ((top, f"+{limit:.3g}"), (top + height // 2 - 5, "0"), (top + height - 11, f"-{limit:.3g}")):
        draw.text((left + BAR_WIDTH + 4, y), text, fill=INK, font=small)
    return np.array(frame)


def filter_frames(
    kernels: np.ndarray, steps: np.ndarray, title: str, rgb: bool = False
) -> tuple[list[PILImage.Image], GridLayout, float]:
    """The frames of ``kernels`` (snapshots, out, in, kh, kw) at ``steps`` as palette images (with ``rgb``, each with
    its own palette of the colours drawn), their layout and the one colour limit they share."""
    from PIL import Image, ImageDraw

    limit = colour_limit(kernels, rgb)
    count, _, kh, kw = kernels.shape[1:]
    layout = GridLayout.for_filters(count, kh, kw)
    if rgb:
        note = f"red, green, blue weights as colours: grey = 0, full = ±{limit:.3g}"
    else:
        note = "mean over input channels" if kernels.shape[2] > 1 else "weights"
    background = _background(layout, note, limit, rgb)
    shared = palette()
    font = _font(13)
    frames = []
    for snapshot, step in zip(kernels, steps):
        if rgb:
            pixels = np.repeat(np.where(background == INK, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
            cells = np.round(as_colours(snapshot, limit) * 255).astype(np.uint8)
        else:
            pixels = background.copy()
            cells = levels(filters_2d(snapshot), limit)
        for index, cell in enumerate(cells):
            x, y = layout.cell(index)
            grown = np.repeat(np.repeat(cell, layout.scale, axis=0), layout.scale, axis=1)
            pixels[y : y + grown.shape[0], x : x + grown.shape[1]] = grown
        image = Image.fromarray(pixels, mode="RGB" if rgb else "P")
        if not rgb:
            image.putpalette(shared)
        draw = ImageDraw.Draw(image)
        draw.fontmode = "1"
        draw.text((MARGIN, MARGIN), f"{title}, step {int(step)}", fill=(0, 0, 0) if rgb else INK, font=font)
        # colour frames get their own palette: octree is ten times faster than the GIF writer's own conversion
        frames.append(image.quantize(256, method=Image.Quantize.FASTOCTREE) if rgb else image)
    return frames, layout, limit


def write_gif(frames: list[PILImage.Image], path: Path | IO[bytes]) -> None:
    """Frames as a looping animated GIF, into a file path or a binary file object."""
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=FRAME_MS, loop=0, optimize=False)
