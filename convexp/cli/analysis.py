"""``convexp compare`` and ``convexp filters``: what the recorded filters are, and how runs differ."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from convexp.analysis import TOP_PATCHES
from convexp.analysis.cells import json_text
from convexp.cli.app import app
from convexp.cli.options import DEFAULT_LAYER, DEFAULT_STEP, DataDir, Db, OutputFormat, PlotKind, Run, Runs, Step, Where
from convexp.cli.output import Format, render
from convexp.errors import ConvexpError


@app.command("compare", short_help="Compare runs: metrics, kernel drift, filter similarity.")
def compare_command(
    runs: Runs,
    step: Step = DEFAULT_STEP,
    db: Db = None,
    fmt: OutputFormat = Format.table,
    matches: Annotated[bool, typer.Option("--matches", help="Also list each filter's match (table format).")] = False,
) -> None:
    """Compare runs: spec differences, final and best metrics, seconds per epoch, and per conv layer
    how far kernels moved from step 0 (relative Frobenius norm) and how similar the filters are to
    the first run's (one-to-one Hungarian matching on cosine similarity; 1.0 = the same filters)."""
    from convexp.analysis.compare import compare_runs, comparison_dict, comparison_rows
    from convexp.analysis.selection import parse_step, select_runs
    from convexp.store import Store

    with Store(db, must_exist=True) as store:
        comparison = compare_runs(store, select_runs(store, runs), parse_step(step))
    if fmt == Format.json:
        typer.echo(json_text(comparison_dict(comparison), indent=2))
        return
    columns, rows = comparison_rows(comparison)
    render(columns, rows, fmt)
    if fmt == Format.csv:
        return
    if comparison.spec_differences:
        render(
            ["field", *[str(r.id) for r in comparison.runs]],
            [[k, *v] for k, v in comparison.spec_differences.items()],
            fmt,
            title="spec differences",
        )
    else:
        typer.echo("the runs' specs are identical")
    for layer, why in comparison.not_compared.items():
        typer.echo(f"{layer}: filters not compared: {why}")
    if matches:
        for compared in comparison.layers:
            for run, matching in zip(comparison.runs[1:], compared.matchings[1:]):
                render(
                    ["filter", f"run {run.id} filter", "cosine"],
                    [list(p) for p in matching.pairs],
                    fmt,
                    title=f"{compared.layer}: run {comparison.runs[0].id} vs run {run.id}",
                )


@app.command("filters", short_help="What each filter is: the operator it resembles, a Gabor fit, or its top patches.")
def filters_command(
    run: Run,
    layer: Annotated[
        Optional[str],
        typer.Option(
            help=f"Conv layer (square kernels of odd size for the operator analysis) [default: {DEFAULT_LAYER}, or the "
            "first conv layer the run recorded].",
            show_default=False,
        ),
    ] = None,
    step: Step = DEFAULT_STEP,
    patches: Annotated[bool, typer.Option("--patches", help="List each filter's strongest test-image patches instead.")] = False,
    top: Annotated[int, typer.Option(help="With --patches: how many patches (test images) per filter.")] = TOP_PATCHES,
    db: Db = None,
    data_dir: DataDir = None,
    fmt: OutputFormat = Format.table,
) -> None:
    """For each filter: the operator it resembles most (3x3: Sobel, Prewitt, Scharr, diagonal edges, Laplacian,
    center-surround; 5x5 and larger: derivative-of-Gaussian edges at 8 orientations, Laplacian of Gaussian,
    center-surround; or a negative) with the correlation, its norm, mean and orientation, a Gabor fit for 5x5
    and larger (orientation, wavelength, phase, R^2); and the share of edge-like filters at step 0 versus the
    chosen step.

    With --patches: for each filter, the test images whose receptive-field patch drives it hardest (the
    recorded network replayed in numpy up to the layer), with the unit's position and its response."""
    from convexp.analysis.selection import parse_step, select_run
    from convexp.store import Store

    if layer is None:
        from convexp.analysis.selection import default_layer

        with Store(db, must_exist=True) as store:
            layer = default_layer(store, select_run(store, run))
    if patches:
        from convexp.analysis.network import load_network
        from convexp.analysis.patches import patches_dict, top_patches
        from convexp.datasets import load_dataset

        with Store(db, must_exist=True) as store:
            record = select_run(store, run)
            network = load_network(store, record, layer, parse_step(step))
        data = load_dataset(record.dataset, data_dir)
        found = patches_dict(top_patches(network, data.test_images, data.test_labels, top))
        if fmt == Format.json:
            typer.echo(json_text(found, indent=2))
            return
        columns = ["filter", "rank", "image", "label", "row", "col", "top", "left", "response", "activation"]
        rows = [[f["filter"], *(p[c] for c in columns[1:])] for f in found["filters"] for p in f["patches"]]
        if fmt == Format.table:
            rows = [[*r[:-2], round(r[-2], 5), round(r[-1], 5)] for r in rows]
        field = found["receptive_field"]
        render(
            columns,
            rows,
            fmt,
            title=f"run {record.id} {layer} at step {found['step']}: top {top} test images per filter "
            f"({field['size'][0]}x{field['size'][1]} receptive field, {found['images_searched']} images)",
        )
        return
    _operator_analysis(run, layer, step, db, fmt)


