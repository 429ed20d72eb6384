"""``convexp db``: the results database's schema, copying, deleting and thinning runs, reclaiming space."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from convexp.cli.options import Db

app = typer.Typer(
    help="The results database: schema migrations, copying, deleting, thinning and packing runs, reclaiming space.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


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
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from convexp.store import Store
    from convexp.store.copy import copy_runs

    bar = Progress(
        TextColumn("runs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=Console(stderr=True), transient=True
    )
    task = bar.add_task("copy", total=None)
    with Store(source, must_exist=True) as src, Store(destination) as dst, bar:
        report = copy_runs(src, dst, run, progress=lambda done, total: bar.update(task, completed=done, total=total))
        where = f"from {src.location} to {dst.location}"
    moved = ", ".join(f"{a}" if a == b else f"{a} as {b}" for a, b in report.copied)
    typer.echo(f"copied {len(report.copied)} run(s) {where}" + (f": {moved}" if moved else ""))
    if report.already_there:
        typer.echo(f"skipped {len(report.already_there)} run(s) already there: {', '.join(map(str, report.already_there))}")
    if report.still_running:
        typer.echo(f"skipped {len(report.still_running)} run(s) still running: {', '.join(map(str, report.still_running))}")


@app.command("delete", short_help="Delete runs with everything they recorded.")
def delete_command(
    runs: Annotated[Optional[list[int]], typer.Argument(help="Run ids to delete.", show_default=False)] = None,
    experiment: Annotated[Optional[str], typer.Option("--experiment", "-e", help="Delete the runs of this experiment.")] = None,
    status: Annotated[Optional[str], typer.Option(help="Delete the runs shown with this status, e.g. failed or stale.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    vacuum: Annotated[
        bool, typer.Option("--vacuum", help="Then shrink the SQLite file (rewrites it; can take a while).")
    ] = False,
    db: Db = None,
) -> None:
    """Delete runs with their metrics, kernel snapshots and checkpoint, in one transaction.

    Give run ids, or select runs with --experiment and/or --status (both must match). A run still
    running in a live process is refused; nothing is deleted unless all of the selection can be.
    """
    from convexp.errors import ConvexpError
    from convexp.store import Store

    if not runs and experiment is None and status is None:
        raise ConvexpError("say which runs to delete: run ids, --experiment or --status")
    with Store(db, must_exist=True) as store:
        chosen = store.list_runs(experiment=experiment, status=status, run_ids=runs or None)
        if not chosen:
            typer.echo("no runs match: nothing deleted")
            return
        listed = ", ".join(f"{r.id} ({r.experiment}/{r.backend}, {r.shown_status()})" for r in chosen)
        if not yes and not typer.confirm(f"delete {len(chosen)} run(s) from {store.location}: {listed}?"):
            raise typer.Exit(1)
        deleted = store.delete_runs(r.id for r in chosen)
        typer.echo(f"deleted {len(deleted)} run(s) from {store.location}: {', '.join(map(str, deleted))}")
        if vacuum:
            _vacuum(store)


@app.command("thin", short_help="Delete most of runs' kernel snapshots, keeping every K-th step.")
def thin_command(
    runs: Annotated[list[int], typer.Argument(help="Run ids to thin.", show_default=False)],
    keep_every: Annotated[
        Optional[int], typer.Option(min=1, help="Keep every K-th step (step % K == 0) [default: none beyond the ones below].")
    ] = None,
    keep_epochs: Annotated[bool, typer.Option("--keep-epochs/--drop-epochs", help="Keep each epoch's last step.")] = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be deleted.")] = False,
    vacuum: Annotated[
        bool, typer.Option("--vacuum", help="Then shrink the SQLite file (rewrites it; can take a while).")
    ] = False,
    db: Db = None,
) -> None:
    """Delete kernel snapshots of stopped runs, keeping step 0, every K-th step, each epoch's last
    step and a finished run's final step; one transaction per run; metrics and checkpoints stay.

    Reports the rows deleted and the bytes freed per run (kept snapshots whose base step went are
    stored again as deltas of the step kept before them). The freed space is reused by later runs; --vacuum
    (or `convexp db vacuum`) gives it back to the file system. A queued or running run is refused.
    Analysis, compare, pictures, the report and the UI use the steps that remain."""
    from convexp.store import Store
    from convexp.store.space import format_bytes, thin_run

    with Store(db, must_exist=True) as store:
        freed = 0
        for run_id in runs:
            result = thin_run(store, run_id, keep_every=keep_every, keep_epochs=keep_epochs, dry_run=dry_run)
            freed += result.deleted_bytes
            verb = "would delete" if dry_run else "deleted"
            typer.echo(
                f"run {run_id}: {verb} {result.deleted_rows:,} snapshot row(s), {format_bytes(result.deleted_bytes)} of kernels; "
                f"{result.kept_steps:,} step(s) kept"
            )
        if len(runs) > 1:
            typer.echo(f"{'would free' if dry_run else 'freed'} {format_bytes(freed)} in all")
        if vacuum and not dry_run:
            _vacuum(store)


@app.command("pack", short_help="Store runs' kernel snapshots as XOR deltas (about 30% smaller), keeping every step.")
def pack_command(
    runs: Annotated[list[int], typer.Argument(help="Run ids to pack.", show_default=False)],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be freed.")] = False,
    vacuum: Annotated[
        bool, typer.Option("--vacuum", help="Then shrink the SQLite file (rewrites it; can take a while).")
    ] = False,
    db: Db = None,
) -> None:
    """Re-encode the kernel snapshots of stopped runs as XOR deltas of the step before (what convexp
    writes since schema 0006; runs recorded earlier, or with CONVEXP_SNAPSHOT_ENCODING=raw, are raw
    float32). Every step stays and reads back bit for bit; one transaction per run."""
    from convexp.store import Store
    from convexp.store.space import format_bytes, pack_run

    with Store(db, must_exist=True) as store:
        for run_id in runs:
            result = pack_run(store, run_id, dry_run=dry_run)
            typer.echo(
                f"run {run_id}: {'would re-encode' if dry_run else 're-encoded'} {result.rewritten_rows:,} snapshot row(s), "
                f"{'would free' if dry_run else 'freed'} {format_bytes(result.deleted_bytes)}"
            )
        if vacuum and not dry_run:
            _vacuum(store)


@app.command("vacuum", short_help="Give the space of deleted rows back to the file system.")
def vacuum_command(db: Db = None) -> None:
    """Rewrite a SQLite database without the space deleted or thinned runs left behind (SQLite's VACUUM;
    needs free space about the size of the file while it runs). PostgreSQL reuses the space itself;
    to shrink its files, run VACUUM FULL on the tables kernel_snapshots and metrics there."""
    from convexp.store import Store

    with Store(db, must_exist=True) as store:
        _vacuum(store)


def _vacuum(store) -> None:
    from convexp.store.database import sqlite_path
    from convexp.store.space import format_bytes

    path = sqlite_path(store.url)
    if path is None:
        typer.echo(
            f"{store.location}: PostgreSQL reuses the space of deleted rows itself; to give it back to the file "
            "system run `VACUUM FULL kernel_snapshots; VACUUM FULL metrics;` there"
        )
        return
    before = path.stat().st_size
    store.compact()
    after = path.stat().st_size
    typer.echo(f"{store.location}: {format_bytes(before)} -> {format_bytes(after)} (gave back {format_bytes(before - after)})")
