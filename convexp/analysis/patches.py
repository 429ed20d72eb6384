"""Which test-image patches drive each filter hardest: the classic answer to "what does a conv2 filter detect?".

For every filter of a conv layer, each test image's strongest response anywhere in the layer's
output is found (see :mod:`convexp.analysis.network`), and the ``top`` images with the
strongest responses are kept, each with the receptive-field patch of the input that produced it.
One patch per image, so a filter's top list shows different images, not one stroke shifted by a
pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convexp.analysis import TOP_PATCHES
from convexp.analysis.network import ReceptiveField, RecordedNetwork, receptive_field, response_batches
from convexp.errors import ConvexpError
from convexp.model.activations import apply
from convexp.model.layers import Conv


@dataclass(frozen=True)
class Patch:
    """One of a filter's strongest responses: which test image, where, how strong, and the input window it saw."""

    image: int
    label: int
    row: int  # unit position in the layer's output
    col: int
    top: int  # the window's first input row and column (negative where it reaches into padding)
    left: int
    response: float  # the layer's output before its activation function
    activation: float  # after it: what the next layer receives (max(response, 0) for ReLU, tanh(response) ...)
    pixels: np.ndarray  # (C, size, size); zero outside the image


@dataclass(frozen=True)
class LayerPatches:
    """The top patches of every filter of a layer at one step."""

    run_id: int
    layer: str
    step: int
    field: ReceptiveField
    images: int  # how many test images were searched
    filters: list[list[Patch]]


def crop(image: np.ndarray, top: int, left: int, size: tuple[int, int]) -> np.ndarray:
    """The (C, size) window of a (C, H, W) image at (top, left), zero where it leaves the image."""
    c, h, w = image.shape
    out = np.zeros((c, *size), dtype=image.dtype)
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + size[0], h), min(left + size[1], w)
    if r0 < r1 and c0 < c1:
        out[:, r0 - top : r1 - top, c0 - left : c1 - left] = image[:, r0:r1, c0:c1]
    return out


def top_patches(network: RecordedNetwork, images: np.ndarray, labels: np.ndarray, top: int = TOP_PATCHES) -> LayerPatches:
    """Each filter's ``top`` strongest responses over ``images`` (N, C, H, W), one per image, strongest first."""
    if top < 1:
        raise ConvexpError(f"--top must be at least 1, not {top}")
    if len(images) == 0:
        raise ConvexpError("no test images to search")
    n, filters, w = len(images), network.filters, network.target.output_shape[2]
    where = np.empty((n, filters), dtype=np.intp)  # each image's strongest unit per filter
    best = np.empty((n, filters), dtype=np.float32)  # and its response
    # only each image's strongest unit is kept, not every response map (GBs for a test set's first layer)
    start = 0
    for maps in response_batches(network, images):
        flat = maps.reshape(len(maps), filters, -1)
        stop = start + len(flat)
        where[start:stop] = flat.argmax(axis=2)
        best[start:stop] = np.take_along_axis(flat, where[start:stop, :, None], axis=2)[..., 0]
        start = stop
    field = receptive_field(network.layers)
    target = network.target.layer
    function = target.activation if isinstance(target, Conv) else "none"
    keep = min(top, n)
    result = []
    for f in range(filters):
        order = np.argsort(-best[:, f], kind="stable")[:keep]
        patches = []
        for index in order:
            row, col = divmod(int(where[index, f]), w)
            first_row, first_col = field.window(row, col)
            response = float(best[index, f])
            patches.append(
                Patch(
                    int(index),
                    int(labels[index]),
                    row,
                    col,
                    first_row,
                    first_col,
                    response,
                    float(apply(function, np.array([response]))[0]),
                    crop(images[index], first_row, first_col, field.size),
                )
            )
        result.append(patches)
    return LayerPatches(network.run_id, network.target.name, network.step, field, n, result)


def patches_dict(found: LayerPatches) -> dict:
    """The top patches as plain data (JSON): positions and responses, without the pixels."""
    return {
        "run": found.run_id,
        "layer": found.layer,
        "step": found.step,
        "images_searched": found.images,
        "receptive_field": {"size": list(found.field.size), "jump": list(found.field.jump), "offset": list(found.field.offset)},
        "response": "the layer's output before its activation function (w.x + b) at the unit's position; "
        "activation: after it (what the next layer receives)",
        "filters": [
            {
                "filter": f,
                "patches": [
                    {
                        "rank": rank,
                        "image": p.image,
                        "label": p.label,
                        "row": p.row,
                        "col": p.col,
                        "top": p.top,
                        "left": p.left,
                        "response": p.response,
                        "activation": p.activation,
                    }
                    for rank, p in enumerate(patches)
                ],
            }
            for f, patches in enumerate(found.filters)
        ],
    }
