"""Printing rows as a table, CSV or JSON: the one place the CLI formats data."""

from __future__ import annotations

import csv
import enum
import io
import json
import sys
from collections.abc import Sequence
from typing import Any

from convexp.cells import plain_value as _plain


class Format(str, enum.Enum):
    """Output formats for commands whose output is data."""

    table = "table"
    json = "json"
    csv = "csv"


def _cell(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: Format = Format.table, title: str | None = None) -> None:
    """Print rows under column names in the chosen format (tables go through rich)."""
    if fmt == Format.json:
        json.dump([{c: _plain(v) for c, v in zip(columns, row)} for row in rows], sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    elif fmt == Format.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if v is None else _plain(v) for v in row] for row in rows])
        sys.stdout.write(buffer.getvalue())
    else:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(title=None if title is None else Text(title), show_edge=False, header_style="bold")
        for column in columns:
            table.add_column(Text(column), overflow="fold")

        for row in rows:
            # Text cells are never read as markup: a value like "[red]" is data and prints as written.
            table.add_row(*(Text(_cell(v)) for v in row))
        # Piped output is data: never squeeze it to an imagined 80-column terminal.
        Console(width=None if sys.stdout.isatty() else 10_000).print(table)
