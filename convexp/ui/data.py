"""What the pages of ``convexp ui`` show, as plain data read from the store (each page's JSON).

Every function takes an open (read-only) :class:`~convexp.store.Store` and returns lists and
dicts ready for JSON; kernels are the exception, handed out as the stored float32 bytes.
Nothing here reads a whole table: a step of a layer is one indexed row, a run's metrics can
be read from a step on, and the runs table refreshes only the rows that can still change.
"""

from __future__ import annotations

import base64
import csv
import functools
import io
import json
import math
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from convexp.analysis import distributions
from convexp.analysis.colour import sees_colour_image
from convexp.analysis.compare import compare_runs, comparison_dict
from convexp.analysis.filters import analyse_layer
from convexp.analysis.kernels import relative_drift
from convexp.analysis.network import load_network
from convexp.analysis.parameters import flatten, resolved_spec, run_parameters, run_spec, shown_value, varying_fields
from convexp.analysis.patches import patches_dict, top_patches
from convexp.analysis.plan_text import filters_sentence
from convexp.analysis.selection import step_index
from convexp.analysis.summary import describe_run
from convexp.datasets import Dataset
from convexp.errors import ConvexpError
from convexp.experiments.estimate_disk import estimate_run
from convexp.store import RunRecord, Store, StoredSnapshot
from convexp.store.records import MAX_ID

if TYPE_CHECKING:
    from convexp.experiments.spec import RunSpec

#: The most points a filter's trajectory is drawn with (steps are thinned evenly beyond it).
TRAJECTORY_POINTS = 600
#: The most snapshots one kernels request hands out (playing fetches ahead in chunks).
MAX_SNAPSHOTS_PER_REQUEST = 256


class NotFound(ConvexpError):
    """A run, layer, filter or step that the database does not hold (HTTP 404)."""


class BadRequest(ConvexpError):
    """A request whose parameters are malformed (HTTP 400)."""


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(sep=" ", timespec="seconds")


def number(value: float | None) -> float | None:
    """A float JSON can carry (NaN and infinities become None)."""
    return None if value is None or not math.isfinite(value) else value


def planned_steps(spec: RunSpec | None) -> int | None:
    """The updates a run of this spec makes if it finishes (None for a run recorded from your own loop)."""

    if spec is None:
        return None
    try:
        return estimate_run(spec).steps
    except (ValueError, ConvexpError):
        return None


@functools.lru_cache(maxsize=8192)
def _spec_facts(spec_json: str) -> tuple[int | None, dict[str, Any]]:
    """A recorded spec's planned steps and its fields flattened with today's defaults, worked out once per
    distinct spec (the runs of a grid share most of theirs; a sweep's trials each have their own, so the cache
    holds thousands: a table of more runs than it holds would work them all out again on every load); callers
    must not change the dict."""
    spec = json.loads(spec_json)
    model = run_spec(spec)
    return planned_steps(model), flatten(resolved_spec(spec, model))


def run_row(run: RunRecord, now: datetime | None = None) -> dict[str, Any]:
    """A run as a row of the runs table: the columns ``convexp runs`` prints, plus the planned epochs and
    steps; while it trains, ``seconds`` is the time so far and ``seconds_left`` a guess from its pace."""
    status = run.shown_status(now)
    planned, spec_fields = _spec_facts(json.dumps(run.spec, default=str))
    seconds, left = run.seconds, None
    if run.finished_at is None and status in ("running", "stale"):
        seconds = ((now or datetime.now(timezone.utc).replace(tzinfo=None)) - run.started_at).total_seconds()
        if status == "running" and planned and run.steps_completed:
            left = seconds * (planned - run.steps_completed) / run.steps_completed
    return {
        "id": run.id,
        "name": run.name,
        "tags": list(run.tags or ()),
        "notes": run.notes,
        "experiment": run.experiment,
        "backend": run.backend,
        "status": status,
        "attempts": run.attempts,
        "epochs": run.epochs_completed,
        "epochs_planned": run.spec.get("epochs"),
        "steps": run.steps_completed,
        "steps_planned": planned,
        "test_accuracy": number(run.test_accuracy),
        "seconds": None if seconds is None else round(seconds, 2),
        "seconds_left": None if left is None else round(left, 1),
        "started": _time(run.started_at),
        "ended": _time(run.finished_at),
        "message": run.message,
        "dataset": run.dataset,
        "seed": run.seed,
        "kernel_initializer": run.kernel_initializer,  # the concrete one; params["initializer"] is what was asked for
        # its parameters as `convexp runs` and `summary` name them (the description aside: long, and not a setting)
        "params": {k: shown_value(v) for k, v in run_parameters(run, spec_fields=spec_fields).items() if k != "description"},
    }


