"""The observer that turns a backend's progress into rows of the results database.

It decides, from the experiment's snapshot schedule, which steps' kernels to ask the
backend for, and writes metrics and snapshots in batches, one transaction per batch, on a
writer thread of their own (:mod:`convexp.store.background`), so that recording every step
costs the training thread only the kernel copies.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import NoReturn, Protocol

from convexp.backends.output_checks import NonFiniteKernel, PlanCheck
from convexp.experiments.spec import RunSpec
from convexp.model.weights import Checkpoint, KernelReader, StateReader
from convexp.store import MetricRecord, SnapshotToWrite, Store
from convexp.store.background import FLUSH_BYTES, HEARTBEAT_SECONDS, Batch
from convexp.store.budget import EPOCH_END, LAST, START, RecordingBudget, save_recording
from convexp.store.interrupts import interrupts_deferred
from convexp.store.writer_process import make_writer

#: Buffered metric rows that trigger a write in the middle of an epoch.
FLUSH_METRICS = 5000


class Diverged(Exception):
    """Training produced a loss, a kernel or a bias that is NaN or infinite at update ``step``."""

    def __init__(self, step: int, epoch: int, message: str):
        super().__init__(message)
        self.step, self.epoch = step, epoch


class Pruned(Exception):
    """A sweep's pruning rule stopped the run after ``epoch`` (the message says why)."""

    def __init__(self, epoch: int, message: str):
        super().__init__(message)
        self.epoch = epoch


class EpochHook(Protocol):
    """Something measured at each epoch's end that may stop the run: a sweep's trial
    (:class:`convexp.experiments.sweeping.TrialJudge`)."""

    def start(self, kernels: KernelReader) -> None:
        """Before the first update, with the initial kernels (not called for a resumed run)."""

    def epoch_end(self, epoch: int, metrics: Mapping[str, float], kernels: KernelReader) -> Mapping[str, float]:
        """What it measured at the epoch's end: more metrics, recorded with the epoch's."""

    def verdict(self, epoch: int) -> str | None:
        """Once the epoch is recorded: why the run stops here, or None to go on."""


class ProgressListener(Protocol):
    """Where a runner reports progress for people to see (the CLI draws a progress bar)."""

    def step(self, step: int, epoch: int, metrics: Mapping[str, float]) -> None:
        """After each update."""

    def epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """After each epoch's evaluation."""


