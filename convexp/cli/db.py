"""``convexp db``: the results database's schema."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from convexp.cli.options import Db

app = typer.Typer(help="The results database: schema migrations, copying runs between databases.", no_args_is_help=True, rich_markup_mode=None)


@app.command("upgrade", short_help="Create the database or migrate its schema.")
def upgrade_command(db: Db = None) -> None:
    """Create the database or migrate it to this convexp's schema (also done automatically on first use)."""
    from convexp.store import Store
    from convexp.store.database import current_revision

    with Store(db) as store:
        typer.echo(f"{store.location}: schema at revision {current_revision(store.engine)} (newest)")


@app.command("copy", short_help="Copy runs from one database into another.")
def copy_command(
    source: Annotated[str, typer.Argument(help="Database to copy from: a SQLite file path or a SQLAlchemy URL.")],
    destination: Annotated[str, typer.Argument(help="Database to copy into (created and migrated if new).")],
    run: Annotated[Optional[list[int]], typer.Option("--run", help="Copy only this run (repeat for several).")] = None,
) -> None:
    """Copy runs with their metrics, snapshots and checkpoints from SOURCE into DESTINATION.

    Runs DESTINATION already holds (the same run, by its uid) are skipped, so copying again adds
    only what is new. A run keeps its id where that id is free in DESTINATION.
    """
    from convexp.store import Store
    from convexp.store.copy import copy_runs

    with Store(source, must_exist=True) as src, Store(destination) as dst:
        report = copy_runs(src, dst, run)
        where = f"from {src.location} to {dst.location}"
    moved = ", ".join(f"{a}" if a == b else f"{a} as {b}" for a, b in report.copied)
    typer.echo(f"copied {len(report.copied)} run(s) {where}" + (f": {moved}" if moved else ""))
    if report.already_there:
        typer.echo(f"skipped {len(report.already_there)} run(s) already there: {', '.join(map(str, report.already_there))}")
    if report.still_running:
        typer.echo(f"skipped {len(report.still_running)} run(s) still running: {', '.join(map(str, report.still_running))}")
