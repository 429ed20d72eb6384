"""Writing a run's batches on a thread of its own, so that training does not wait for the database.

The recorder builds each batch on the training thread (whole steps only, with the run's
progress and, at an epoch's end, its checkpoint) and hands it to a :class:`BackgroundWriter`,
which writes the batches one transaction each, in the order they came. What a batch promises
therefore holds as before: ``steps_completed`` is committed with exactly the rows of those
steps, and a checkpoint with its epoch. A process killed outright loses only batches not yet
committed, which the run's recorded progress never claimed.

The queue is bounded: when the database falls behind, :meth:`BackgroundWriter.submit` waits
(back-pressure) instead of letting memory grow. A write that fails is raised to the training
thread at its next ``submit`` or at :meth:`BackgroundWriter.drain`, and nothing after it is
written.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from convexp.model.weights import Checkpoint
from convexp.store.records import MetricRecord, SnapshotToWrite

if TYPE_CHECKING:
    from convexp.store.store import Store

#: Buffered kernel bytes at which a recorder hands a batch over in the middle of an epoch.
FLUSH_BYTES = 2 * 1024 * 1024
#: Longest time between two writes while training: each write is also the run's heartbeat, and
#: what a live view (``convexp ui``) can show of a training run is at most this old.
HEARTBEAT_SECONDS = 1.0
#: Batches that may wait for the writer before ``submit`` blocks (each holds at most the
#: recorder's flush size, 2 MiB of kernels, so the queue holds at most about 8 MiB).
MAX_PENDING = 4


@dataclass(frozen=True)
class Batch:
    """One transaction's worth of a run's rows and progress (see :meth:`Store.record`)."""

    metrics: list[MetricRecord]
    snapshots: Sequence[SnapshotToWrite]
    epochs_completed: int | None = None
    steps_completed: int | None = None
    checkpoint: Checkpoint | None = None

    def kernel_bytes(self) -> int:
        """The float32 kernel bytes of the batch's snapshots (what a recording budget charges the writer's time to)."""
        steps = getattr(self.snapshots, "steps", None)  # packed steps: their flat arrays, biases included
        if steps is not None:
            return sum(flat.nbytes for _, _, logged in steps for _, flat in logged)
        return sum(row.kernel.nbytes for row in self.snapshots)


_STOP = object()


def write_batch(store: Store, run_id: int, batch: Batch | None, owner: tuple[int, str]) -> None:
    """Commit one batch of a run owned by ``owner`` (pid, host); None writes the heartbeat alone."""
    if batch is None:
        store.record(run_id, owner=owner)
        return
    store.record(
        run_id,
        batch.metrics,
        batch.snapshots,
        epochs_completed=batch.epochs_completed,
        steps_completed=batch.steps_completed,
        checkpoint=batch.checkpoint,
        owner=owner,
    )


class BackgroundWriter:
    """Writes one run's batches into a store from a daemon thread, in order, one transaction each."""

    def __init__(self, store: Store, run_id: int, max_pending: int = MAX_PENDING, heartbeat_seconds: float | None = None):
        """``heartbeat_seconds``: when nothing has come to write for that long, write the run's heartbeat
        alone (for a run recorded from a user's loop, which may pause between steps for long)."""
        self.store, self.run_id, self.heartbeat_seconds = store, run_id, heartbeat_seconds
        #: The process the run belongs to (pid, host): nothing is written once the run is another's.
        self.owner = (os.getpid(), socket.gethostname())
        self._queue: queue.Queue[Batch | object] = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        #: CPU time the writer thread has used (encoding and writing), as of its last batch, in seconds:
        #: on a machine whose cores training keeps busy, this is what the writer takes from training.
        self.cpu_seconds = 0.0
        #: (wall seconds the writer spent writing kernel snapshots: their encoding, inserts and commits, waits for
        #: a core included; the kernel bytes of the batches written), set together after each batch: what one
        #: kernel byte costs the writer (:mod:`convexp.store.budget`).
        self.written: tuple[float, int] = (0.0, 0)
        self._kernel_bytes = 0
        self._thread = threading.Thread(target=self._work, name=f"convexp-writer-run-{run_id}", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            try:
                batch = self._queue.get(timeout=self.heartbeat_seconds)
            except queue.Empty:  # only with heartbeat_seconds: the run is alive, only quiet
                if self._error is None:
                    try:
                        self._write(None)
                    except BaseException as exc:
                        self._error = exc
                continue
            try:
                if batch is _STOP:
                    return
                if self._error is None:  # after a failure nothing more is written: it would skip a batch
                    assert isinstance(batch, Batch)
                    self._write(batch)
                    self._kernel_bytes += batch.kernel_bytes()
            except BaseException as exc:  # handed to the training thread
                self._error = exc
            finally:
                self.cpu_seconds = self._cpu_seconds()
                self.written = (self._snapshot_seconds(), self._kernel_bytes)
                self._queue.task_done()

    def _write(self, batch: Batch | None) -> None:
        """Commit one batch (None: the heartbeat alone), into the run only while it is this process's."""
        write_batch(self.store, self.run_id, batch, self.owner)

    def _cpu_seconds(self) -> float:
        return time.thread_time()

    def _snapshot_seconds(self) -> float:
        return self.store.encoder.seconds

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, batch: Batch) -> None:
        """Queue a batch for writing; waits while the queue is full. Raises a failed earlier write's error."""
        self._raise_error()
        if not self._thread.is_alive():
            raise RuntimeError(f"the database writer of run {self.run_id} has stopped")
        self._queue.put(batch)

    def drain(self) -> None:
        """Wait until every batch submitted so far is committed; raises the first write that failed."""
        self._queue.join()
        self._raise_error()

    def close(self) -> None:
        """Write what is queued, then stop the thread; raises the first write that failed."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._raise_error()
