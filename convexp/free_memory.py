"""How much memory this machine can give now: a leaf, so that reading outside data can check its sizes against it
without importing what estimates a run's memory."""

from __future__ import annotations

import os


def available_memory() -> int | None:
    """The memory this machine can give a new process now (Linux's MemAvailable), else its physical
    memory; None where neither can be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
