"""``convexp db``: the results database's schema, copying, deleting and thinning runs, reclaiming space."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from convexp.analysis.cells import json_text
from convexp.cli.options import Db, Format, OutputFormat, distinct

app = typer.Typer(
    help="The results database: schema migrations, copying, deleting, thinning and packing runs, reclaiming space, checking for damage.",
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
    run: Annotated[
        Optional[list[int]], typer.Option("--run", help="Copy only this run (repeat for several).", callback=distinct)
    ] = None,
) -> None:
    """Copy runs with their metrics, snapshots and checkpoints from SOURCE into DESTINATION.

    Runs DESTINATION already holds (the same run, by its uid) are skipped, so copying again adds
    only what is new. A run keeps its id where that id is free in DESTINATION.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from convexp.cli.output import console
    from convexp.store import Store
    from convexp.store.copy import copy_runs

    bar = Progress(
        TextColumn("runs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console(stderr=True), transient=True
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
    runs: Annotated[Optional[list[int]], typer.Argument(help="Run ids to delete.", show_default=False, callback=distinct)] = None,
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
    runs: Annotated[list[int], typer.Argument(help="Run ids to thin.", show_default=False, callback=distinct)],
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
    runs: Annotated[list[int], typer.Argument(help="Run ids to pack.", show_default=False, callback=distinct)],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be freed.")] = False,
    vacuum: Annotated[
        bool, typer.Option("--vacuum", help="Then shrink the SQLite file (rewrites it; can take a while).")
    ] = False,
    db: Db = None,
) -> None:
    """Re-encode the kernel snapshots of stopped runs as XOR deltas of the step before (what convexp
    writes since schema 0006; runs recorded earlier, or with CONVEXP_SNAPSHOT_ENCODING=raw, are raw
    float32). Every step stays and reads back bit for bit; one transaction per run. Rows recorded
    before snapshots carried checksums (schema 0007) are given one; a damaged row stops the run's pack."""
    from convexp.store import Store
    from convexp.store.space import format_bytes, pack_run

    with Store(db, must_exist=True) as store:
        for run_id in runs:
            result = pack_run(store, run_id, dry_run=dry_run)
            typer.echo(
                f"run {run_id}: {'would re-encode' if dry_run else 're-encoded'} {result.rewritten_rows:,} snapshot row(s), "
                f"{'would free' if dry_run else 'freed'} {format_bytes(result.deleted_bytes)}"
                + (
                    f"; {'would add' if dry_run else 'added'} {result.checksums_added:,} checksum(s)"
                    if result.checksums_added
                    else ""
                )
            )
        if vacuum and not dry_run:
            _vacuum(store)


@app.command("check", short_help="Find damaged rows: SQLite's integrity check, every snapshot against its checksum.")
def check_command(
    runs: Annotated[
        Optional[list[int]], typer.Argument(help="Run ids to check [default: every run].", show_default=False, callback=distinct)
    ] = None,
    fix: Annotated[
        bool,
        typer.Option(
            "--fix",
            help="Give a checksum to each snapshot recorded without one that decodes (an XOR delta only when the "
            "snapshot it decodes from matched its own checksum).",
        ),
    ] = False,
    db: Db = None,
    fmt: OutputFormat = Format.table,
) -> None:
    """Check the database for silent damage (a bad disk, a copy cut short, a sync tool): SQLite's own
    integrity check of the file, then every kernel snapshot of every run (or of RUNS) decoded and
    compared with the checksum written with it. A damaged snapshot is named with the later steps that
    decode from it (XOR deltas), which cannot be read either. Exits 1 when anything is damaged.

    Snapshots recorded before convexp wrote checksums (schema 0007) are counted as unverified; --fix
    gives each one that decodes its checksum. Damaged rows are left as they are: delete the run
    (`convexp db delete`) or copy it from a backup."""
    import dataclasses

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from convexp.cli.output import console
    from convexp.store.check import check_database

    bar = Progress(
        TextColumn("snapshots"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console(stderr=True),
        transient=True,
    )
    task = bar.add_task("check", total=None)
    with bar:
        report = check_database(db, runs, fix=fix, progress=lambda done, total: bar.update(task, completed=done, total=total))
    if fmt == Format.json:
        typer.echo(json_text({**dataclasses.asdict(report), "ok": report.ok}, indent=2))
    else:
        for line in _check_lines(report):
            typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)


def _check_lines(report) -> list[str]:
    """The check's report as a person reads it: the file, then each run, then a verdict."""
    if report.integrity is None:
        lines = [
            f"{report.location}: no file check for a server's database (PostgreSQL checks its own pages "
            "when its cluster has data checksums on); checking the snapshots"
        ]
    elif report.integrity:
        lines = [f"{report.location}: SQLite's integrity check found {len(report.integrity)} problem(s):"]
        lines += [f"  {problem}" for problem in report.integrity[:20]]
        if len(report.integrity) > 20:
            lines.append(f"  ... and {len(report.integrity) - 20} more")
    else:
        lines = [f"{report.location}: SQLite's integrity check: ok"]
    if report.unreadable:
        lines.append(f"runs cannot be read: {report.unreadable}")
    damaged = dependent = unverified = 0
    for run in report.runs:
        head = f"run {run.run_id} ({run.name}): {run.layers} layer(s), {run.snapshots:,} snapshot(s)"
        if run.unreadable:
            lines.append(f"{head}: cannot be read: {run.unreadable}")
            continue
        if run.damaged:
            lines.append(f"{head}: {len(run.damaged)} damaged")
        elif run.unverified and not run.checksums_added:
            lines.append(f"{head}: {run.verified:,} match their checksums, {run.unverified:,} recorded without one")
        else:
            lines.append(f"{head}: all match their checksums")
        for damage in run.damaged:
            after = ""
            if damage.dependent_steps:
                after = f"; {_steps(damage.dependent_steps)} decode from it and cannot be read"
            lines.append(f"  {damage.layer} step {damage.step}: {damage.reason}{after}")
        if run.checksums_added:
            lines.append(f"  added {run.checksums_added:,} checksum(s) to snapshots recorded without one")
        damaged += len(run.damaged)
        dependent += sum(len(d.dependent_steps) for d in run.damaged)
        unverified += run.unverified - run.checksums_added
    if report.ok:
        lines.append(
            "no damage found" + (f"; {unverified:,} snapshot(s) have no checksum (--fix adds them)" if unverified else "")
        )
    else:
        broken = [r for r in report.runs if not r.ok]
        lines.append(
            f"damaged: {damaged:,} snapshot(s) in {len(broken)} run(s)"
            + (f", {dependent:,} more step(s) depending on them" if dependent else "")
            + ("; the file itself fails its integrity check" if report.integrity else "")
        )
    return lines


def _steps(steps: list[int]) -> str:
    if len(steps) == 1:
        return f"step {steps[0]}"
    if len(steps) <= 6:
        return "steps " + ", ".join(map(str, steps))
    return f"steps {steps[0]} to {steps[-1]} ({len(steps)} steps)"


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
