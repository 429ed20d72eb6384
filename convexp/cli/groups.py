"""``convexp summary``: an experiment's runs grouped by their parameters, with spread and intervals."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from convexp.cli.app import app
from convexp.cli.options import DEFAULT_STEP, Db, OutputFormat, Where
from convexp.cli.output import Format, render


@app.command("summary", short_help="Group an experiment's runs by parameters: mean, spread and 95% interval.")
def summary_command(
    experiment: Annotated[str, typer.Argument(metavar="EXPERIMENT", help="The experiment whose finished runs are grouped.")],
    by: Annotated[
        Optional[list[str]],
        typer.Option(
            "--by", metavar="FIELD", help="Group by this parameter (repeatable), e.g. initializer, seed, optimizer.learning_rate."
        ),
    ] = None,
    metric: Annotated[
        Optional[list[str]],
        typer.Option(
            "--metric", metavar="NAME", help="A metric to summarise (repeatable) [default: test_accuracy and test_loss]."
        ),
    ] = None,
    measure: Annotated[
        Optional[list[str]],
        typer.Option(
            "--measure",
            metavar="NAME",
            help="A filter measure of --layer (repeatable): edge_share, drift (from the first snapshot) or "
            "similarity (to the other runs of the group, Hungarian-matched).",
        ),
    ] = None,
    layer: Annotated[
        Optional[str], typer.Option(metavar="NAME", help="The conv layer --measure reads [default: the only one recorded].")
    ] = None,
    step: Annotated[
        str,
        typer.Option(
            metavar="STEP", help="Where to read: 'first', 'last' or a step number (a metric: its last value at or before it)."
        ),
    ] = DEFAULT_STEP,
    baseline: Annotated[
        Optional[str],
        typer.Option(
            metavar="VALUE",
            help="The group the others are compared with (its --by values joined with commas) [default: the first, "
            "when there are exactly two groups].",
        ),
    ] = None,
    importance: Annotated[
        bool,
        typer.Option(
            "--importance",
            help="Instead of groups: rank the parameters that vary by their importance for the objective (--metric, "
            "default test_accuracy, or --measure of --layer), a random forest's (100 trees, seed 0), with each "
            "number's correlation with it.",
        ),
    ] = False,
    where: Where = None,
    db: Db = None,
    fmt: OutputFormat = Format.table,
) -> None:
    """Group an experiment's finished runs by the --by parameters and summarise, per group, metrics and
    filter measures across its runs: n, mean, standard deviation, 95% confidence interval of the mean
    (Student's t), min and max.

    With two groups (or --baseline), every other group also gets its difference of means from the
    baseline with Welch's 95% interval and a two-sided permutation test's p-value (exact up to 20,000
    relabellings, else 20,000 drawn with seed 0). Runs not finished are left out and counted.

    A run's parameters are the fields `convexp runs -e EXPERIMENT` shows."""
    from convexp.analysis.groups import summarise
    from convexp.analysis.selection import parse_step
    from convexp.store import Store

    if importance:
        _importance(experiment, by, metric, measure, layer, parse_step(step), where or [], db, fmt)
        return
    with Store(db, must_exist=True) as store:
        summary = summarise(
            store, experiment, by or [], metric or (), measure or (), layer, parse_step(step), baseline, where=where or ()
        )
    title = f"{experiment}: finished runs{' where ' + ' '.join(where) if where else ''} by {', '.join(by or [])} at step {summary.step}; 95% t intervals"
    if summary.baseline is not None:
        title += f"; differences from {summary.baseline} (Welch interval, permutation p)"
    render(summary.columns(), summary.table(), fmt, title=title)
    if summary.left_out:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.left_out.items()))
        typer.echo(f"left out: {sum(summary.left_out.values())} run(s) not finished ({counts})", err=True)


def _importance(experiment: str, by, metric, measure, layer, step, where: list[str], db: str | None, fmt: Format) -> None:
    from convexp.analysis.importance import TREES, parameter_importance
    from convexp.errors import ConvexpError
    from convexp.store import Store

    if by:
        raise ConvexpError("--importance ranks every parameter that varies: leave out --by")
    if metric and len(metric) > 1 or measure and len(measure) > 1 or metric and measure:
        raise ConvexpError("--importance takes one objective: one --metric NAME or one --measure NAME")
    with Store(db, must_exist=True) as store:
        found = parameter_importance(
            store, experiment, metric[0] if metric else None, measure[0] if measure else None, layer, step, where
        )
    title = (
        f"{experiment}: what each parameter does for {found.objective} at step {step} over {found.runs} finished runs"
        f"{' where ' + ' '.join(where) if where else ''}: a random forest's importance ({TREES} trees, seed 0) "
        "and Pearson r"
    )
    render(found.columns(), found.table(), fmt, title=title)