def _operator_analysis(run: str, layer: str, step: str | None, db: str | None, fmt: Format) -> None:
    from convexp.analysis.filters import EDGE_THRESHOLD, analyse_layer
    from convexp.analysis.selection import filter_count, parse_step, select_run, snapshot_index
    from convexp.store import Store

    with Store(db, must_exist=True) as store:
        record = select_run(store, run)
        filter_count(store, record.id, layer)
        series = store.kernel_series(record.id, layer)
    from convexp.analysis.colour import RGB, sees_colour_image

    chosen = snapshot_index(series, parse_step(step))
    channels = RGB if sees_colour_image(record.spec, layer) else ()
    first = analyse_layer(series.kernels[0], int(series.steps[0]), gabor=False)
    report = analyse_layer(series.kernels[chosen], int(series.steps[chosen]), channels=channels)
    columns = ["filter", "best_operator", "correlation", "edge_like", "norm", "mean", "orientation_deg", "orientedness"]
    gabor = report.filters[0].gabor is not None
    if gabor:
        columns += ["gabor_orientation_deg", "gabor_wavelength", "gabor_phase_deg", "gabor_r2"]
    # full precision for json and csv; the table rounds for reading
    digits = [None, None, 3, None, 4, 4, 1, 3] + ([1, 2, 1, 3] if gabor else [])
    if channels:  # over a colour image: the measures above are the luminance's; each channel's, and the colour share
        columns += ["chromatic_share", *(f"{c}_{m}" for c in channels for m in ("operator", "correlation", "orientation_deg"))]
        digits += [3, *([None, 3, 1] * len(channels))]
    if fmt != Format.table:
        digits = [None] * len(columns)
    rows = []
    for f in report.filters:
        row: list = [f.index, f.best_operator, f.correlation, f.edge_like, f.norm, f.mean, f.orientation, f.orientedness]
        if f.gabor is not None:
            row += [f.gabor.orientation, f.gabor.wavelength, f.gabor.phase, f.gabor.r2]
        if channels:
            row += [f.chromatic_share, *(v for c in f.channels for v in (c.best_operator, c.correlation, c.orientation))]
        rows.append([v if d is None else round(v, d) for v, d in zip(row, digits)])
    if fmt == Format.json:
        typer.echo(
            json_text(
                {
                    "run": record.id,
                    "layer": layer,
                    "step": report.step,
                    "edge_threshold": EDGE_THRESHOLD,
                    "edge_share": {str(first.step): first.edge_share, str(report.step): report.edge_share},
                    "filters": [dict(zip(columns, row)) for row in rows],  # the table's columns
                },
                indent=2,
            )
        )
        return
    render(columns, rows, fmt, title=f"run {record.id} {layer} at step {report.step}")
    if fmt == Format.table:
        typer.echo(
            f"edge-like (best match an edge operator with correlation >= {EDGE_THRESHOLD}): "
            f"step {first.step}: {first.edge_like}/{len(first.filters)} ({first.edge_share:.0%}), "
            f"step {report.step}: {report.edge_like}/{len(report.filters)} ({report.edge_share:.0%})"
        )


