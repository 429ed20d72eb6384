"""Fields set from the command line, applied to an experiment before it expands: ``--set PATH=VALUE`` (any field,
a layer's too: ``--set layers.0.filters=16``) and the options ``--epochs``, ``--seed``, ``--backend``, ``--device``.

A value is read as YAML (``0.001``, ``true``, ``[3, 3]``, ``{shift: 2}``); values separated by commas outside
brackets and quotes are an axis (``--set seed=0,1,2``), as a list in the experiments file is. A path is checked
against the experiment format before anything runs, and a bad value is refused by the same validation as the
file's, naming what was given on the command line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from convexp.errors import SpecError

#: A number in scientific notation without a decimal point, which YAML 1.1 leaves as text.
_NUMBER = re.compile(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+")


@dataclass(frozen=True)
class Axis:
    """Values given on the command line as one axis (``--set seed=0,1,2``)."""

    values: tuple[Any, ...]


@dataclass(frozen=True)
class Override:
    """A field set from the command line: its dotted ``path``, its ``value`` (an :class:`Axis` for several), and
    ``given``, how the user wrote it (for messages)."""

    path: str
    value: Any
    given: str


def parse_set(text: str) -> Override:
    """``PATH=VALUE`` as given to ``--set``; raises :class:`SpecError` for text that is not one."""
    path, sep, value = text.partition("=")
    path = path.strip()
    if not sep or not path or any(not part for part in path.split(".")):
        raise SpecError(f"--set {text!r}: write PATH=VALUE, e.g. --set optimizer.learning_rate=0.001 or --set seed=0,1,2")
    pieces = split_commas(value)
    values = tuple(_yaml_value(piece, text) for piece in pieces)
    return Override(path, values[0] if len(values) == 1 else Axis(values), f"--set {text}")


def split_commas(text: str) -> list[str]:
    """``text`` split at the commas outside brackets, braces and quotes."""
    pieces, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    pieces.append(text[start:])
    return pieces


def _yaml_value(piece: str, text: str) -> Any:
    if not piece.strip():
        raise SpecError(f"--set {text!r}: an empty value (write --set PATH=VALUE, values separated by commas)")
    try:
        value = yaml.safe_load(piece)
    except yaml.YAMLError as exc:
        raise SpecError(f"--set {text!r}: {piece.strip()!r} is not a YAML value ({str(exc).splitlines()[0]})") from None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)  # 1e-3: YAML 1.1 reads it as text, a user means the number
    return value


def as_overrides(overrides: Mapping[str, Any] | Sequence[Override] | None) -> list[Override]:
    """Overrides as a list: a mapping (field -> value, as ``--epochs`` gives) or :class:`Override`\\ s as they are."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [Override(path, value, f"--{path}") for path, value in overrides.items()]
    return list(overrides)
