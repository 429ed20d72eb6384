"""Printing rows as a table, CSV or JSON: the one place the CLI formats data."""

from __future__ import annotations

import csv
import enum
import io
import re
import sys
from collections.abc import Sequence
from typing import Any

from convexp.analysis.cells import json_text
from convexp.analysis.cells import plain_value as _plain


class Format(str, enum.Enum):
    """Output formats for commands whose output is data."""

    table = "table"
    json = "json"
    csv = "csv"


_ASCII_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def printable(text: str) -> str:
    """``text`` safe to show on a terminal: every control or format character but newline and tab written as its
    Python escape (an escape sequence in a note prints as ``\\x1b]0;...``, it cannot set the window title or
    move the cursor). The one rule for everything the CLI prints (see :func:`protect_terminal`)."""
    if text.isascii():
        return _ASCII_CONTROLS.sub(lambda m: m.group().encode("unicode_escape").decode(), text)
    return "".join(c if c.isprintable() or c in "\n\t" else c.encode("unicode_escape").decode() for c in text)


def shortened(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters for a confirmation line, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


class _PrintableStream:
    """A text stream that writes through :func:`printable`: what convexp prints cannot drive the terminal."""

    def __init__(self, raw: Any):
        self.raw = raw

    def write(self, text: str) -> int:
        self.raw.write(printable(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


def protect_terminal() -> None:
    """Put :func:`printable` between convexp and its stdout and stderr (the CLI's entry point does, once).
    Rich, whose own escape codes draw colours and progress bars, writes to the raw streams and escapes the
    text it is given itself (:func:`console`)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, _PrintableStream):
            setattr(sys, name, _PrintableStream(stream))


def console(stderr: bool = False, **options: Any):
    """A rich Console for the CLI: user text (experiment names, messages) is data, so rich's markup
    highlighting and ``:emoji:`` codes are off -- an experiment ``a:b`` with backend numpy prints as
    ``a:b:numpy``, never with an emoji -- and control characters in it are escaped (:func:`printable`)."""
    from rich.console import Console

    class PrintableConsole(Console):
        def render_str(self, text: str, **kwargs: Any):  # every str printed becomes Text here
            return super().render_str(printable(text), **kwargs)

    stream = sys.stderr if stderr else sys.stdout
    if isinstance(stream, _PrintableStream) and "file" not in options:
        options["file"] = stream.raw
    return PrintableConsole(stderr=stderr, highlight=False, emoji=False, **options)


def _cell(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return printable(str(value))


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: Format = Format.table, title: str | None = None) -> None:
    """Print rows under column names in the chosen format (tables go through rich)."""
    if fmt == Format.json:
        sys.stdout.write(json_text([{c: _plain(v) for c, v in zip(columns, row)} for row in rows], indent=2) + "\n")
    elif fmt == Format.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if v is None else _plain(v) for v in row] for row in rows])
        sys.stdout.write(buffer.getvalue())
    else:
        cells = [[_cell(v) for v in row] for row in rows]
        if not sys.stdout.isatty() and not any(_needs_rich(c) for row in cells for c in row):
            sys.stdout.write(plain_table(columns, cells, title))
            return
        from rich.table import Table
        from rich.text import Text

        table = Table(title=None if title is None else Text(title), show_edge=False, header_style="bold")
        for column in columns:
            table.add_column(Text(column), overflow="fold")

        for row in cells:
            # Text cells are never read as markup: a value like "[red]" is data and prints as written.
            table.add_row(*(Text(c) for c in row))
        # Piped output is data: never squeeze it to an imagined 80-column terminal.
        console(width=None if sys.stdout.isatty() else 10_000).print(table)


def _needs_rich(text: str) -> bool:
    """A cell rich lays out in more than one line, or expands: left to rich."""
    return any(c in text for c in "\n\r\t")


def plain_table(columns: Sequence[str], cells: Sequence[Sequence[str]], title: str | None = None) -> str:
    """The table exactly as rich prints it to a pipe (no edge, one space of padding, a heavy header rule),
    built directly: rich takes about 2 ms a row, and `convexp runs` of 1,000 runs took 2 s to print."""
    from rich.cells import cell_len

    widths = [max([cell_len(c), *(cell_len(row[i]) for row in cells)]) for i, c in enumerate(columns)]

    def line(values: Sequence[str], separator: str) -> str:
        return separator.join(f" {v}{' ' * (w - cell_len(v))} " for v, w in zip(values, widths))

    lines = []
    if title:  # centred and wrapped over the table's width by rich itself, as its tables do (an empty one: none)
        from rich.console import Console
        from rich.text import Text

        total = sum(w + 2 for w in widths) + len(widths) - 1
        console = Console(file=io.StringIO(), width=max(total, 1), emoji=False)
        for rendered in console.render_lines(
            Text(title, justify="center"), console.options.update_width(max(total, 1)), pad=True
        ):
            lines.append("".join(segment.text for segment in rendered))
    lines.append(line(columns, "┃"))
    lines.append("╇".join("━" * (w + 2) for w in widths))
    lines.extend(line(row, "│") for row in cells)
    return "\n".join(lines) + "\n"
