"""The recording settings read from the environment -- which writer records (``CONVEXP_WRITER``) and how new
snapshots are encoded (``CONVEXP_SNAPSHOT_ENCODING``) -- checked before anything is written, so that a bad one is
one line and nothing else."""

from __future__ import annotations

import os

from convexp.errors import StoreError
from convexp.store.encoding import default_encoding

#: Where the writer is chosen: ``auto`` (the default: in the training process until recording proves
#: heavy, then in a process of its own), ``process`` (a process of its own from the start) or
#: ``thread`` (always the writer thread of :class:`~convexp.store.background.BackgroundWriter`, in the training
#: process).
WRITER_ENV = "CONVEXP_WRITER"
WRITERS = ("auto", "process", "thread")


def writer_kind() -> str:
    """The writer recording uses: ``CONVEXP_WRITER``, or ``auto``."""
    chosen = os.environ.get(WRITER_ENV, "auto")
    if chosen not in WRITERS:
        raise StoreError(f"{WRITER_ENV}={chosen!r} is not a writer; use one of {', '.join(WRITERS)}")
    return chosen


def check_recording_settings() -> None:
    """Refuse a bad ``CONVEXP_SNAPSHOT_ENCODING`` or ``CONVEXP_WRITER`` in one line (no store needed). Training's
    own setting, ``CONVEXP_MALLOC_TUNING``, is checked by :mod:`convexp.experiments.allocator`."""
    default_encoding()
    writer_kind()