def runs_table(
    store: Store, experiment: str | None = None, backend: str | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    """Every run as a row (filters as ``convexp runs`` takes them)."""
    return [run_row(r) for r in store.list_runs(experiment=experiment, backend=backend, status=status)]


def runs_update(store: Store, live_ids: list[int], after_id: int) -> list[dict[str, Any]]:
    """The rows a live runs table must refresh: the runs it shows as queued or running, and runs newer than it knows."""
    return [run_row(r) for r in store.changed_runs(live_ids, after_id)]


def get_run(store: Store, run_id: str | int) -> RunRecord:
    """A run by its id as typed in a URL; :class:`NotFound` for anything else."""
    text = str(run_id)
    if not text.isdigit():
        raise NotFound(f"no run '{text}': a run id is a whole number")
    if int(text) > MAX_ID:  # more than the database's integers hold: no such run, not a database error
        raise NotFound(f"no run {text}")
    try:
        return store.get_run(int(text))
    except ConvexpError as exc:
        raise NotFound(str(exc)) from None


def run_details(store: Store, run: RunRecord) -> dict[str, Any]:
    """Everything the run page shows but the kernels and metrics: ``convexp show --format json``, as the row too."""
    description = describe_run(store, run)
    details = description.as_dict()
    details.update(started_at=_time(run.started_at), finished_at=_time(run.finished_at), row=run_row(run))
    details["conv_layers"] = [
        {"layer": s.layer, "shape": list(s.shape), "count": s.count, "first_step": s.first_step, "last_step": s.last_step}
        for s in description.snapshots
        if len(s.shape) == 4  # filters; a batch_norm layer's (4, C) statistics are not drawn
    ]
    details["siblings"] = siblings(store, run)
    details["filters_sentence"] = None
    if description.plan is not None:
        details["filters_sentence"] = filters_sentence(description.plan)
    return details


def siblings(store: Store, run: RunRecord) -> list[dict[str, Any]]:
    """The other runs of the run's experiment, each labelled by the parameters that vary among them
    (what the run page offers to overlay on its curves)."""
    runs = store.list_runs(experiment=run.experiment)
    parameters = [run_parameters(r) for r in runs]
    fields = [f for f in varying_fields(parameters) if f != "description"]
    return [
        {"id": r.id, "status": r.shown_status(), "label": ", ".join(f"{f} {shown_value(p.get(f))}" for f in fields)}
        for r, p in zip(runs, parameters)
        if r.id != run.id
    ]


def metrics_since(store: Store, run: RunRecord, after_step: int = -1) -> dict[str, Any]:
    """A run's metrics after a step, grouped by name, with the run's row (for live progress)."""
    series: dict[str, dict[str, list]] = {}
    for m in store.metrics_after(run.id, after_step):
        entry = series.setdefault(m.name, {"steps": [], "epochs": [], "values": [], "times": []})
        entry["steps"].append(m.step)
        entry["epochs"].append(m.epoch)
        entry["values"].append(number(m.value))
        entry["times"].append(m.wall_time)  # Unix seconds when logged; None in rows recorded before convexp kept it
    last = max((entry["steps"][-1] for entry in series.values()), default=after_step)
    return {"run": run_row(run), "metrics": series, "last_step": last}


def metrics_csv(store: Store, run: RunRecord) -> str:
    """A run's curves as CSV, one row per recorded value (step, epoch, name, value, wall_time), as the
    metrics table holds them: the values repr-exact, so a spreadsheet or pandas reads back what was
    recorded; wall_time is Unix seconds when the value was logged (empty in older rows)."""

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["step", "epoch", "name", "value", "wall_time"])
    for m in sorted(store.metrics(run.id), key=lambda m: (m.name, m.step)):
        writer.writerow([m.step, m.epoch, m.name, repr(float(m.value)), "" if m.wall_time is None else repr(m.wall_time)])
    return buffer.getvalue()


def _no_layer(store: Store, run: RunRecord, layer: str) -> NotFound:
    known = ", ".join(store.snapshot_layers(run.id)) or "none"
    return NotFound(f"run {run.id} has no snapshots of a layer '{layer}' (layers with snapshots: {known})")


