"""``convexp data``: getting datasets onto this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    help="Datasets: download or import MNIST, Fashion-MNIST, KMNIST or CIFAR-10 into the convexp cache.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _collection(name: str):
    from convexp.datasets import downloadable

    return downloadable(name)


@app.command("import", short_help="Import a dataset's files, checking their MD5s.")
def import_command(
    directory: Annotated[
        Path,
        typer.Argument(
            help="Folder holding the dataset's files: the four IDX files (MNIST: .gz or plain; the others: .gz), "
            "or cifar-10-python.tar.gz."
        ),
    ],
    dataset: Annotated[str, typer.Option(help="Which dataset they are: mnist, fashion-mnist, kmnist or cifar10.")] = "mnist",
) -> None:
    """Copy a dataset's files into the convexp cache after checking the published MD5s."""
    collection = _collection(dataset)
    written = collection.import_files(directory)
    for path in written.values():
        typer.echo(f"verified and copied {path}")
    typer.echo(f"{collection.title} is ready in {collection.cache_dir()}")


@app.command("fetch", short_help="Download a dataset, checking its MD5s.")
def fetch_command(
    dataset: Annotated[str, typer.Argument(help="Dataset to download: mnist, fashion-mnist, kmnist or cifar10.")],
    mirror: Annotated[
        Optional[list[str]],
        typer.Option(
            "--mirror",
            help="Base URL to download from (repeat for several, tried in order); default: the dataset's public mirrors.",
        ),
    ] = None,
    attempts: Annotated[int, typer.Option(help="Tries per mirror, resuming a broken transfer.")] = 3,
    timeout: Annotated[float, typer.Option(help="Seconds without data before a try fails.")] = 30.0,
) -> None:
    """Download a dataset into the convexp cache, verifying each file's published MD5."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

    collection = _collection(dataset)
    tasks: dict[str, TaskID] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), transient=True) as bar:

        def progress(name: str, done: int, total: int | None) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done, total=total)

        written = collection.fetch(mirror, attempts=attempts, timeout=timeout, progress=progress)
    for path in written.values():
        typer.echo(f"verified {path}")
    typer.echo(f"{collection.title} is ready in {collection.cache_dir()}")
