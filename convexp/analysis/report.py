"""``convexp report``: one self-contained HTML file (images embedded, nothing fetched) about some runs."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from convexp import __version__
from convexp.analysis import pictures, plot
from convexp.analysis.cells import json_text
from convexp.analysis.compare import compare_runs, comparison_rows
from convexp.analysis.filters import EDGE_THRESHOLD, analyse_layer
from convexp.analysis.group_curves import group_curves
from convexp.analysis.groups import group_runs, summarise
from convexp.errors import ConvexpError
from convexp.store import RunRecord, Store

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1, h2, h3 { font-weight: 600; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1.5em; font-size: .85em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; } th { background: #f4f4f4; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: .5em 0; }
pre { background: #f8f8f8; padding: .8em; overflow-x: auto; font-size: .8em; }
.note { color: #666; font-size: .9em; }
.wide { overflow-x: auto; }
"""


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.6g}"
        return html.escape("" if value is None else str(value))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _image(figure, alt: str) -> str:
    encoded = base64.b64encode(pictures.png_bytes(figure)).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _first_conv_layer(store: Store, run: RunRecord) -> str | None:
    layers = store.snapshot_layers(run.id)
    return "conv1" if "conv1" in layers else (layers[0] if layers else None)


def _run_section(store: Store, run: RunRecord, data_dir: Path | None) -> str:
    parts = [f"<h2>Run {run.id}: {html.escape(run.experiment)} on {html.escape(run.backend)}</h2>"]
    parts.append(
        _table(
            ["status", "dataset", "seed", "initializer", "epochs", "steps", "test accuracy", "framework", "started (UTC)"],
            [
                [
                    run.status,
                    run.dataset,
                    run.seed,
                    run.kernel_initializer,
                    run.epochs_completed,
                    run.steps_completed,
                    run.test_accuracy,
                    f"{run.framework} {run.framework_version}",
                    run.started_at.isoformat(sep=" ", timespec="seconds"),
                ]
            ],
        )
    )
    parts.append(
        "<details><summary>Experiment spec</summary><pre>" + html.escape(json_text(run.spec, indent=2)) + "</pre></details>"
    )
    layer = _first_conv_layer(store, run)
    if layer is None:
        parts.append('<p class="note">No kernel snapshots were recorded.</p>')
        return "\n".join(parts)
    options = plot.PictureOptions(layer=layer, data_dir=data_dir)
    for kind, caption in [
        ("filters", f"{layer} filters at the last step"),
        ("evolution", f"{layer} filters 0-7 during training"),
        ("histogram", f"{layer} weights at step 0 against the {run.kernel_initializer} density"),
        ("features", f"a test image through {layer}"),
    ]:
        try:
            parts.append(f"<h3>{html.escape(caption)}</h3>" + _image(plot.draw(kind, store, [run], options), caption))
        except ConvexpError as exc:
            parts.append(f'<p class="note">{html.escape(caption)}: not drawn ({html.escape(str(exc))})</p>')
    for deeper in store.snapshot_layers(run.id):
        if deeper == layer:
            continue
        caption = f"{deeper}: each filter's strongest test-image patches"
        try:
            figure = plot.draw("patches", store, [run], plot.PictureOptions(layer=deeper, data_dir=data_dir))
            parts.append(
                f"<h3>{html.escape(caption)}</h3>"
                '<p class="note">A deeper filter acts on feature maps, not pixels; these are the input windows '
                "(its receptive field) of the test images that drive it hardest, the recorded network replayed "
                "up to this layer.</p>" + _image(figure, caption)
            )
        except ConvexpError as exc:
            parts.append(f'<p class="note">{html.escape(caption)}: not drawn ({html.escape(str(exc))})</p>')
    series = store.kernel_series(run.id, layer)
    try:
        first = analyse_layer(series.kernels[0], int(series.steps[0]), gabor=False)
        last = analyse_layer(series.kernels[-1], int(series.steps[-1]))
    except ConvexpError as exc:
        parts.append(f'<p class="note">{html.escape(layer)} filter analysis: not done ({html.escape(str(exc))})</p>')
        return "\n".join(parts)
    parts.append(
        f"<h3>{html.escape(layer)} filter analysis at step {last.step}</h3>"
        f"<p>Edge-like (best match an edge operator with correlation &ge; {EDGE_THRESHOLD}): "
        f"step {first.step}: {first.edge_like}/{len(first.filters)} ({first.edge_share:.0%}); "
        f"step {last.step}: {last.edge_like}/{len(last.filters)} ({last.edge_share:.0%}).</p>"
    )
    columns = ["filter", "best operator", "correlation", "edge-like", "norm", "mean", "orientation (deg)"]
    rows = [
        [f.index, f.best_operator, round(f.correlation, 3), f.edge_like, f.norm, f.mean, round(f.orientation, 1)]
        for f in last.filters
    ]
    if last.filters and last.filters[0].gabor is not None:
        columns += ["Gabor orientation (deg)", "Gabor wavelength (px)", "Gabor phase (deg)", "Gabor fit R²"]
        rows = [
            [*row, round(fit.orientation, 1), round(fit.wavelength, 2), round(fit.phase, 1), round(fit.r2, 3)]
            for row, fit in zip(rows, (f.gabor for f in last.filters))
            if fit is not None
        ]
    parts.append(_table(columns, rows))
    return "\n".join(parts)


