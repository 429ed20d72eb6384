"""``convexp plugins`` and ``convexp init``: what backends there are, and what their initializers draw."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from convexp.cli.app import app
from convexp.cli.options import Device, OutputFormat
from convexp.cli.output import Format, render

if TYPE_CHECKING:
    import numpy as np


@app.command("plugins", short_help="List the backends and whether each is usable.")
def plugins_command(fmt: OutputFormat = Format.table) -> None:
    """List every backend found through the convexp.backends entry points, whether it is usable, and
    which of convexp's layers and activations it does not implement (an experiment that needs one is
    refused by `validate` and `run`)."""
    from convexp.backends.features import described
    from convexp.backends.registry import describe_backends

    infos = describe_backends()
    columns = ["name", "plugin", "plugin_version", "framework", "framework_version", "usable", "reason", "lacks"]
    rows = [
        [i.name, i.plugin, i.plugin_version, i.framework, i.version, i.usable, i.reason, described(i.missing) or None]
        for i in infos
    ]
    render(columns, rows, fmt)


@app.command("init", short_help="Explain an initializer: formula, fan_in, fan_out.")
def init_command(
    name: Annotated[str, typer.Argument(help="Initializer name, e.g. glorot_uniform, he_normal, torch_default, default.")],
    shape: Annotated[
        str, typer.Option(help="Conv kernel shape as Keras writes it: kh,kw,in_channels,out_channels.")
    ] = "3,3,1,32",
    backend: Annotated[str, typer.Option(help="Backend whose initializer to explain and draw from.")] = "numpy",
    sample: Annotated[bool, typer.Option("--sample", help="Draw a kernel and compare its statistics with the theory.")] = False,
    seed: Annotated[int, typer.Option(help="Seed for --sample.")] = 0,
) -> None:
    """Explain an initializer for a conv kernel: formula, fan_in, fan_out, limit or stddev, variance."""
    from convexp.backends.registry import get_backend
    from convexp.model.initializers import explain, get_initializer, shape_from_hwio

    canonical = shape_from_hwio(shape)
    chosen = get_backend(backend, require_usable=sample)
    concrete = chosen.resolve_initializer(name)
    if name not in chosen.initializer_names():
        from convexp.errors import UnknownNameError, did_you_mean

        known = chosen.initializer_names()
        raise UnknownNameError(
            f"backend '{backend}' has no initializer '{name}'{did_you_mean(name, known)}; known: {', '.join(known)}"
        )
    e = explain(concrete, canonical)
    out_c, in_c, kh, kw = canonical
    alias = f" (backend {backend}'s default)" if concrete != name else ""
    lines = [
        f"{e.initializer.name}{alias} for a conv kernel (kh, kw, in, out) = ({kh}, {kw}, {in_c}, {out_c})",
        f"  stored as (out, in, kh, kw) = {canonical}: {e.weights} weights",
        f"  formula   {e.initializer.formula}",
        f"  fan_in    = kh*kw*in  = {kh}*{kw}*{in_c} = {e.fans.fan_in}",
        f"  fan_out   = kh*kw*out = {kh}*{kw}*{out_c} = {e.fans.fan_out}",
        f"  {e.initializer.parameter_name():<9} = {e.parameter:.6g}",
        f"  range     [{e.theory.low:.6g}, {e.theory.high:.6g}]",
        f"  mean      {e.theory.mean:.6g}",
        f"  variance  {e.theory.variance:.6g}  (std {e.theory.variance**0.5:.6g})",
        f"  source    {e.initializer.reference}",
    ]
    if name == "default":
        bias = get_initializer(chosen.resolve_initializer(name, "bias"))
        lines.append(f"  bias      {bias.name}, {bias.parameter_name()} = {bias.scale(e.fans):.6g} (fans of the kernel)")
    typer.echo("\n".join(lines))
    if sample:
        drawn = chosen.initialize(concrete, canonical, seed)
        stats = SampleStats.of(drawn)
        typer.echo(f"\nsample of {drawn.size} weights drawn by backend '{backend}' with seed {seed}:")
        render(
            ["statistic", "sample", "theory"],
            [
                ["min", stats.low, e.theory.low],
                ["max", stats.high, e.theory.high],
                ["mean", stats.mean, e.theory.mean],
                ["variance", stats.variance, e.theory.variance],
            ],
        )


@app.command("check", short_help="Run the conformance checks on a backend.")
def check_command(
    backend: Annotated[str, typer.Argument(help="Backend to check, e.g. torch, or your plugin's backend.")],
    device: Annotated[
        Device, typer.Option(help="Where the backend trains in the training checks (cuda: a GPU, or an error).")
    ] = Device.cpu,
    fmt: OutputFormat = Format.table,
) -> None:
    """Run the conformance checks on a backend: conv, initializers, the first steps of SGD, momentum, Nesterov and
    Adam, a strided 'same' conv layer, dropout's scaling, snapshots, the trainer, reproducibility and resume.

    The numpy backend is the reference. A check that cannot run on the backend says 'skipped' with the reason.
    Exits 1 if any check fails.
    """
    from convexp.backends.conformance.checks import check_backend
    from convexp.errors import ConvexpError

    try:
        results = check_backend(backend, device.value)
    except ValueError as exc:
        raise ConvexpError(str(exc)) from None
    render(
        ["check", "result", "seconds", "detail"],
        [[r.name, r.result, round(r.seconds, 2), r.detail] for r in results],
        fmt,
    )
    if not all(r.passed for r in results):
        raise typer.Exit(1)


@dataclass(frozen=True)
class SampleStats:
    """Statistics of a drawn kernel, to hold against :class:`~convexp.model.initializers.TheoreticalStats`."""

    mean: float
    variance: float
    low: float
    high: float

    @classmethod
    def of(cls, values: np.ndarray) -> SampleStats:
        """Mean, variance (population), min and max of an array, computed in float64."""
        import numpy as np

        v = np.asarray(values, dtype=np.float64)
        return cls(float(v.mean()), float(v.var()), float(v.min()), float(v.max()))