@app.command("plot", short_help="Draw filters, their evolution, curves, features, top patches or preferred inputs.")
def plot_command(
    kind: Annotated[PlotKind, typer.Argument(metavar="KIND", help="What to draw.", show_default=False)],
    runs: Annotated[
        list[str],
        typer.Argument(
            metavar="RUN...",
            help="Runs: ids, or EXPERIMENT:BACKEND (curves draws all; the others the first); for summary and sweep, "
            "an EXPERIMENT.",
        ),
    ],
    out: Annotated[Path, typer.Option(help="Picture file to write (.png; evolution also .gif for an animation).")],
    layer: Annotated[
        Optional[str],
        typer.Option(
            help=f"Conv layer [default: {DEFAULT_LAYER}, or the first conv layer the run recorded; summary: the only one "
            "recorded]."
        ),
    ] = None,
    step: Step = DEFAULT_STEP,
    filters: Annotated[str, typer.Option(help="Filters for evolution, e.g. 0,1,2,3.")] = "0,1,2,3,4,5,6,7",
    image: Annotated[int, typer.Option(help="Test image index for features.")] = 0,
    top: Annotated[int, typer.Option(help="Patches per filter for patches.")] = TOP_PATCHES,
    by: Annotated[
        Optional[list[str]], typer.Option("--by", metavar="FIELD", help="summary: group the runs by this parameter (repeatable).")
    ] = None,
    metric: Annotated[Optional[str], typer.Option(metavar="NAME", help="summary: the metric drawn, e.g. test_accuracy.")] = None,
    measure: Annotated[
        Optional[str],
        typer.Option(metavar="NAME", help="summary: the filter measure of --layer drawn: edge_share, drift or similarity."),
    ] = None,
    x: Annotated[Optional[str], typer.Option("--x", metavar="FIELD", help="sweep: the parameter on x.")] = None,
    y: Annotated[
        str,
        typer.Option("--y", metavar="NAME", help="sweep: the metric on y, or a filter measure of --layer (edge_share, drift)."),
    ] = "test_accuracy",
    color: Annotated[
        Optional[str], typer.Option("--color", metavar="FIELD", help="sweep: the parameter that colours the points.")
    ] = None,
    where: Where = None,
    db: Db = None,
    data_dir: DataDir = None,
) -> None:
    """Draw a picture of recorded runs: a layer's filters at a step (filters), chosen filters across
    the snapshots (evolution), training curves (curves), step-0 weights against the initializer's
    density (histogram), one test image through the first conv layer (features), each filter's
    strongest test-image patches (patches; any conv layer, the network replayed from the recorded
    weights), or the input window each filter responds to most, found by gradient ascent, at step 0
    and at --step side by side (maximize).

    summary draws an experiment's runs grouped by --by: each group's mean --metric or --measure over
    the steps with its 95% t band, the single runs faint (the numbers of `convexp summary`). sweep draws
    an experiment's finished runs as points, the parameter --x against --y (log x where x spans a
    decade or more), coloured by --color."""
    from convexp.analysis import pictures, plot
    from convexp.analysis.selection import filter_count, parse_indices, parse_step, select_runs
    from convexp.store import Store

    kind_name = kind.value
    pictures.check_picture_request(kind_name, out)
    if kind_name == "summary":
        _plot_summary(runs, out, by or [], metric, measure, layer, db, where or [])
        return
    if kind_name == "sweep":
        _plot_sweep(runs, out, x, y, color, layer, parse_step(step), db, where or [])
        return
    if by or metric or measure or where:
        raise ConvexpError("--by, --metric, --measure and --where are for `convexp plot summary EXPERIMENT`")
    if x or color:
        raise ConvexpError("--x, --y and --color are for `convexp plot sweep EXPERIMENT`")
    with Store(db, must_exist=True) as store:
        records = select_runs(store, runs)
        if layer is None and kind_name != "curves":
            from convexp.analysis.selection import default_layer

            layer = default_layer(store, records[0])
        options = plot.PictureOptions(
            layer or DEFAULT_LAYER, parse_step(step), parse_indices(filters, "--filters"), image, data_dir, top
        )
        if kind_name != "curves":
            filter_count(store, records[0].id, options.layer)
        if kind_name == "evolution" and out.suffix.lower() == ".gif":
            series = store.kernel_series(records[0].id, options.layer)
            from convexp.analysis.colour import sees_colour_image

            rgb = sees_colour_image(records[0].spec, options.layer)
            pictures.evolution_gif(series.kernels, series.steps, f"run {records[0].id} {options.layer}", out, rgb=rgb)
        else:
            pictures.save(plot.draw(kind_name, store, records, options), out)
    typer.echo(f"wrote {out}")


