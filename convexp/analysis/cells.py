"""How a value read from the database is shown as text (tables, CSV, JSON, the web pages)."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any


def plain_value(value: Any) -> Any:
    """A cell as text-based outputs show it: bytes as '<N bytes>', times as 'YYYY-MM-DD HH:MM:SS'; anything else as it is."""
    if isinstance(value, (bytes, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return value


#: The field a JSON object gains where one of its numbers was not finite: {name: "nan" | "inf" | "-inf"}.
NON_FINITE_FIELD = "non_finite"


def finite_json(value: Any) -> Any:
    """``value`` as valid JSON can hold it: a NaN or infinity becomes null (JSON has no such numbers), and an
    object holding one gains :data:`NON_FINITE_FIELD` saying which member was what; numpy scalars and
    arrays become plain numbers and lists."""
    if isinstance(value, float) or type(value).__module__ == "numpy":
        if hasattr(value, "tolist"):
            value = value.tolist()
            if not isinstance(value, float):
                return finite_json(value)
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        out, reasons = {}, {}
        for key, member in value.items():
            out[key] = finite_json(member)
            if out[key] is None and member is not None:
                number = float(member)
                reasons[key] = "nan" if math.isnan(number) else ("inf" if number > 0 else "-inf")
        if reasons:
            out[NON_FINITE_FIELD] = reasons
        return out
    if isinstance(value, (list, tuple)):
        return [finite_json(member) for member in value]
    return value


def json_text(value: Any, **options: Any) -> str:
    """The one way convexp writes JSON (the CLI's ``--format json``, the web app's answers): always valid JSON,
    non-finite numbers as null with the reason beside them (:func:`finite_json`), other values as text."""
    return json.dumps(finite_json(value), allow_nan=False, default=lambda v: str(plain_value(v)), **options)