class RunRecorder:
    """A :class:`~convexp.backends.trainer.TrainingObserver` that records one run into a :class:`Store`."""

    def __init__(
        self,
        store: Store,
        run_id: int,
        spec: RunSpec,
        progress: ProgressListener | None = None,
        resume_from: Checkpoint | None = None,
        plan: PlanCheck | None = None,
        hook: EpochHook | None = None,
        say: Callable[[str], None] | None = None,
    ):
        """``resume_from``: the checkpoint a resumed run goes on from (what precedes it is recorded);
        ``plan``: what the backend may hand back (checked before anything is buffered), if checked;
        ``hook``: what is measured at each epoch's end, and may end the run :class:`Pruned`;
        ``say``: where a line for the user goes (that the spec's budget leaves steps out)."""
        self.store, self.run_id, self.progress, self.plan, self.hook = store, run_id, progress, plan, hook
        self.every = spec.snapshots.every
        self.epoch_end_snapshots = spec.snapshots.epoch_end
        self.log_every = spec.log_every
        self.keep_checkpoints = spec.checkpoints
        self.metrics: list[MetricRecord] = []
        self.snapshots: list[SnapshotToWrite] = []
        self.checkpoint: Checkpoint | None = None
        self.buffered_bytes = 0
        self.last_snapshot_step = resume_from.step if resume_from else -1
        self.steps_completed = resume_from.step if resume_from else 0
        self.epochs_completed = resume_from.epoch if resume_from else 0
        self.last_flush = time.monotonic()
        # heartbeats come from the writer whatever the backend does: a slow first step or a long
        # evaluation hands nothing over for seconds, and the run must not look dead meanwhile
        self.writer = make_writer(store, run_id, heartbeat_seconds=HEARTBEAT_SECONDS)
        #: Which steps' kernels are recorded under the spec's budget (``snapshots.budget``), if it has one.
        self.budget = None if spec.snapshots.budget is None else RecordingBudget(spec.snapshots.budget, say=say)
        self.final_epoch = spec.epochs
        if self.budget is not None:  # stated before anything is recorded: a run that dies still says it had one
            save_recording(store, run_id, {"budget": self.budget.share})

    def _snapshot_rows(self, step: int, epoch: int, kernels: KernelReader) -> list[SnapshotToWrite]:
        """The rows of the kernels at ``step`` (none if already taken), checked against the plan first."""
        if step == self.last_snapshot_step:
            return []
        handed = kernels()
        if self.plan is None:
            return [SnapshotToWrite(layer, step, epoch, snapshot.kernel, snapshot.bias) for layer, snapshot in handed.items()]
        try:
            checked = self.plan.kernels(handed, step, epoch)
        except NonFiniteKernel as exc:
            self._diverged(step, epoch, str(exc))
        return [SnapshotToWrite(layer, step, epoch, kernel, bias) for layer, kernel, bias in checked]

    def _budgeted_rows(self, step: int, epoch: int, kernels: KernelReader, reason: str | None) -> list[SnapshotToWrite]:
        """The rows of ``step``'s kernels when the budget keeps them (``reason``: why it must, else it decides)."""
        if self.budget is None:
            return self._snapshot_rows(step, epoch, kernels)
        if step == self.last_snapshot_step:
            return []
        reason = self.budget.offer(step, self.writer.written, reason)
        if reason is None:
            return []
        began = time.perf_counter()
        rows = self._snapshot_rows(step, epoch, kernels)
        size = sum(row.kernel.nbytes + (0 if row.bias is None else row.bias.nbytes) for row in rows)
        self.budget.kept(step, reason, time.perf_counter() - began, size)
        return rows

    def _keep(self, rows: list[SnapshotToWrite]) -> None:
        if rows:
            self.snapshots.extend(rows)  # every layer of the step, or (interrupted before this line) none
            self.buffered_bytes += sum(row.kernel.nbytes for row in rows)
            self.last_snapshot_step = rows[0].step

    def _diverged(self, step: int, epoch: int, message: str) -> NoReturn:
        """Keep everything recorded before ``step``, then end the run as diverged."""
        self.steps_completed = step
        self.flush()
        raise Diverged(step, epoch, message)

    def on_train_start(self, kernels: KernelReader) -> None:
        self._keep(self._budgeted_rows(0, 0, kernels, START))
        self.flush()
        if self.hook is not None:
            self.hook.start(kernels)

    def on_step(self, step: int, epoch: int, metrics: Mapping[str, float], kernels: KernelReader) -> None:
        if self.plan is not None:
            self.plan.step(step, epoch)
        for name, value in metrics.items():
            if not math.isfinite(value):
                # keep everything recorded before this step; the run is then marked diverged
                self._diverged(step, epoch, f"{name} became {value} at step {step} (epoch {epoch})")
        rows = self._budgeted_rows(step, epoch, kernels, None) if self.every and step % self.every == 0 else []
        if step % self.log_every == 0:
            now = time.time()
            self.metrics.extend(MetricRecord(step, epoch, name, float(value), now) for name, value in metrics.items())
        self._keep(rows)
        self.steps_completed = step  # only once the step's rows are buffered: a flush never claims a step it lacks
        if (
            self.buffered_bytes >= FLUSH_BYTES
            or len(self.metrics) >= FLUSH_METRICS
            or time.monotonic() - self.last_flush >= HEARTBEAT_SECONDS
        ):
            self.flush()
        if self.progress:
            self.progress.step(step, epoch, metrics)

    def on_epoch_end(
        self, epoch: int, step: int, metrics: Mapping[str, float], kernels: KernelReader, state: StateReader | None = None
    ) -> None:
        if self.plan is not None:
            self.plan.epoch_end(epoch, step)
        rows = []
        if self.epoch_end_snapshots:
            rows = self._budgeted_rows(step, epoch, kernels, EPOCH_END)
        elif self.budget is not None and epoch == self.final_epoch:  # a budgeted run always keeps its last step
            rows = self._budgeted_rows(step, epoch, kernels, LAST)
        measured = self.hook.epoch_end(epoch, metrics, kernels) if self.hook is not None else {}
        now = time.time()
        for name, value in {**metrics, **measured}.items():
            self.metrics.append(MetricRecord(step, epoch, name, float(value), now))
        self._keep(rows)
        if self.keep_checkpoints and state is not None:
            self.checkpoint = Checkpoint(epoch, step, state())
        self.epochs_completed = epoch
        self.flush()
        if self.progress:
            self.progress.epoch_end(epoch, metrics)
        reason = self.hook.verdict(epoch) if self.hook is not None else None
        if reason is not None:
            raise Pruned(epoch, reason)

    def finished(self) -> None:
        """After the backend's train returned: raises :class:`PluginBreach` unless it made every step and epoch."""
        if self.plan is not None:
            self.plan.finished()

    def flush(self) -> None:
        """Hand what is buffered, with the run's progress, heartbeat and checkpoint, to the writer
        thread as one transaction; raises the error of an earlier write that failed."""
        batch = Batch(self.metrics, self.snapshots, self.epochs_completed, self.steps_completed, self.checkpoint)
        # Ctrl-C between queueing the batch and emptying the buffers would write its rows twice
        # (or, the other way round, lose them while a later batch claims their steps)
        began = time.perf_counter()
        with interrupts_deferred():
            self.writer.submit(batch)
            self.metrics, self.snapshots, self.buffered_bytes, self.checkpoint = [], [], 0, None
        self.last_flush = time.monotonic()
        if self.budget is not None:  # waiting for the writer (back-pressure) is recording's cost too
            self.budget.spent_elsewhere(time.perf_counter() - began)

    def close(self) -> None:
        """Write what is buffered and wait until everything is committed: call before the run's
        final status is written. Raises the first write that failed (a :class:`StoreError`)."""
        try:
            self.flush()  # also the progress and heartbeat of the last steps
        finally:
            self.writer.close()
        if self.budget is not None:
            save_recording(self.store, self.run_id, self.budget.summary())
