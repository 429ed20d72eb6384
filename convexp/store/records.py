"""Plain records the store hands out and takes in: no ORM objects leave the store."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


#: The largest id a database holds (a signed 64-bit integer): a larger one names no run.
MAX_ID = 2**63 - 1

#: A running run that has written no heartbeat for this long is shown as stale. The recorder
#: writes one at least every :data:`convexp.store.background.HEARTBEAT_SECONDS` (1 s).
STALE_AFTER_SECONDS = 30.0


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    except OverflowError:  # no process has such a pid
        return False
    return True


def process_started_at(pid: int) -> datetime | None:
    """When the process ``pid`` of this host started (UTC, naive), or None where that cannot be read
    (not Linux, no such process)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        with open("/proc/stat", encoding="ascii") as system:
            boot = next(int(line.split()[1]) for line in system if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    ticks = int(fields[19])  # field 22 of stat: start time in clock ticks after boot
    seconds = boot + ticks / os.sysconf("SC_CLK_TCK")
    return datetime.fromtimestamp(seconds, timezone.utc).replace(tzinfo=None)


def owner_alive(pid: int, owner_started: datetime | None, since: datetime | None) -> bool:
    """Whether the process ``pid`` of this host is alive and is the run's owner: the process that started
    at ``owner_started`` (as recorded), or, where that was not recorded, one that started no later than
    the heartbeat at ``since`` -- a process started since merely reuses the pid of one that died."""
    if not _process_alive(pid):
        return False
    started = process_started_at(pid)
    if started is None:
        return True
    if owner_started is not None:
        return abs(started - owner_started) <= timedelta(seconds=1)
    return since is None or started <= since + timedelta(seconds=1)


def owner_gone(
    pid: int | None, host: str | None, owner_started: datetime | None, last_sign: datetime, now: datetime | None = None
) -> bool:
    """Whether the process recording a running run is gone: on this host, its owner process (``pid``, started at
    ``owner_started``) decides; a run of another host is gone once its last sign of life (``last_sign``: its
    heartbeat, else its start) is :data:`STALE_AFTER_SECONDS` old."""
    if host == socket.gethostname() and pid is not None:
        return not owner_alive(pid, owner_started, last_sign)
    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    return now - last_sign > timedelta(seconds=STALE_AFTER_SECONDS)


@dataclass(frozen=True)
class RunRecord:
    """A row of ``runs`` plus the run's last test accuracy."""

    id: int
    experiment: str
    backend: str
    status: str
    seed: int
    dataset: str
    kernel_initializer: str
    bias_initializer: str
    spec: dict[str, Any]
    convexp_version: str
    backend_version: str
    framework: str
    framework_version: str
    epochs_completed: int
    steps_completed: int
    started_at: datetime
    finished_at: datetime | None
    message: str | None
    heartbeat_at: datetime | None
    pid: int | None
    host: str | None
    attempts: int
    uid: str | None
    data_source: dict[str, Any] | None
    device: str | None
    owner_started_at: datetime | None
    name: str | None
    tags: list[str] | None
    notes: str | None
    test_accuracy: float | None
    #: The sweep it is a trial of, and its trial number there (None for any other run).
    sweep_id: int | None = None
    trial: int | None = None
    #: Recorded under a budget: what was kept and why (:meth:`convexp.store.budget.RecordingBudget.summary`), else None.
    recording: dict[str, Any] | None = None

    def is_stale(self, now: datetime | None = None) -> bool:
        """Whether a run still marked running has died. On this host its owner process decides: alive
        (and not a later process reusing its pid), the run is running however long the backend has been
        quiet; gone, it is stale. A run of another host is stale once it has written no heartbeat for
        :data:`STALE_AFTER_SECONDS`."""
        if self.status != "running":
            return False
        return owner_gone(self.pid, self.host, self.owner_started_at, self.heartbeat_at or self.started_at, now)

    def shown_status(self, now: datetime | None = None) -> str:
        """The status to show: ``stale`` for a running run whose process died, else the recorded one."""
        return "stale" if self.is_stale(now) else self.status

    @property
    def seconds(self) -> float | None:
        """Wall time from start to finish (None while running)."""
        return None if self.finished_at is None else (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class MetricRecord:
    """One metric value at one step (read from, or to be written to, ``metrics``)."""

    step: int
    epoch: int
    name: str
    value: float
    #: When the training loop handed the value over (Unix seconds); None in rows recorded before 0009.
    wall_time: float | None = None


@dataclass(frozen=True)
class SnapshotToWrite:
    """A conv layer's kernel (out, in, kh, kw) and bias (out,) to write."""

    layer: str
    step: int
    epoch: int
    kernel: np.ndarray
    bias: np.ndarray | None


@dataclass(frozen=True)
class KernelSeries:
    """Every snapshot of one layer of one run: ``kernels`` is (snapshots, out, in, kh, kw), float32."""

    run_id: int
    layer: str
    steps: np.ndarray
    epochs: np.ndarray
    kernels: np.ndarray
    biases: np.ndarray | None


@dataclass(frozen=True)
class LayerSnapshots:
    """How a run's snapshots of one layer were recorded: how many, from which step to which, the kernel shape."""

    layer: str
    count: int
    first_step: int
    last_step: int
    shape: tuple[int, ...]


@dataclass(frozen=True)
class StoredSnapshot:
    """One recorded snapshot as stored: little-endian float32 bytes of the kernel (out, in, kh, kw) and bias (out,)."""

    layer: str
    step: int
    epoch: int
    shape: tuple[int, ...]
    kernel: bytes
    bias: bytes | None
    #: The checksum the row was written with (None: recorded before checksums); readers have checked it.
    checksum: int | None = None

    @property
    def kernel_array(self) -> np.ndarray:
        """The kernel as a read-only float32 array of ``shape`` (no copy)."""
        import numpy as np  # numpy on first use: the store and the spec load without it

        return np.frombuffer(self.kernel, dtype="<f4").reshape(self.shape)

    @property
    def bias_array(self) -> np.ndarray | None:
        """The bias as a read-only float32 array, or None."""
        import numpy as np  # numpy on first use: the store and the spec load without it

        return None if self.bias is None else np.frombuffer(self.bias, dtype="<f4")
