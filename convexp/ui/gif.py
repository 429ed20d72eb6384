"""The filter grid of a layer as an animated GIF (the run page's "make GIF"), bounded in the work one request does."""

from __future__ import annotations

import io

import numpy as np

from convexp.analysis import distributions
from convexp.analysis.colour import sees_colour_image
from convexp.analysis.pictures import evolution_gif
from convexp.analysis.selection import filter_count
from convexp.store import RunRecord, Store
from convexp.ui.data import BadRequest, parse_step, recorded_steps

#: Frames a GIF has unless asked for fewer (or the layer has so many filters that :data:`MAX_GIF_CELLS` allows fewer).
GIF_FRAMES = 40


#: The most filter cells one GIF draws, filters x frames (about 25 ms each): the default frames of a layer with many
#: filters are fewer, and a request for more is refused, so one request cannot hold the server for minutes.
MAX_GIF_CELLS = 1280


def filters_gif(
    store: Store, run: RunRecord, layer: str, first: str | None, last: str | None, frames: int | None = None
) -> bytes:
    """An animated GIF of a layer's filter grid over the recorded steps from ``first`` to ``last`` (step numbers,
    ``first`` or ``last``), at most ``frames`` snapshots evenly spread (default :data:`GIF_FRAMES`, fewer for a layer
    with many filters: :data:`MAX_GIF_CELLS`), every frame on one colour scale (as ``convexp plot evolution --out
    x.gif`` draws it)."""

    filters = _filter_count(store, run, layer)
    most = MAX_GIF_CELLS // filters
    if most < 2:
        raise BadRequest(f"{layer} has {filters} filters: a GIF draws at most {MAX_GIF_CELLS} filter cells (filters x frames)")
    if frames is None:
        frames = min(GIF_FRAMES, most)
    if not 2 <= frames <= min(200, most):
        raise BadRequest(
            f"frames must be from 2 to {min(200, most)} for {layer} ({filters} filters; a GIF draws at most "
            f"{MAX_GIF_CELLS} filter cells, filters x frames), not {frames}"
        )
    steps = recorded_steps(store, run, layer)
    bounds = [parse_step(first or "first"), parse_step(last or "last")]
    start, stop = (b if isinstance(b, int) else steps[0] if b == "first" else steps[-1] for b in bounds)
    if stop < start:
        raise BadRequest(f"the GIF's last step ({stop}) comes before its first ({start})")
    recorded = [s for s in steps if start <= s <= stop]
    if not recorded:
        raise BadRequest(
            f"{layer} of run {run.id} has no snapshot from step {start} to {stop}; it has steps {steps[0]} to {steps[-1]}"
        )
    steps = distributions.sampled_steps(recorded, frames) if len(recorded) > 1 else recorded
    kernels = np.stack([s.kernel_array for s in store.snapshots_at(run.id, layer, steps)])
    buffer = io.BytesIO()

    rgb = sees_colour_image(run.spec, layer)
    evolution_gif(kernels, np.array(steps), f"run {run.id} {layer}", buffer, frames=len(steps), rgb=rgb)
    return buffer.getvalue()


def _filter_count(store: Store, run: RunRecord, layer: str) -> int:
    """How many filters ``layer`` of ``run`` has; a layer recorded without filters (batch_norm's statistics) is refused."""

    recorded_steps(store, run, layer)  # a layer not recorded: 404
    return filter_count(store, run.id, layer)
