"""Options shared by several commands, defined once."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from convexp.cli.output import Format

Db = Annotated[
    Optional[str],
    typer.Option("--db", help="Results database: a SQLAlchemy URL or a SQLite file path [default: $CONVEXP_DB or ./convexp.db]."),
]
DataDir = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        help="Folder with dataset files (e.g. the MNIST IDX files) [default: $CONVEXP_DATA_DIR, else the convexp cache].",
    ),
]
OutputFormat = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]


class PaddingChoice(str, enum.Enum):
    """A conv layer's padding, as the layers spell it."""

    valid = "valid"
    same = "same"