def _plot_summary(experiments: list[str], out: Path, by: list[str], metric, measure, layer, db, where: list[str]) -> None:
    from convexp.analysis import pictures
    from convexp.analysis.group_curves import group_curves
    from convexp.store import Store

    if len(experiments) != 1:
        raise ConvexpError(
            f"plot summary draws one experiment, not {len(experiments)}: convexp plot summary EXPERIMENT --by FIELD ..."
        )
    if metric is None and measure is None:
        metric = "test_accuracy"
    with Store(db, must_exist=True) as store:
        curves = group_curves(store, experiments[0], by, metric, measure, layer, where=where)
    pictures.save(pictures.group_curves_figure(curves), out)
    typer.echo(f"wrote {out}")


def _plot_sweep(
    experiments: list[str], out: Path, x: str | None, y: str, colour: str | None, layer, step, db, where: list[str]
) -> None:
    from convexp.analysis import pictures
    from convexp.analysis.sweep_points import sweep_points
    from convexp.store import Store

    if len(experiments) != 1:
        raise ConvexpError(f"plot sweep draws one experiment, not {len(experiments)}: convexp plot sweep EXPERIMENT --x FIELD")
    if x is None:
        raise ConvexpError("plot sweep needs --x FIELD: the parameter on x, e.g. --x optimizer.learning_rate")
    with Store(db, must_exist=True) as store:
        points = sweep_points(store, experiments[0], x, y, colour, layer, step, where)
    pictures.save(pictures.sweep_figure(points), out)
    typer.echo(f"wrote {out}")


@app.command("report", short_help="Write a self-contained HTML report of runs, or of an experiment's groups.")
def report_command(
    runs: Annotated[
        list[str],
        typer.Argument(metavar="RUN...", help="Runs: ids, or EXPERIMENT:BACKEND; with --by, one EXPERIMENT."),
    ],
    out: Annotated[Path, typer.Option(help="HTML file to write.")] = Path("report.html"),
    by: Annotated[
        Optional[list[str]],
        typer.Option(
            "--by", metavar="FIELD", help="Report on the experiment's finished runs grouped by this parameter (repeatable)."
        ),
    ] = None,
    db: Db = None,
    data_dir: DataDir = None,
) -> None:
    """Write one self-contained HTML file (images embedded; opens from disk, fetches nothing) with each
    run's spec, metrics, filter pictures and filter analysis, the training curves and the comparison.

    With --by, RUN is an experiment: the report starts with its groups (the tables of `convexp
    summary` and each group's curves with 95% bands) and goes on with its finished runs."""
    from convexp.analysis.output_files import check_output_path
    from convexp.analysis.report import write_report
    from convexp.analysis.selection import select_runs
    from convexp.cli.output import console
    from convexp.store import Store

    check_output_path(out, "--out", {".html", ".htm"})
    with Store(db, must_exist=True) as store, console(stderr=True).status("drawing the pictures and writing the report"):
        if by:
            from convexp.analysis.groups import group_runs

            if len(runs) != 1:
                raise ConvexpError(f"with --by, report one experiment, not {len(runs)}: convexp report EXPERIMENT --by FIELD")
            path = write_report(store, group_runs(store, runs[0], by).runs, out, data_dir, groups=(runs[0], by))
        else:
            path = write_report(store, select_runs(store, runs), out, data_dir)
    typer.echo(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
