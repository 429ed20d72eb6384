"""Keep freed memory in the process while training, instead of handing it back to the OS every step.

A training step allocates and frees the same large buffers (activations, gradients) over and
over. With glibc's default settings, buffers above a size threshold are mmap-ed and unmapped,
and freed heap memory is trimmed back to the OS, so every step faults the same pages in again.
On this project's 2-core benchmark machine that cost a quarter of a PyTorch epoch. Raising
glibc's mmap and trim thresholds keeps the memory in the process and reuses it, as PyTorch's
own performance guide suggests doing with a different allocator.

Only glibc (Linux) is tuned; elsewhere this does nothing. Set ``CONVEXP_MALLOC_TUNING=0`` to
leave the allocator as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from convexp.errors import ConvexpError

TUNING_ENV = "CONVEXP_MALLOC_TUNING"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
_THRESHOLD = 1 << 30
_tuned: bool | None = None


def tuning_setting() -> str:
    """``CONVEXP_MALLOC_TUNING``: '1' (the default) or '0'; anything else is one line naming it."""
    setting = os.environ.get(TUNING_ENV, "1").strip() or "1"
    if setting not in ("0", "1"):
        raise ConvexpError(f"{TUNING_ENV}={setting!r}: use 1 to keep freed memory for reuse (the default) or 0 not to")
    return setting


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once); returns whether it did."""
    global _tuned
    if _tuned is not None:
        return _tuned
    setting = tuning_setting()
    _tuned = False
    if setting == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _tuned = bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))
    return _tuned
