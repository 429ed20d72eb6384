"""Writing a run's batches in a process of its own, so that training pays for a copy and little else.

Encoding snapshots and writing them into SQLite take about a millisecond of CPU per ten steps of a
small network, much of it holding Python's GIL; in a thread beside the training loop that time is
taken from training (measured in benchmarks/tracking.py and explained in docs/benchmarks.md). Here the
training process's writer thread (:class:`ProcessWriter`, a :class:`BackgroundWriter`) only hands
each batch's bytes to a pipe (``os.writev``, which releases the GIL); a child process (this
module's :func:`main`) unpacks, encodes and commits them
through its own :class:`Store`, one transaction per batch, and acknowledges each batch. Every
guarantee of the thread writer holds: batches in order, whole steps only, a failed write raised
to the training thread with nothing after it written, back-pressure (the training side waits for
each batch's acknowledgement before sending the next, and queues at most
:data:`~convexp.store.background.MAX_PENDING`). The child writes the run's heartbeat whenever it
has been idle for a second, whatever training is doing.

A second interpreter costs about half a second of CPU to start, more than a light run's whole writing,
and it only helps where it has a core to itself: where training keeps every core busy (two torch
threads on two cores), the process's start and the pipe are CPU taken from training on top of the
writing, and the writer thread in place costs training less (benchmarks/tracking.py, two-conv-2t).
So by default (``CONVEXP_WRITER=auto``) the writer thread writes in place, as :class:`BackgroundWriter`
does, until its writing has cost :data:`MOVE_AFTER_CPU_SECONDS` and training, measured over the last
:data:`MEASURE_SECONDS` or more, leaves at least :data:`SPARE_CORE` of a core free (see
:func:`spare_cores`); then it starts the child, goes on writing in place until the child has
answered its start, and from the next batch on sends every batch there. One thread hands every batch
over, so the order holds across the move.

The child runs in a session of its own (Ctrl-C in the terminal reaches the training process, which
ends the run as before). It exits as soon as it has acknowledged the close, leaving its database
connection unclosed, so that the training process's own connection is the last one and folds the
WAL into the file when it closes, before the command returns, as a run in one process did. It also
ends when the pipe from its parent closes: after a kill of the
training process it commits the batches it received whole and exits, leaving the run to show as
stale, as a killed run does.

The protocol: the parent sends frames ``kind (1 byte), meta length, raw length (2 x uint64 LE),
meta (pickle), raw bytes``: ``I`` (the URL, run and heartbeat), ``B`` (a batch: its metrics and
packed steps' layouts in meta, the float32 kernel and bias bytes in raw), ``C`` (close). The child
answers each ``I``, ``B`` and ``C`` with ``length (uint64 LE), pickle((error or None, CPU seconds,
peak memory bytes, seconds writing snapshots))``.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from convexp.errors import StoreError
from convexp.machine import proc_bytes
from convexp.store.background import HEARTBEAT_SECONDS, MAX_PENDING, BackgroundWriter, Batch, write_batch
from convexp.store.packed import PackedSnapshots
from convexp.store.records import MetricRecord
from convexp.store.settings import writer_kind

if TYPE_CHECKING:
    from convexp.store.store import Store

_HEADER = struct.Struct("<cQQ")
_LENGTH = struct.Struct("<Q")
#: The most buffers one ``os.writev`` takes (Linux's IOV_MAX).
_IOV_MAX = 1024
#: CPU time the writer may spend writing in the training process before it moves to a process of its
#: own: about half what that process costs to start (~0.5 s: it imports numpy and SQLAlchemy). A light
#: run (a short loop, or snapshots once an epoch) never pays for a second interpreter; a heavy one pays
#: for a little in-process writing before it moves, as a renter buys once the rent nears the price.
MOVE_AFTER_CPU_SECONDS = 0.25
#: How much of a core training must leave unused for the writer to move to a process of its own: one
#: torch thread on two cores leaves 1.0, two leave about 0.01 (their threads spin while they wait).
SPARE_CORE = 0.75
#: The shortest stretch of wall time over which the cores training uses are measured, seconds.
MEASURE_SECONDS = 0.5


class Clocks(NamedTuple):
    """The clocks the writer measures training's use of the cores with: wall time, the process's CPU
    time and the writer thread's own CPU time (called from that thread). Tests hand in their own, so
    that what they assert does not depend on how busy the machine is."""

    wall: Callable[[], float] = time.monotonic
    process_cpu: Callable[[], float] = time.process_time
    writer_cpu: Callable[[], float] = time.thread_time


def make_writer(store: Store, run_id: int, heartbeat_seconds: float | None = None) -> BackgroundWriter:
    """The writer for a run being recorded, as ``CONVEXP_WRITER`` says (see :data:`~convexp.store.settings.WRITERS`)."""
    kind = writer_kind()
    if kind == "thread":
        return BackgroundWriter(store, run_id, heartbeat_seconds=heartbeat_seconds)
    if kind == "process":
        return ProcessWriter(store, run_id, heartbeat_seconds=heartbeat_seconds)
    return ProcessWriter(
        store, run_id, heartbeat_seconds=heartbeat_seconds, move_after_cpu_seconds=MOVE_AFTER_CPU_SECONDS, cores=usable_cores()
    )


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the system says, else all of them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def spare_cores(cores: int, others_cpu_seconds: float, wall_seconds: float) -> float:
    """How much of ``cores`` the rest of this process left unused: ``others_cpu_seconds`` is the CPU time
    its other threads (training's) used over ``wall_seconds``. A writer process only helps on what is left."""
    return cores - others_cpu_seconds / wall_seconds


# --- what crosses the pipe -------------------------------------------------------------------


def _batch_frame(batch: Batch) -> tuple[bytes, list[Any]]:
    """A batch as (meta pickle, raw buffers): snapshot arrays travel as their bytes, not pickled, each
    step's as packed steps (a layout and a size per flat array); plain rows go as one-layer steps."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    buffers: list[Any] = []
    steps = []
    if isinstance(batch.snapshots, PackedSnapshots):
        for step, epoch, logged in batch.snapshots.steps:
            parts = []
            for layout, flat in logged:
                flat = np.ascontiguousarray(flat, dtype="<f4")
                buffers.append(flat.reshape(-1).view(np.uint8))
                parts.append((layout, flat.size))
            steps.append((step, epoch, parts))
    else:
        for row in batch.snapshots:  # the kernel's values, then the bias's, as a layout of one layer lays them out
            arrays = [np.ascontiguousarray(a, dtype="<f4") for a in (row.kernel, row.bias) if a is not None]
            buffers.extend(a.reshape(-1).view(np.uint8) for a in arrays)
            layout = ((row.layer, arrays[0].shape, None if row.bias is None else arrays[1].size),)
            steps.append((row.step, row.epoch, [(layout, sum(a.size for a in arrays))]))
    metrics = [(m.step, m.epoch, m.name, m.value, m.wall_time) for m in batch.metrics]
    meta = pickle.dumps(
        (metrics, steps, batch.epochs_completed, batch.steps_completed, batch.checkpoint), protocol=pickle.HIGHEST_PROTOCOL
    )
    return meta, buffers


def _batch_from(meta: bytes, raw: bytearray) -> Batch:
    """The batch :func:`_batch_frame` sent (arrays are views of ``raw``)."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    metrics, sent, epochs_completed, steps_completed, checkpoint = pickle.loads(meta)
    values = np.frombuffer(raw, dtype="<f4")
    offset = 0
    steps = []
    for step, epoch, parts in sent:
        logged = []
        for layout, size in parts:
            logged.append((layout, values[offset : offset + size]))
            offset += size
        steps.append((step, epoch, logged))
    return Batch([MetricRecord(*m) for m in metrics], PackedSnapshots(steps), epochs_completed, steps_completed, checkpoint)


def _write_all(fd: int, buffers: list[Any]) -> None:
    """Write every buffer to ``fd`` in order, in as few system calls as the kernel allows."""
    pending = [b for b in buffers if len(b)]
    while pending:
        written = os.writev(fd, pending[:_IOV_MAX])
        while pending and written >= len(pending[0]):
            written -= len(pending[0])
            pending.pop(0)
        if written:
            pending[0] = pending[0][written:]


def _read_exactly(fd: int, size: int) -> bytearray | None:
    """``size`` bytes from ``fd``; None at the end of the stream (also part-way through)."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        count = os.readv(fd, [view[got:]])
        if count == 0:
            return None
        got += count
    return buffer


def _peak_memory() -> int:
    """This process's peak resident memory in bytes, since it began running Python (Linux's VmHWM: the
    rusage maximum would count the parent's pages the child shared before its exec)."""
    peak = proc_bytes("/proc/self/status", "VmHWM:")
    if peak is not None:
        return peak
    import resource  # POSIX only

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux, bytes on macOS: a fallback


def _answer_bytes(error: BaseException | None, snapshot_seconds: float = 0.0) -> bytes:
    """The acknowledgement of a frame: its error (None), the writer process's CPU time and peak memory, and its
    time writing snapshots (:attr:`ChainEncoder.seconds <convexp.store.encoding.ChainEncoder.seconds>`)."""

    usage = (time.process_time(), _peak_memory(), snapshot_seconds)
    try:
        payload = pickle.dumps((error, *usage))
        pickle.loads(payload)  # an exception that pickles but does not unpickle
    except Exception:  # noqa: BLE001 -- any error must reach the parent as something
        payload = pickle.dumps((StoreError(f"{type(error).__name__}: {error}"), *usage))
    return _LENGTH.pack(len(payload)) + payload


# --- the training process's side -------------------------------------------------------------


class ProcessWriter(BackgroundWriter):
    """A :class:`BackgroundWriter` whose thread, once its own writing has cost
    ``move_after_cpu_seconds`` of CPU, starts a writer process and from then on sends it each batch
    (see the module's docs) instead of writing it itself; with 0, every batch goes to the process.
    With ``cores`` (those training may use), it moves only while training leaves :data:`SPARE_CORE`
    of them free, measured over at least :data:`MEASURE_SECONDS`; until then it writes in place.

    The move keeps the order: one thread hands every batch over, the ones before the process is ready
    written in place, the ones after sent. ``cpu_seconds`` is the writing's CPU time in both places.
    """

    def __init__(
        self,
        store: Store,
        run_id: int,
        max_pending: int = MAX_PENDING,
        heartbeat_seconds: float | None = None,
        move_after_cpu_seconds: float = 0.0,
        cores: int | None = None,
        clocks: Clocks = Clocks(),
    ):
        self._move_after = move_after_cpu_seconds
        self._cores = cores
        self._clocks = clocks
        # where the current measure of training's cores began: wall time and the process's CPU time
        self._measured_from = (clocks.wall(), clocks.process_cpu())
        self._thread_cpu_at_measure = 0.0  # the writer thread's CPU time then (a new thread's starts at 0)
        self._process: subprocess.Popen[bytes] | None = None
        self._moved = False  # the writer process answered its start: batches go there
        self._pid = os.getpid()
        self._child_cpu = 0.0
        self._child_snapshot_seconds = 0.0
        self._thread_cpu = 0.0
        #: The writer process's peak resident memory, as of its last acknowledgement, in bytes (0: none).
        self.peak_rss_bytes = 0
        self._unanswered = 0  # frames sent whose acknowledgement has not been read
        super().__init__(store, run_id, max_pending, heartbeat_seconds)

    def _start_process(self) -> None:
        root = str(Path(__file__).resolve().parents[2])  # where convexp is imported from, for the child too
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from convexp.store.writer_child import main; main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,  # Ctrl-C in the terminal is the training process's to handle
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._to_child, self._from_child = self._process.stdin.fileno(), self._process.stdout.fileno()
        # the owner is this process: the child writes only while the run is ours
        self._send(b"I", pickle.dumps((self.store.url, self.run_id, HEARTBEAT_SECONDS, self.owner)), [])

    def _send(self, kind: bytes, meta: bytes, buffers: list[Any]) -> None:
        raw = sum(len(b) for b in buffers)
        try:
            _write_all(self._to_child, [_HEADER.pack(kind, len(meta), raw), meta, *buffers])
        except BrokenPipeError:
            raise self._died() from None
        self._unanswered += 1

    def _answer(self) -> None:
        """Read the acknowledgements of the frames sent; raise the first error they report."""
        first: BaseException | None = None
        while self._unanswered:
            header = _read_exactly(self._from_child, _LENGTH.size)
            payload = header and _read_exactly(self._from_child, _LENGTH.unpack(header)[0])
            if payload is None:
                self._unanswered = 0
                raise first or self._died()
            self._unanswered -= 1
            error, self._child_cpu, self.peak_rss_bytes, self._child_snapshot_seconds = pickle.loads(payload)
            first = first or error
        if first is not None:
            raise first

    def _died(self) -> StoreError:
        assert self._process is not None
        try:
            code = self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
        return StoreError(
            f"the database writer process of run {self.run_id} exited (code {code}); "
            "what it committed before is kept (its own error, if any, is printed above)"
        )

    def _write(self, batch: Batch | None) -> None:
        if not self._moved:
            if self._process is None and time.thread_time() >= self._move_after and self._core_to_spare():
                self._start_process()
            # with 0, wait for it to start; else write here until it has
            if self._process is not None and (self._move_after <= 0 or select.select([self._from_child], [], [], 0)[0]):
                self._answer()  # its start, or the error that stopped it
                self._moved = True
        if not self._moved:
            write_batch(self.store, self.run_id, batch, self.owner)
            self._thread_cpu = time.thread_time()
            return
        if batch is None:
            return  # the writer process writes the heartbeat when idle
        meta, buffers = _batch_frame(batch)
        self._send(b"B", meta, buffers)
        self._answer()

    def _core_to_spare(self) -> bool:
        """Whether training left a core free for a writer process since the measure began (then each
        measure covers at least :data:`MEASURE_SECONDS`, so that a change in training is seen)."""
        if self._cores is None:
            return True
        wall, cpu, mine = self._clocks.wall(), self._clocks.process_cpu(), self._clocks.writer_cpu()
        began_wall, began_cpu = self._measured_from
        if wall - began_wall < MEASURE_SECONDS:
            return False
        # this thread's own writing is not training's: what it spent over the same stretch is left out
        writing = mine - self._thread_cpu_at_measure
        self._measured_from, self._thread_cpu_at_measure = (wall, cpu), mine
        return spare_cores(self._cores, cpu - began_cpu - writing, wall - began_wall) >= SPARE_CORE

    def _cpu_seconds(self) -> float:
        return self._thread_cpu + self._child_cpu

    def _snapshot_seconds(self) -> float:
        return super()._snapshot_seconds() + self._child_snapshot_seconds

    def close(self) -> None:
        """Write what is queued, then stop the writer process; raises the first write that failed."""
        if os.getpid() != self._pid:  # a forked child: the writer process is its parent's
            return
        try:
            super().close()
        finally:
            if self._process is not None:
                self._stop_process()
        self._raise_error()

    def _stop_process(self) -> None:
        assert self._process is not None
        try:
            if not self._moved:  # started too late to take a batch: it has written nothing of the run's
                self._process.kill()
            elif self._process.poll() is None:
                self._send(b"C", b"", [])
                self._answer()
        except StoreError as exc:
            if self._error is None:
                self._error = exc
        finally:
            for stream in (self._process.stdin, self._process.stdout):
                if stream is not None:
                    stream.close()
            try:
                self._process.wait(timeout=30)  # it exits as soon as the close is acknowledged
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


# --- the writer process ----------------------------------------------------------------------
