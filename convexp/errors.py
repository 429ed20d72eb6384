"""Exceptions convexp raises on purpose.

Each carries a message written for the user: one line that names the file, field or
value at fault. The CLI catches :class:`ConvexpError` once, at its edge, and prints it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConvexpError(Exception):
    """Base class: an error with a message meant for the user."""

    exit_code = 1


class SpecError(ConvexpError):
    """An experiments file is malformed or names something that does not exist. Its message is one line: a line
    break or other control character a file's key or value brings along is written as an escape (``\\n``)."""

    exit_code = 2

    def __init__(self, message: str = "") -> None:
        super().__init__(one_line(str(message)))


def one_line(text: str) -> str:
    """``text`` with its control characters (line breaks, tabs, escapes) written as Python writes them in a string
    literal (``\\n``, ``\\t``, ``\\x1b``), so that a message quoting what a user wrote stays one line."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


class UnknownNameError(ConvexpError):
    """A backend, initializer, dataset or experiment name that is not known."""

    exit_code = 2


class BackendUnavailableError(ConvexpError):
    """A backend was found but cannot be used here (e.g. its framework is not installed)."""


class DatasetError(ConvexpError):
    """A dataset is missing, truncated or fails its checksum."""


class StoreError(ConvexpError):
    """The results database cannot be opened, migrated or written."""


class DamagedSnapshotError(StoreError):
    """A stored kernel snapshot cannot be read back as the kernel that was written: it does not
    decode, or what it decodes to does not match the checksum written with it."""

    def __init__(self, run_id: int, layer: str, step: int, reason: str, wanted_step: int | None = None):
        self.run_id, self.layer, self.step, self.reason = run_id, layer, step, reason
        via = "" if wanted_step is None or wanted_step == step else f"; step {wanted_step} decodes from it"
        super().__init__(
            f"run {run_id}, layer {layer}: the snapshot at step {step} is damaged ({reason}){via}; "
            f"`convexp db check {run_id}` lists every damaged snapshot"
        )


class DamagedDatabaseError(StoreError):
    """The database file itself is damaged (SQLite finds its pages malformed, or it is no database);
    ``reason`` is what SQLite said."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class SchemaTooNewError(StoreError):
    """The database was written by a newer convexp than this one."""


class RunNotResumableError(StoreError):
    """A run cannot be resumed: it finished, diverged, was pruned, or is still running."""


class RunStillRunningError(RunNotResumableError):
    """A run cannot be resumed yet: its process is alive (its heartbeat is fresh)."""


class QueryError(ConvexpError):
    """A ``convexp query`` statement was refused or failed."""


class OutputError(ConvexpError):
    """A file a command was asked to write cannot be written there, or not in that format."""

    exit_code = 2


class ModelError(ConvexpError, TypeError):
    """A model handed to the recorder is not one convexp can read, or has no conv layer it records."""


class ShapeError(SpecError):
    """An architecture cannot be applied to its input (e.g. a kernel larger than its input)."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_name(kind: str, value: str, choices: Iterable[str]) -> UnknownNameError:
    """Build the error for an unknown name, listing what is known and the closest match."""
    known = sorted(choices)
    return UnknownNameError(f"unknown {kind} '{value}'{did_you_mean(value, known)}; known: {', '.join(known) or 'none'}")
