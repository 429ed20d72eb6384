"""How much memory this machine can give now, and what a process has used: a leaf, so that reading outside data can
check its sizes against it without importing what estimates a run's memory."""

from __future__ import annotations

import os


def proc_bytes(path: str, field: str) -> int | None:
    """A size Linux reports in kB in a /proc file (``MemAvailable:`` of /proc/meminfo, ``VmHWM:`` of
    /proc/self/status), in bytes; None where the file or the field is not there."""
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def available_memory() -> int | None:
    """The memory this machine can give a new process now (Linux's MemAvailable), else its physical
    memory; None where neither can be read."""
    available = proc_bytes("/proc/meminfo", "MemAvailable:")
    if available is not None:
        return available
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