def _layer_shape(store: Store, run: RunRecord, layer: str) -> tuple[int, ...]:
    for summary in store.snapshot_summary(run.id):
        if summary.layer == layer:
            return summary.shape
    raise _no_layer(store, run, layer)


def layer_steps(store: Store, run: RunRecord, layer: str, after_step: int = -1) -> dict[str, Any]:
    """The steps (and their epochs) at which a layer was recorded, after ``after_step``, and its kernel shape."""

    shape = _layer_shape(store, run, layer)
    steps = store.snapshot_steps(run.id, layer, after_step)
    rgb = len(shape) == 4 and shape[1] == 3 and sees_colour_image(run.spec, layer)
    return {"run": run.id, "layer": layer, "shape": list(shape), "steps": steps, "rgb": rgb}


def kernels_at(store: Store, run: RunRecord, layer: str, step: str | None, count: int = 1) -> list[StoredSnapshot]:
    """The stored snapshots of a layer from ``step`` (a recorded step, ``first`` or ``last``) on, at most ``count``."""
    if not 1 <= count <= MAX_SNAPSHOTS_PER_REQUEST:
        raise BadRequest(f"count must be from 1 to {MAX_SNAPSHOTS_PER_REQUEST}, not {count}")
    return store.snapshots(run.id, layer, step_of(store, run, layer, step), count)


def filter_trajectory(
    store: Store, run: RunRecord, layer: str, filter_index: int, points: int = TRAJECTORY_POINTS
) -> dict[str, Any]:
    """A filter's weights and drift from step 0 at up to ``points`` recorded steps (evenly spread, first and last kept)."""
    shape = _layer_shape(store, run, layer)
    if not 0 <= filter_index < shape[0]:
        raise NotFound(f"layer {layer} of run {run.id} has filters 0 to {shape[0] - 1}, not {filter_index}")
    if not 2 <= points <= TRAJECTORY_POINTS:
        raise BadRequest(f"points must be from 2 to {TRAJECTORY_POINTS}, not {points}")
    steps = distributions.sampled_steps(store.snapshot_steps(run.id, layer), points)
    recorded, values = store.filter_series(run.id, layer, filter_index, steps)
    drift = relative_drift(values)  # the filter's own ||w_t - w_0|| / ||w_0||
    return {
        "run": run.id,
        "layer": layer,
        "filter": filter_index,
        "shape": list(values.shape[1:]),
        "steps": recorded,
        "values": values.reshape(len(recorded), -1).tolist(),
        "drift": [number(float(d)) for d in drift],
    }


def layer_distribution(store: Store, run: RunRecord, layer: str, points: int = distributions.MAX_POINTS) -> dict[str, Any]:
    """The spread of a layer's weights and biases over its recorded steps (see :mod:`convexp.analysis.distributions`)."""
    _layer_shape(store, run, layer)
    if not 2 <= points <= distributions.MAX_POINTS:
        raise BadRequest(f"points must be from 2 to {distributions.MAX_POINTS}, not {points}")
    return {"run": run.id, **distributions.layer_distribution(store, run.id, layer, points)}


def layer_histogram(store: Store, run: RunRecord, layer: str, step: str | None, bins: int = 30) -> dict[str, Any]:
    """Histograms of a layer's weights and biases at one recorded step (a number, ``first`` or ``last``)."""
    return {"run": run.id, **distributions.layer_histogram(store, run.id, layer, step_of(store, run, layer, step), bins)}


def layer_analysis(store: Store, run: RunRecord, layer: str, step: str | None) -> dict[str, Any]:
    """``convexp filters`` for one step: each filter's closest operator and the edge-like share, beside the first step's."""
    kernel = kernels_at(store, run, layer, step)[0]
    first_kernel = store.snapshots(run.id, layer, 0, 1)[0]
    shown_step, first_step, shape = kernel.step, first_kernel.step, kernel.shape
    try:
        shown = analyse_layer(kernel.kernel_array, shown_step)
        first = analyse_layer(first_kernel.kernel_array, first_step, gabor=False)
    except ConvexpError as exc:  # e.g. a kernel size the operator bank does not have
        return {"run": run.id, "layer": layer, "step": shown_step, "shape": list(shape), "unavailable": str(exc)}
    return {
        "run": run.id,
        "layer": layer,
        "step": shown_step,
        "shape": list(shape),
        "unavailable": None,
        "edge_like": shown.edge_like,
        "filters_count": len(shown.filters),
        "edge_share": shown.edge_share,
        "first_step": first_step,
        "first_edge_like": first.edge_like,
        "first_edge_share": first.edge_share,
        "filters": [
            {
                "filter": f.index,
                "best_operator": f.best_operator,
                "correlation": round(f.correlation, 4),
                "edge_like": f.edge_like,
                "norm": round(f.norm, 5),
                "mean": round(f.mean, 5),
                "orientation_deg": round(f.orientation, 1),
                "orientedness": round(f.orientedness, 3),
                "gabor": None
                if f.gabor is None
                else {
                    "orientation_deg": round(f.gabor.orientation, 1),
                    "wavelength": round(f.gabor.wavelength, 2),
                    "phase_deg": round(f.gabor.phase, 1),
                    "r2": round(f.gabor.r2, 3),
                },
            }
            for f in shown.filters
        ],
    }


