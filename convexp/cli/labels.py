"""``convexp name``, ``convexp tag`` and ``convexp note``: what the user calls a run."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from convexp.cli.app import app
from convexp.cli.options import Db, Run


def _labels_line(run) -> str:
    """The confirmation of a change: the run's labels, long notes cut short (`convexp show` prints them whole)."""
    from convexp.cli.output import shortened

    name = f" '{run.name}'" if run.name else ""
    tags = ", ".join(run.tags or ()) or "none"
    notes = f"; notes: {shortened(run.notes)}" if run.notes else ""
    return f"run {run.id}{name}: tags {tags}{notes}"


@app.command("name", short_help="Give a run a name (shown by runs, show and the UI).")
def name_command(
    run: Run,
    name: Annotated[Optional[str], typer.Argument(help="The name; leave it out with --clear to remove the name.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the run's name.")] = False,
    db: Db = None,
) -> None:
    """Name a run: one line of text shown beside its id by `convexp runs`, `convexp show` and the UI."""
    from convexp.analysis.selection import select_run
    from convexp.errors import ConvexpError
    from convexp.store import Store
    from convexp.store.labels import set_name

    if (name is None) == (not clear):
        raise ConvexpError("give a name, or --clear to remove the run's name")
    with Store(db, must_exist=True) as store:
        typer.echo(_labels_line(set_name(store, select_run(store, run).id, None if clear else name)))


@app.command("tag", short_help="Add tags to a run, or --remove them.")
def tag_command(
    run: Run,
    tags: Annotated[list[str], typer.Argument(metavar="TAG...", help="Tags: words without spaces or commas.")],
    remove: Annotated[bool, typer.Option("--remove", help="Remove these tags instead of adding them.")] = False,
    db: Db = None,
) -> None:
    """Tag a run (or --remove tags from it). `convexp runs --tag T` and the UI's tag filter list the runs
    with a tag; an experiment's `tags:` field tags each of its runs when it is made."""
    from convexp.analysis.selection import select_run
    from convexp.store import Store
    from convexp.store.labels import change_tags

    with Store(db, must_exist=True) as store:
        run_id = select_run(store, run).id
        changed = change_tags(store, run_id, remove=tags) if remove else change_tags(store, run_id, add=tags)
        typer.echo(_labels_line(changed))


@app.command("note", short_help="Write a run's notes (shown by show and the UI).")
def note_command(
    run: Run,
    text: Annotated[
        Optional[str], typer.Argument(help="The notes (they replace the run's notes); '-' reads them from stdin.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the run's notes.")] = False,
    db: Db = None,
) -> None:
    """Write a run's notes: free text of any length, shown by `convexp show` and on the run's page."""
    import sys

    from convexp.analysis.selection import select_run
    from convexp.errors import ConvexpError
    from convexp.store import Store
    from convexp.store.labels import set_notes

    if (text is None) == (not clear):
        raise ConvexpError("give the notes, '-' to read them from stdin, or --clear to remove them")
    if text == "-":
        text = sys.stdin.read().rstrip("\n")
    with Store(db, must_exist=True) as store:
        typer.echo(_labels_line(set_notes(store, select_run(store, run).id, None if clear else text)))
