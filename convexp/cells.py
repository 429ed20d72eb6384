"""How a value read from the database is shown as text (tables, CSV, JSON, the web pages)."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def plain_value(value: Any) -> Any:
    """A cell as text-based outputs show it: bytes as '<N bytes>', times as 'YYYY-MM-DD HH:MM:SS'; anything else as it is."""
    if isinstance(value, (bytes, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return value