def _groups_section(store: Store, experiment: str, by: Sequence[str]) -> str:
    """An experiment's groups: the summary tables (metrics; filter measures of its first conv layer) and
    each group's curves with their bands."""

    grouped = group_runs(store, experiment, by)  # once, for every table and curve below
    summary = summarise(store, experiment, by, grouped=grouped)
    parts = [
        f"<h2>{html.escape(experiment)}: finished runs by {html.escape(', '.join(by))}</h2>",
        '<p class="note">Per group: n runs, mean, sample standard deviation, 95% confidence interval of the mean '
        "(Student's t), min and max"
        + (
            f"; difference of means from {html.escape(summary.baseline)} with Welch's 95% interval and a two-sided "
            "permutation test's p-value"
            if summary.baseline is not None
            else ""
        )
        + (f". Left out, not finished: {html.escape(str(summary.left_out))}" if summary.left_out else "")
        + ".</p>",
        _table(summary.columns(), summary.table()),
    ]
    ids = sorted({i for row in summary.rows for i in row.run_ids})
    recorded = store.metric_names(ids)
    drawn = [
        group_curves(store, experiment, by, metric=name, grouped=grouped)
        for name in ("test_accuracy", "train_loss")
        if name in recorded
    ]
    layers = [set(store.snapshot_layers(i)) for i in ids]
    common = sorted(set.intersection(*layers)) if layers else []
    layer = "conv1" if "conv1" in common else (common[0] if common else None)
    if layer is not None:
        try:
            measures = summarise(
                store, experiment, by, measures=("edge_share", "drift", "similarity"), layer=layer, grouped=grouped
            )
            parts.append(
                f"<h3>{html.escape(layer)} filter measures at the last step</h3>" + _table(measures.columns(), measures.table())
            )
            drawn.append(group_curves(store, experiment, by, measure="edge_share", layer=layer, grouped=grouped))
        except ConvexpError as exc:
            parts.append(f'<p class="note">{html.escape(layer)} filter measures: not computed ({html.escape(str(exc))})</p>')
    for curves in drawn:
        parts.append(
            f"<h3>{html.escape(curves.quantity)} by group</h3>" + _image(pictures.group_curves_figure(curves), curves.quantity)
        )
    return "\n".join(parts)


def build_report(
    store: Store, runs: Sequence[RunRecord], data_dir: Path | None = None, groups: tuple[str, Sequence[str]] | None = None
) -> str:
    """The report's HTML: with ``groups`` (an experiment and the fields to group its runs by), the groups'
    summary and curves first; then spec, metrics, pictures and filter analysis of each run, the training
    curves and the comparison."""
    if not runs:
        raise ConvexpError("a report needs at least one run")
    title = "convexp report: " + (f"experiment {groups[0]}" if groups else ", ".join(f"run {r.id}" for r in runs))
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">convexp {__version__}, database {html.escape(store.location)}, generated {generated} UTC.</p>',
    ]
    if groups is not None:
        parts.append(_groups_section(store, *groups))
    parts.append("<h2>Training curves</h2>" + _image(plot.draw("curves", store, runs), "training curves"))
    comparison = compare_runs(store, list(runs))
    columns, rows = comparison_rows(comparison)
    parts.append("<h2>Comparison</h2>")
    parts.append(
        '<p class="note">drift: ||W_t - W_0|| / ||W_0|| at the compared step; similarity: mean cosine similarity '
        "of each filter to its match among the first run's filters (one-to-one Hungarian matching).</p>"
    )
    parts.append(_table(columns, rows))
    if comparison.spec_differences:
        parts.append(
            "<h3>Spec differences</h3>"
            + _table(["field", *[f"run {r.id}" for r in runs]], [[k, *v] for k, v in comparison.spec_differences.items()])
        )
    parts.extend(_run_section(store, run, data_dir) for run in runs)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    store: Store,
    runs: Sequence[RunRecord],
    out: Path,
    data_dir: Path | None = None,
    groups: tuple[str, Sequence[str]] | None = None,
) -> Path:
    """Write the report to ``out`` (atomically: a failure leaves no half-written file)."""
    text = build_report(store, runs, data_dir, groups)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out
