"""What the experiment page shows: an experiment's finished runs grouped by their parameters, the summary of a
quantity at the last step and its curves with 95% bands, as plain data read from the store (the page's JSON)."""

from __future__ import annotations

from typing import Any

from convexp.analysis.group_curves import group_curves
from convexp.analysis.groups import MEASURES, group_runs, summarise
from convexp.analysis.parameters import run_parameters, varying_fields
from convexp.analysis.step_clock import group_clocks
from convexp.analysis.sweep_table import sweep_table
from convexp.store import Store
from convexp.ui.data import NotFound, number


def experiment_view(
    store: Store,
    experiment: str,
    by: list[str],
    metric: str | None = None,
    measure: str | None = None,
    layer: str | None = None,
    where: list[str] | None = None,
) -> dict[str, Any]:
    """An experiment's groups: the fields it can be grouped by, the summary of the chosen quantity at the
    last step (as ``convexp summary -f json``) and its curves with 95% bands (as ``convexp plot summary``),
    and each run (a sweep's pruned trials too) with its varying parameters and that quantity (the parallel
    coordinates and the scatter); ``where``, only the runs meeting those conditions (as ``--where``)."""

    runs = store.list_runs(experiment=experiment)
    if not runs:
        raise NotFound(f"no runs of experiment '{experiment}'")
    parameters = [run_parameters(r) for r in runs if r.status == "finished"]
    fields = [f for f in varying_fields(parameters) if f != "description"]
    if not by:
        by = [next((f for f in fields if f != "seed"), fields[0] if fields else "experiment")]  # nothing varies: one group
    if metric is None and measure is None:  # test accuracy, or what a tracked loop recorded
        recorded = store.metric_names([r.id for r in runs if r.status == "finished"])
        if recorded:
            metric = "test_accuracy" if "test_accuracy" in recorded else sorted(recorded)[0]
        else:  # kernels only: how far they moved
            measure = "drift"
    if measure is not None and layer is None:  # a measure chosen before a layer: the first layer every run recorded
        layer = next(iter(_shared_layers(store, [r.id for r in runs if r.status == "finished"])), None)
    grouped = group_runs(store, experiment, by, where or ())  # once, for the table and the curves
    summary = summarise(store, experiment, by, [metric] if metric else [], [measure] if measure else [], layer, grouped=grouped)
    curves = group_curves(store, experiment, by, metric, measure, layer, grouped=grouped)
    ids = sorted({i for row in summary.rows for i in row.run_ids} | {int(i) for c in curves.curves for i in c.runs})
    # similarity compares a run with its group's: no objective of a run alone for the parallel coordinates
    swept = sweep_table(store, experiment, metric, measure, layer, where or ()) if measure != "similarity" else None
    columns = summary.columns()
    return {
        "experiment": experiment,
        "by": by,
        "where": where or [],
        "fields": fields,
        "metric": metric,
        "measure": measure,
        "layer": layer,
        "metrics": store.metric_names(ids),
        "measures": list(MEASURES),
        "layers": sorted(_shared_layers(store, ids)),
        "summary": {
            "columns": columns,
            "rows": [dict(zip(columns, [_cell(v) for v in row])) for row in summary.table()],
            "baseline": summary.baseline,
            "left_out": summary.left_out,
            "step": summary.step,
        },
        "curves": curves.as_dict(),
        # each group's steps as epochs and as seconds: the chart's other x axes
        "clocks": group_clocks(store, [(c.label, grouped.groups[key]) for key, c in zip(grouped.keys, curves.curves)]),
        # each run through its parameters to the quantity: the parallel coordinates and the scatter
        "sweep": swept.as_dict() if swept and swept.fields else None,
    }


def _shared_layers(store: Store, run_ids: list[int]) -> list[str]:
    """The layers every one of the runs recorded, in the first run's order (none for no runs)."""
    if not run_ids:
        return []
    layers = [store.snapshot_layers(i) for i in run_ids]
    return [name for name in layers[0] if all(name in others for others in layers[1:])]


def _cell(value: Any) -> Any:
    return number(value) if isinstance(value, float) else value