#: The most patches per filter the patches panel asks for.
MAX_TOP_PATCHES = 25


def layer_patches(
    store: Store, run: RunRecord, layer: str, step: str | None, top: int, load: Callable[[str], Dataset]
) -> dict[str, Any]:
    """``convexp filters --patches --format json`` for one step, with each patch's pixels (mean over channels,
    row by row) so the page can draw them; ``load`` gives a dataset by name (the app keeps them loaded)."""

    if not 1 <= top <= MAX_TOP_PATCHES:
        raise BadRequest(f"top must be between 1 and {MAX_TOP_PATCHES}, not {top}")
    chosen = step_of(store, run, layer, step)
    try:
        network = load_network(store, run, layer, chosen)
    except ConvexpError as exc:
        raise NotFound(str(exc)) from None
    data = load(run.dataset)
    found = top_patches(network, data.test_images, data.test_labels, top)
    result = patches_dict(found)
    for entry, patches in zip(result["filters"], found.filters):
        for row, patch in zip(entry["patches"], patches):
            row["pixels"] = [round(float(v), 4) for v in patch.pixels.mean(axis=0).ravel()]
    return result


def comparison(store: Store, run_ids: list[str], step: str) -> dict[str, Any]:
    """``convexp compare --format json`` for the runs and step of the compare page, with each run's row."""
    if len(run_ids) < 2:
        raise BadRequest("compare needs two or more runs: /compare?runs=1,2")
    runs, wanted = [get_run(store, r) for r in run_ids], parse_step(step)
    try:
        result = comparison_dict(compare_runs(store, runs, wanted))
    except ConvexpError as exc:
        raise NotFound(str(exc)) from None
    result["run_rows"] = [run_row(r) for r in runs]
    return result


def compared_kernels(store: Store, comparison: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The snapshots the compare page draws first (each run's at its compared step, per layer) as the stored
    float32 bytes in base64, to embed in the page: it draws at once instead of asking for each."""

    embedded: dict[str, list[dict[str, Any]]] = {}
    for layer in comparison["layers"]:
        snapshots = []
        for row, step in zip(comparison["run_rows"], layer["steps"]):
            (found,) = store.snapshots_at(row["id"], layer["layer"], [step])
            snapshots.append(
                {
                    "step": found.step,
                    "epoch": found.epoch,
                    "shape": list(found.shape),
                    "kernel": base64.b64encode(found.kernel).decode(),
                }
            )
        embedded[layer["layer"]] = snapshots
    return embedded


def parse_step(text: str | None) -> int | str:
    """A step as the pages ask for it: a whole number, ``first`` or ``last`` (the default)."""
    if text in (None, "", "first", "last"):
        return text or "last"
    if not text.lstrip("-").isdigit() or abs(int(text)) > MAX_ID:
        raise BadRequest(f"step must be a whole number, 'first' or 'last', not '{text}'")
    return int(text)


def recorded_steps(store: Store, run: RunRecord, layer: str) -> list[int]:
    """The steps at which ``layer`` of ``run`` was recorded; a layer not recorded is a 404 naming those that were."""
    steps = store.snapshot_steps(run.id, layer)
    if not steps:
        raise _no_layer(store, run, layer)
    return steps


def step_of(store: Store, run: RunRecord, layer: str, step: str | None) -> int:
    """A step as the pages ask for it (a number, ``first`` or ``last``), checked against what was recorded."""
    wanted, steps = parse_step(step), recorded_steps(store, run, layer)
    try:
        return steps[step_index(steps, wanted, run.id, layer)]
    except ConvexpError as exc:
        raise NotFound(str(exc)) from None
