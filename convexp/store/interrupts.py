"""Holding Ctrl-C and SIGTERM back while a write transaction runs.

Python raises KeyboardInterrupt wherever the main thread happens to be. Inside a write, that
can be between SQLite's ``BEGIN IMMEDIATE`` and the point where SQLAlchemy knows a transaction
is open: the connection then keeps the write lock while the exception's traceback keeps it
alive, and the run's final "interrupted" write waits out the busy timeout and fails (seen as a
60 s shutdown leaving the run marked running). A write is short, so the signal is held until
the transaction has committed or rolled back, then delivered to the handler that was there.
(A write waiting for another process's lock finishes that wait, at most the busy timeout, first.)
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Run the block with SIGINT and SIGTERM held back; deliver any that arrived once it is over.

    Only the main thread receives signals, so elsewhere (a Dask worker's task thread) this does
    nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    for signum in _SIGNALS:
        previous[signum] = signal.getsignal(signum)
        if previous[signum] not in (signal.SIG_IGN, None):
            signal.signal(signum, lambda number, _frame: received.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if handler is not None:
                signal.signal(signum, handler)
        for signum in dict.fromkeys(received):
            signal.raise_signal(signum)  # now the original handler runs (KeyboardInterrupt, or exit)
