"""``convexp runs`` and ``convexp query``: reading the results database."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from convexp.cli import app
from convexp.cli.options import Db, OutputFormat
from convexp.cli.output import Format, render


@app.command("runs", short_help="List the recorded runs.")
def runs_command(
    experiment: Annotated[Optional[str], typer.Option("--experiment", "-e", help="Only runs of this experiment.")] = None,
    backend: Annotated[Optional[str], typer.Option(help="Only runs on this backend.")] = None,
    status: Annotated[Optional[str], typer.Option(
        help="Only runs shown with this status: queued, running, finished, failed, interrupted, diverged or stale.")] = None,
    db: Db = None,
    fmt: OutputFormat = Format.table,
) -> None:
    """List the recorded runs: id, experiment, backend, status, attempts, epochs, test accuracy, time.

    A run still marked running whose process has died (or that has written nothing for 30 s)
    shows as 'stale'. attempts counts starts: more than 1 after a --resume or a cluster retry."""
    from convexp.store import Store

    with Store(db, must_exist=True) as store:
        runs = store.list_runs(experiment=experiment, backend=backend, status=status)
    columns = ["id", "experiment", "backend", "status", "attempts", "epochs", "test_accuracy", "seconds", "started"]
    rows = [
        [r.id, r.experiment, r.backend, r.shown_status(), r.attempts, r.epochs_completed, r.test_accuracy,
         None if r.seconds is None else round(r.seconds, 2), r.started_at]
        for r in runs
    ]
    render(columns, rows, fmt)


@app.command("query", short_help="Run a read-only SQL query on the results.")
def query_command(
    sql: Annotated[str, typer.Argument(help="One SQL statement that reads, e.g. \"SELECT * FROM runs\".")],
    db: Db = None,
    fmt: OutputFormat = Format.table,
    limit: Annotated[Optional[int], typer.Option(help="Return at most this many rows.")] = None,
) -> None:
    """Run a read-only SQL query on the results database (tables: runs, metrics, kernel_snapshots).

    Statements that would write are refused. Kernel bytes show as <N bytes>; load them as
    arrays with the Python API (convexp.store.Store.kernel_series).
    """
    from convexp.store.query import run_query

    result = run_query(db, sql, limit)
    render(result.columns, result.rows, fmt)
