"""What ``convexp plot`` and the report draw: a picture kind of recorded runs, each fetched from the store and
drawn by :mod:`convexp.analysis.pictures`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from convexp.analysis import TOP_PATCHES
from convexp.analysis.colour import sees_colour_image
from convexp.analysis.maximize import maximize_layer
from convexp.analysis.network import load_network
from convexp.analysis.patches import top_patches
from convexp.analysis.pictures import (
    KINDS,
    correlate_layer,
    feature_maps_figure,
    filter_evolution_figure,
    filter_grid_figure,
    init_histogram_figure,
    patches_figure,
    preferred_inputs_figure,
    training_curves_figure,
)
from convexp.analysis.recorded_plan import plan_recorded
from convexp.analysis.selection import snapshot_index
from convexp.datasets import load_dataset
from convexp.errors import ConvexpError, unknown_name
from convexp.model.activations import apply
from convexp.model.layers import Conv

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from convexp.store import RunRecord, Store


@dataclass(frozen=True)
class PictureOptions:
    """What to draw: layer, step, filters, and which test image (for feature maps)."""

    layer: str = "conv1"
    step: int | str = "last"
    filters: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7)
    image_index: int = 0
    data_dir: Path | None = None
    top: int = TOP_PATCHES


def draw(kind: str, store: Store, runs: Sequence[RunRecord], options: PictureOptions = PictureOptions()) -> Figure:
    """The picture ``kind`` (one of :data:`KINDS`) for the given runs, from the store."""

    if kind not in KINDS:
        raise unknown_name("picture kind", kind, KINDS)
    if kind in ("summary", "sweep"):
        raise ConvexpError(
            "summary and sweep are drawn from an experiment's runs: convexp plot summary EXPERIMENT --by FIELD, "
            "convexp plot sweep EXPERIMENT --x FIELD"
        )
    if kind == "curves":
        return training_curves_figure([(f"run {r.id} {r.experiment}:{r.backend}", _curves(store, r.id)) for r in runs])
    run = runs[0]
    name = f"run {run.id} {run.experiment}:{run.backend} {options.layer}"
    if kind == "patches":
        return _patches(store, run, options, name)
    if kind == "maximize":
        return _maximize(store, run, options, name)
    series = store.kernel_series(run.id, options.layer)
    if kind == "filters":
        index = snapshot_index(series, options.step)
        rgb = sees_colour_image(run.spec, options.layer)
        return filter_grid_figure(series.kernels[index], f"{name}, step {series.steps[index]}", rgb=rgb)
    if kind == "evolution":
        out_channels = series.kernels.shape[1]
        filters = [f for f in options.filters if f < out_channels] or [0]
        return filter_evolution_figure(series.kernels, series.steps, filters, f"{name}: filters {filters} during training")
    if kind == "histogram":
        return init_histogram_figure(series.kernels[0], run.kernel_initializer, f"{name} at step 0: {run.kernel_initializer}")
    return _feature_maps(store, run, series, options, name)


def _curves(store: Store, run_id: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    metrics = store.metrics(run_id, ["train_loss", "test_accuracy"])
    curves = {}
    for metric in ("train_loss", "test_accuracy"):
        rows = [(m.step, m.value) for m in metrics if m.name == metric]
        if rows:
            curves[metric] = (np.array([r[0] for r in rows]), np.array([r[1] for r in rows]))
    return curves


def _patches(store, run, options: PictureOptions, name: str) -> Figure:

    network = load_network(store, run, options.layer, options.step)
    data = load_dataset(run.dataset, options.data_dir)
    return patches_figure(top_patches(network, data.test_images, data.test_labels, options.top), f"{name}, step {network.step}")


def _maximize(store, run, options: PictureOptions, name: str) -> Figure:

    chosen = load_network(store, run, options.layer, options.step)
    first = load_network(store, run, options.layer, "first")
    columns = [(f"step {first.step}", maximize_layer(first))]
    if chosen.step != first.step:
        columns.append((f"step {chosen.step}", maximize_layer(chosen)))
    return preferred_inputs_figure(columns, f"{name}: the input window each filter responds to most")


def _feature_maps(store, run, series, options: PictureOptions, name: str) -> Figure:

    try:
        planned_layers = plan_recorded(run.spec)
    except ValueError as exc:
        raise ConvexpError(f"run {run.id}: {exc}") from None
    planned = next((p for p in planned_layers if p.name == options.layer), None)
    if planned is None or planned.index != 1 or not isinstance(planned.layer, Conv):
        raise ConvexpError(f"feature maps are drawn for the first layer, a conv layer; '{options.layer}' is not it")
    data = load_dataset(run.dataset, options.data_dir)
    if not 0 <= options.image_index < len(data.test_labels):
        raise ConvexpError(f"--image must be between 0 and {len(data.test_labels) - 1}")
    image = data.test_images[options.image_index]
    index = snapshot_index(series, options.step)
    biases = None if series.biases is None else series.biases[index]
    layer = planned.layer
    maps = correlate_layer(image, series.kernels[index], biases, layer.stride, layer.padding, layer.dilation, layer.groups)
    if planned.layer.activation != "none":
        maps = apply(planned.layer.activation, maps)
    label = int(data.test_labels[options.image_index])
    return feature_maps_figure(
        image, maps, f"{name}, step {series.steps[index]}: test image {options.image_index} (label {label})"
    )
