"""Checking a file a command is about to write, before any work is done for it.

A picture that took a minute to draw should not be lost to a missing folder or a suffix
no writer knows: commands check their ``--out`` first and fail with one line naming it.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from convexp.errors import OutputError


def check_output_path(path: Path, option: str = "--out", suffixes: Collection[str] | None = None) -> Path:
    """Return ``path`` if its folder exists and is writable and its suffix is one of ``suffixes``
    (lower case, with the dot; None: any); else raise :class:`OutputError` naming the option."""
    path = Path(path)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        wanted = ", ".join(sorted(suffixes))
        raise OutputError(f"{option} {path}: cannot write '{path.suffix or '(no suffix)'}' files; use one of {wanted}")
    folder = path.parent
    if not folder.is_dir():
        raise OutputError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: the folder {folder} is not writable")
    if path.is_dir():
        raise OutputError(f"{option} {path}: is a folder; give a file name")
    return path
