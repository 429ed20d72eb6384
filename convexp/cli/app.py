"""The ``convexp`` Typer app itself, on which each command module registers its commands (a module of its own, so
that the command modules and the package that gathers them do not import each other)."""

from __future__ import annotations

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
