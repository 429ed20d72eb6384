"""The filter GIF (convexp.analysis.animation): every frame on the scale of the largest |weight| it draws over all
frames (after the mean over input channels), each weight the colormap's colour at its place on that scale."""

from __future__ import annotations

import io

import numpy as np
import pytest

from convexp.analysis.animation import LEVELS, filter_frames, write_gif


def gif_frames(data: bytes) -> list[np.ndarray]:
    """The frames of a GIF as RGB arrays, decoded by Pillow."""
    from PIL import Image, ImageSequence

    return [np.asarray(frame.convert("RGB")).astype(int) for frame in ImageSequence.Iterator(Image.open(io.BytesIO(data)))]


def assert_gif_on_one_scale(data: bytes, kernels: np.ndarray, layout) -> None:
    """Each weight of each frame of ``data`` (a GIF of ``kernels``: frames, out, in, kh, kw) is drawn in RdBu_r's colour
    at (w / L + 1) / 2 with L the largest |mean over input channels| of any frame, to a level of the palette."""
    from matplotlib import colormaps

    drawn = kernels.astype(np.float64).mean(axis=2)
    limit = np.abs(drawn).max()
    frames = gif_frames(data)
    assert len(frames) == len(kernels)
    half = layout.scale // 2
    for frame, filters in zip(frames, drawn):
        for index, weights in enumerate(filters):
            x, y = layout.cell(index)
            for (row, col), w in np.ndenumerate(weights):
                place = round((w / limit + 1) / 2 * (LEVELS - 1)) / (LEVELS - 1)
                expected = np.round(np.asarray(colormaps["RdBu_r"](place)[:3]) * 255)
                pixel = frame[y + row * layout.scale + half, x + col * layout.scale + half]
                assert pixel.tolist() == pytest.approx(expected.tolist(), abs=1), (index, row, col, w, limit)


def test_a_gif_of_many_filters_over_two_channels_is_drawn_on_the_largest_weight_of_its_frames():
    rng = np.random.default_rng(3)
    growth = np.linspace(0.05, 1.0, 6)[:, None, None, None, None]
    kernels = (rng.normal(size=(6, 10, 2, 3, 3)) * growth).astype(np.float32)  # the last frame's weights are the largest
    frames, layout, limit = filter_frames(kernels, np.arange(6) * 50, "run 1 conv2")
    assert limit == pytest.approx(np.abs(kernels.astype(np.float64).mean(axis=2)).max(), rel=1e-6)
    buffer = io.BytesIO()
    write_gif(frames, buffer)
    assert_gif_on_one_scale(buffer.getvalue(), kernels, layout)
    # the first frame's filters are a twentieth of the last's: pale, not saturated as on a per-frame scale
    first = gif_frames(buffer.getvalue())[0]
    x, y = layout.cell(0)
    cell = first[y : y + 3 * layout.scale, x : x + 3 * layout.scale]
    assert np.abs(cell - 255).max() < 60


def test_colour_filters_are_drawn_as_colours_on_one_limit():
    from convexp.analysis.colour import as_colours

    rng = np.random.default_rng(4)
    kernels = rng.normal(size=(3, 4, 3, 5, 5)).astype(np.float32)
    frames, layout, limit = filter_frames(kernels, np.arange(3), "run 2 conv1", rgb=True)
    assert limit == pytest.approx(np.abs(kernels).max())
    buffer = io.BytesIO()
    write_gif(frames, buffer)
    for frame, snapshot in zip(gif_frames(buffer.getvalue()), kernels):
        colours = np.round(as_colours(snapshot.astype(np.float64), limit) * 255)
        x, y = layout.cell(3)
        pixel = frame[y + 2 * layout.scale + 1, x + 4 * layout.scale + 1]
        assert pixel.tolist() == pytest.approx(colours[3, 2, 4].tolist(), abs=12)  # a 256-colour palette per frame
