"""``convexp data``: getting datasets onto this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Datasets: import MNIST into the convexp cache.", no_args_is_help=True)


@app.command("import")
def import_command(
    directory: Annotated[Path, typer.Argument(help="Folder holding the four MNIST IDX files (.gz or plain).")],
) -> None:
    """Copy MNIST's four IDX files into the convexp cache after checking the published MD5s."""
    from convexp.datasets import mnist

    written = mnist.import_files(directory)
    for path in written.values():
        typer.echo(f"verified and copied {path}")
    typer.echo(f"MNIST is ready in {mnist.cache_dir()}")
