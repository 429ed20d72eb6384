"""The ``convexp`` Typer app itself, on which each command module registers its commands (a module of its own, so
that the command modules and the package that gathers them do not import each other)."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    name="convexp",
    help="See what convolution filters are: how frameworks initialise them, what a conv layer "
    "computes, and what the filters become as a network learns.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    # Help texts are plain text: rich markup would swallow "[default: ...]" and "convexp[dask]".
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from convexp import __version__
        from convexp.store.database import SCHEMA_HEAD

        typer.echo(f"convexp {__version__} (database schema {SCHEMA_HEAD})")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print convexp's version and the database schema revision it writes, and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """The options that come before any command."""
