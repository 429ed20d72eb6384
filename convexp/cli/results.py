"""``convexp runs`` and ``convexp query``: reading the results database."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from convexp.analysis.cells import json_text
from convexp.cli.app import app
from convexp.cli.options import Db, OutputFormat, Run, StatusChoice, Where
from convexp.cli.output import Format, render


@app.command("runs", short_help="List the recorded runs, with the parameters that vary.")
def runs_command(
    experiment: Annotated[Optional[str], typer.Option("--experiment", "-e", help="Only runs of this experiment.")] = None,
    backend: Annotated[Optional[str], typer.Option(help="Only runs on this backend.")] = None,
    status: Annotated[
        Optional[StatusChoice],
        typer.Option(help="Only runs shown with this status (stale: marked running, but its process is gone)."),
    ] = None,
    where: Where = None,
    tag: Annotated[
        Optional[list[str]],
        typer.Option("--tag", "-t", help="Only runs with this tag (repeatable: all must hold; see `convexp tag`)."),
    ] = None,
    db: Db = None,
    fmt: OutputFormat = Format.table,
) -> None:
    """List the recorded runs: id, name, experiment, backend, status, attempts, epochs, test accuracy,
    time, the megabytes each run's rows hold (kernel snapshots, metrics, checkpoint; `show` itemizes)
    and tags.

    With --experiment or --where, a column follows for every parameter that varies among the runs
    listed: a run's parameters are the fields of its spec, flattened with dots (seed, initializer,
    optimizer.learning_rate, layers.0.filters; config.NAME for a run recorded from your own loop).

    A run still marked running whose process has died (or that has written nothing for 30 s)
    shows as 'stale'. attempts counts starts: more than 1 after a --resume or a cluster retry; trial is a sweep's
    trial number, shown when a listed run is one."""
    from convexp.analysis.parameters import runs_with_parameters, shown_value
    from convexp.store import Store
    from convexp.store.space import run_sizes

    with Store(db, must_exist=True) as store:
        found = runs_with_parameters(
            store,
            experiment=experiment,
            backend=backend,
            status=None if status is None else status.value,
            where=where or (),
            tags=tag or (),
        )
        sizes = run_sizes(store)
        location = store.location
    if not found.runs and fmt == Format.table:
        filtered = any(v is not None for v in (experiment, backend, status, where, tag))
        typer.echo(
            f"no runs match in {location}" if filtered else f"no runs recorded in {location} yet: try `convexp run`", err=True
        )
        return
    columns = [
        "id",
        "name",
        "experiment",
        "backend",
        "status",
        "attempts",
        "epochs",
        "test_accuracy",
        "seconds",
        "size_mb",
        "tags",
    ]
    columns.append("started")
    trials = any(r.trial is not None for r in found.runs)  # a sweep's trials among them: their numbers too
    if trials:
        columns.insert(columns.index("status") + 1, "trial")
    varying = [f for f in found.varying if f not in columns] if experiment is not None or where else []
    rows = [
        [
            r.id,
            r.name,
            r.experiment,
            r.backend,
            r.shown_status(),
            *([r.trial] if trials else []),
            r.attempts,
            r.epochs_completed,
            r.test_accuracy,
            None if r.seconds is None else round(r.seconds, 2),
            round(sizes[r.id].total_bytes / 1e6, 2),
            ",".join(r.tags or ()),
            r.started_at,
            *(shown_value(p.get(field)) for field in varying),
        ]
        for r, p in zip(found.runs, found.parameters)
    ]
    render(columns + varying, rows, fmt)


@app.command("show", short_help="Everything recorded about one run.")
def show_command(
    run: Run,
    db: Db = None,
    fmt: OutputFormat = Format.table,
) -> None:
    """Show one run: status, progress, architecture with shapes, initializer, optimizer, framework
    versions, checkpoint, the last value of each metric, and the snapshots of each layer.

    The full recorded spec is in the JSON output (--format json); --format csv lists every field of
    the JSON as a (field, value) row, nested fields joined with dots."""
    import json

    from convexp.analysis.selection import select_run
    from convexp.analysis.summary import describe_run, format_description
    from convexp.store import Store

    with Store(db, must_exist=True) as store:
        description = describe_run(store, select_run(store, run), check_last=True)
    if fmt == Format.json:
        typer.echo(json_text(description.as_dict(), indent=2))
    elif fmt == Format.csv:
        from convexp.analysis.parameters import flatten

        flat = flatten(json.loads(json.dumps(description.as_dict(), default=str)))
        render(["field", "value"], [[k, v if not isinstance(v, list) else json.dumps(v)] for k, v in flat.items()], fmt)
    else:
        typer.echo(format_description(description))


@app.command("query", short_help="Run a read-only SQL query on the results.")
def query_command(
    sql: Annotated[str, typer.Argument(help='One SQL statement that reads, e.g. "SELECT * FROM runs".')],
    db: Db = None,
    fmt: OutputFormat = Format.table,
    limit: Annotated[Optional[int], typer.Option(help="Return at most this many rows.", min=1)] = None,
    time_limit: Annotated[
        float, typer.Option("--time-limit", metavar="SECONDS", help="Stop the query after this many seconds.", min=0.001)
    ] = 10.0,
) -> None:
    """Run a read-only SQL query on the results database (tables: runs, metrics, kernel_snapshots).

    Statements that would write are refused, and one still running after --time-limit seconds is
    stopped, as is a result over 200 MiB of values (the rows before it are printed, with a note).
    Kernel bytes show as <N bytes>; load them as arrays with the Python API
    (convexp.store.Store.kernel_series).
    """
    from convexp.store.query import run_query

    result = run_query(db, sql, limit, time_limit)
    render(result.columns, result.rows, fmt)
    if result.truncated:
        typer.echo(f"note: the result is cut short: {result.truncated}", err=True)
