"""Choosing runs and snapshots by what users type: ``12``, ``quickstart:numpy``, ``last``."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from convexp.errors import ConvexpError, did_you_mean
from convexp.store import KernelSeries, RunRecord, Store


def select_run(store: Store, selector: str) -> RunRecord:
    """A run by id (``12``) or by ``experiment:backend`` / ``experiment`` (the latest such run, finished ones first)."""
    selector = selector.strip()
    if selector.isdigit():
        return store.get_run(int(selector))
    experiment, _, backend = selector.partition(":")
    runs = store.list_runs()
    matching = [r for r in runs if r.experiment == experiment and (not backend or r.backend == backend)]
    if not matching:
        experiments = sorted({r.experiment for r in runs})
        backends = sorted({r.backend for r in runs if r.experiment == experiment})
        hint = (
            did_you_mean(experiment, experiments) if experiment not in experiments else f" (its backends: {', '.join(backends)})"
        )
        raise ConvexpError(f"no run matches '{selector}' in {store.location}{hint}; use a run id or EXPERIMENT:BACKEND")
    finished = [r for r in matching if r.status == "finished"]
    return (finished or matching)[-1]


def select_runs(store: Store, selectors: list[str]) -> list[RunRecord]:
    """Each selector's run, in the order given."""
    return [select_run(store, s) for s in selectors]


def snapshot_index(series: KernelSeries, step: int | str = "last") -> int:
    """Index into a series of the snapshot at ``step`` (an int, or ``first``/``last``)."""
    return step_index([int(s) for s in series.steps], step, series.run_id, series.layer)


def step_index(steps: Sequence[int], step: int | str | None, run_id: int, layer: str) -> int:
    """Index into a layer's recorded ``steps`` of ``step`` (an int, or ``first``/``last``); raises naming what was recorded."""
    if not steps:
        raise ConvexpError(f"run {run_id} has no snapshots of {layer}")
    if step in ("last", None):
        return len(steps) - 1
    if step == "first":
        return 0
    try:
        wanted = int(step)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConvexpError(f"step must be a number, 'first' or 'last', not '{step}'") from None
    index = bisect.bisect_left(steps, wanted)
    if index == len(steps) or steps[index] != wanted:
        shown = ", ".join(map(str, steps[:5])) + (f", ..., {steps[-1]}" if len(steps) > 5 else "")
        raise ConvexpError(f"run {run_id} has no snapshot of {layer} at step {wanted} (recorded steps: {shown})")
    return index


def parse_step(text: str | None) -> int | str:
    """``--step`` as given: a number, or ``first``/``last``."""
    if text is None or text in ("first", "last"):
        return text or "last"
    if text.lstrip("-").isdigit():
        return int(text)
    raise ConvexpError(f"--step must be a number, 'first' or 'last', not '{text}'")


def parse_indices(text: str, what: str) -> tuple[int, ...]:
    """ "0,1,5" as filter indices; raises naming the option on anything else."""
    try:
        indices = tuple(int(part) for part in text.split(","))
    except ValueError:
        indices = ()
    if not indices or min(indices) < 0:
        raise ConvexpError(f"{what}: '{text}' is not a list of filter numbers (e.g. 0,1,2,3)")
    return indices


def default_layer(store: Store, run: RunRecord) -> str:
    """The conv layer a command looks at when none is named: ``conv1`` where the run recorded it (convexp's own
    runs), else the first conv layer it recorded, in the model's order (a tracked ``nn.Sequential``'s ``0``, a
    Keras model's ``conv2d``). Raises naming the run when it recorded none."""
    recorded = store.snapshot_layers(run.id)
    if not recorded:
        raise ConvexpError(f"run {run.id} recorded no conv kernels: there is no layer to look at")
    if "conv1" in recorded:
        return "conv1"
    in_order = [name for name in (run.spec.get("kernel_shapes") or {}) if name in recorded]
    return (in_order or recorded)[0]


def filter_count(store: Store, run_id: int, layer: str) -> int:
    """How many filters ``layer`` of a run has (its kernels' first axis). A layer recorded without filters (a
    batch_norm layer's statistics) is refused with the layers that have them: a picture or a GIF of filters
    needs a conv kernel. A layer not recorded at all is left to the reader that asks for its snapshots."""
    shapes = {s.layer: s.shape for s in store.snapshot_summary(run_id)}
    shape = shapes.get(layer)
    if shape is None or len(shape) == 4:
        return shape[0] if shape else 0
    with_filters = ", ".join(name for name, s in shapes.items() if len(s) == 4) or "none"
    raise ConvexpError(
        f"run {run_id}: {layer} holds no filters (its rows have shape {list(shape)}: a batch_norm layer's statistics); "
        f"layers with filters: {with_filters}"
    )
