"""A network's layer plan as text, for people: its parameter table, a one-line description, and what its conv
filters are in numbers (``convexp run --dry-run``, ``convexp show``, the UI's run page)."""

from __future__ import annotations

from collections.abc import Sequence

from convexp.model.layers import Conv, PlannedLayer, flat
from convexp.model.parameters import parameter_table


def describe_plan(planned: Sequence[PlannedLayer]) -> str:
    """A planned network in one line, each layer with its output shape: ``input[1, 8, 8] -> conv1[32, 6, 6] -> ...``."""
    if not planned:
        return ""
    return " -> ".join([f"input{list(planned[0].input_shape)}", *(f"{p.name}{list(p.output_shape)}" for p in planned)])


def filters_sentence(planned: Sequence[PlannedLayer]) -> str:
    """What a conv layer's filters are, in numbers: '32 filters of 3x3x1 = 288 weights + 32 biases' for each conv layer."""
    parts = []
    for p in flat(planned):
        if isinstance(p.layer, Conv):
            out, channels, kh, kw = p.kernel_shape  # type: ignore[misc]
            parts.append(f"{p.name}: {out} filters of {kh}x{kw}x{channels} = {out * channels * kh * kw} weights + {out} biases")
    if not parts:
        return "This network has no conv layer."
    return (
        "A conv layer's filters are its weights, and with the biases they are the only parameters training "
        "changes there (" + "; ".join(parts) + ")."
    )


def format_parameter_table(planned: Sequence[PlannedLayer]) -> list[str]:
    """The parameter table as aligned text lines, with the total and :func:`filters_sentence` under it."""
    rows = parameter_table(planned)
    statistics = any(r.statistics for r in rows)  # the column is shown for networks with batch_norm layers

    def numbers(weights: int, biases: int, kept: int, parameters: int) -> list[str]:
        return [str(weights), str(biases), *([str(kept)] if statistics else []), str(parameters)]

    cells = [["layer", "output", "kernel", "weights", "biases", *(["statistics"] if statistics else []), "parameters"]]
    cells += [
        [
            ("  " if r.nested else "") + r.name,
            "x".join(map(str, r.output_shape)),
            "x".join(map(str, r.kernel_shape)) if r.kernel_shape else "-",
            *numbers(r.weights, r.biases, r.statistics, r.parameters),
        ]
        for r in rows
    ]
    totals = [sum(r.weights for r in rows), sum(r.biases for r in rows), sum(r.statistics for r in rows)]
    cells.append(["total", "", "", *numbers(totals[0], totals[1], totals[2], sum(r.parameters for r in rows))])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = [
        "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip() for row in cells
    ]
    if statistics:
        lines.append(
            f"trainable: {totals[0] + totals[1]}, non-trainable: {totals[2]} (each batch_norm layer's gamma counts as "
            "weights and beta as biases; its running mean and variance are the statistics)"
        )
    return [*lines, filters_sentence(planned)]
