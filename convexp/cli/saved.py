"""``convexp import``: a saved model's filters as a run."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

from convexp.cli.app import app
from convexp.cli.options import Db


@app.command("import", short_help="Record a saved model's conv kernels as a run (one snapshot per file).")
def import_command(
    files: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE...",
            help="Saved weights: a PyTorch state dict or checkpoint (.pt, .pth, Lightning's .ckpt), .safetensors, an "
            "ONNX model (.onnx), a Keras model (.keras) or its weights (.weights.h5). Several files are one run, a "
            "snapshot each.",
        ),
    ],
    experiment: Annotated[str, typer.Option("--experiment", "-e", help="The experiment the run belongs to.")],
    layers: Annotated[
        Optional[str], typer.Option(metavar="A,B", help="Only these conv layers (their names in the file, e.g. features.0).")
    ] = None,
    steps: Annotated[
        Optional[str],
        typer.Option(
            metavar="S1,S2",
            help="The step of each file, in the order given [default: the step a checkpoint records (Lightning's "
            "global_step), else the first number in each file name, else their order].",
        ),
    ] = None,
    name: Annotated[Optional[str], typer.Option(help="A name for the run.")] = None,
    db: Db = None,
) -> None:
    """Record the conv kernels of saved model files as one run, so that `show`, `filters`, `compare`, `plot`,
    `report` and the web UI read them as any run's.

    Conv kernels are the 4-D NAME.weight tensors of a state dict (NAME.bias as their bias), the kernels feeding
    an ONNX graph's Conv nodes, or a Keras model's Conv2D, DepthwiseConv2D and SeparableConv2D layers, stored
    (out, in / groups, kh, kw) float32. A torch file is read with
    weights_only=True: a pickled whole model is refused (save its state dict). Every file is read and checked
    before anything is written; a file imported before is refused with the run it went into."""
    from convexp.errors import ConvexpError
    from convexp.tracking.importing import import_files

    try:
        chosen_steps = [int(s) for s in steps.split(",")] if steps else None
    except ValueError:
        raise ConvexpError(f"--steps {steps!r}: whole numbers separated by commas, one per file") from None
    chosen_layers = [name.strip() for name in layers.split(",") if name.strip()] if layers else None
    made = import_files(files, experiment, db, layers=chosen_layers, steps=chosen_steps, name=name)
    where = "" if db is None else f" --db {shlex.quote(db)}"
    steps_text = ", ".join(str(step) for step, _ in made.steps)
    typer.echo(
        f"imported {len(made.steps)} file(s) as run {made.run_id} in {made.location}: step(s) {steps_text}; "
        f"layers {', '.join(made.layers)}"
    )
    typer.echo(f"next: `convexp show {made.run_id}{where}`, `convexp filters {made.run_id}{where}`", err=True)
