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
        list[str],
        typer.Option(
            "--by", metavar="FIELD", help="Group by this parameter (repeatable), e.g. initializer, seed, optimizer.learning_rate."
        ),
    ],
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

    with Store(db, must_exist=True) as store:
        summary = summarise(
            store, experiment, by, metric or (), measure or (), layer, parse_step(step), baseline, where=where or ()
        )
    title = f"{experiment}: finished runs{' where ' + ' '.join(where) if where else ''} by {', '.join(by)} at step {summary.step}; 95% t intervals"
    if summary.baseline is not None:
        title += f"; differences from {summary.baseline} (Welch interval, permutation p)"
    render(summary.columns(), summary.table(), fmt, title=title)
    if summary.left_out:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.left_out.items()))
        typer.echo(f"left out: {sum(summary.left_out.values())} run(s) not finished ({counts})", err=True)
