"""Options shared by several commands, defined once."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from convexp.analysis import PICTURE_KINDS
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
#: Runs by their parameters (``convexp runs``, ``summary``, ``plot summary``; the UI's pages take the same text).
Where = Annotated[
    Optional[list[str]],
    typer.Option(
        "--where",
        "-w",
        metavar="FIELD=VALUE",
        help="Only runs whose parameter FIELD equals VALUE (repeatable: all must hold; numbers compared as numbers); "
        "also FIELD!=VALUE and, for numbers, FIELD<VALUE, <=, >, >=: --where initializer=he_normal "
        "--where 'optimizer.learning_rate<0.01'.",
    ),
]
#: Any field of an experiment, set from the command line.
SetOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--set",
        metavar="PATH=VALUE",
        help="Set any field of the experiment, nested and a layer's too: optimizer.learning_rate=0.001, "
        "layers.0.filters=16, snapshots.every=10. The value is read as YAML; values separated by commas are an axis, "
        "one run each (seed=0,1,2). Repeatable; validated as the experiments file is.",
    ),
]


#: One run, as every command that takes one names it.
Run = Annotated[
    str, typer.Argument(metavar="RUN", help="Run id, or EXPERIMENT:BACKEND for the latest such run (finished first).")
]
#: Several runs.
Runs = Annotated[
    list[str], typer.Argument(metavar="RUN...", help="Runs: ids, or EXPERIMENT:BACKEND for the latest such run (finished first).")
]
#: A snapshot step: a number, first or last.
Step = Annotated[Optional[str], typer.Option(help="Snapshot step to use: a step number, 'first' or 'last'.")]
DEFAULT_STEP = "last"
DEFAULT_LAYER = "conv1"


class Executor(str, enum.Enum):
    """Where the runs of `convexp run` execute."""

    local = "local"
    dask = "dask"


class Device(str, enum.Enum):
    """Where a run trains (the spec's ``device``)."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


#: The pictures `convexp plot` draws, as choices the parser checks.
PlotKind = enum.Enum("PlotKind", {kind: kind for kind in PICTURE_KINDS}, type=str)  # type: ignore[misc]


class StatusChoice(str, enum.Enum):
    """A run's status as `convexp runs` shows it (stale: marked running, but its process is gone);
    convexp.store.models.RUN_STATUSES plus stale (a test keeps them equal)."""

    queued = "queued"
    running = "running"
    finished = "finished"
    failed = "failed"
    interrupted = "interrupted"
    diverged = "diverged"
    pruned = "pruned"
    stale = "stale"


class PaddingChoice(str, enum.Enum):
    """A conv layer's padding, as the layers spell it."""

    valid = "valid"
    same = "same"


def distinct(ids: list[int] | None) -> list[int] | None:
    """Run ids as given, each once (``db thin 1 1`` thins run 1 once, and counts it once)."""
    return None if ids is None else list(dict.fromkeys(ids))
