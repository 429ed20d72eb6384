"""Recording from your own training loop: a run, its metrics and its conv kernels, into convexp's database.

    import convexp

    with convexp.track(experiment="my-net", db="convexp.db", config={"lr": 0.001}) as run:
        run.log_kernels(model, step=0)            # the initial weights
        for step, (x, y) in enumerate(batches, start=1):
            loss = train_step(x, y)
            run.log_metrics({"train_loss": loss}, step=step)
            run.log_kernels(model, step=step)     # a torch or Keras model, or {"conv1": array}

or, as MLflow and W&B runs are written (a notebook spreads a run over cells)::

    run = convexp.track(experiment="my-net")
    ...                                           # log as above, in any cell
    run.finish()                                  # or finish("failed", "why"); at exit if never called

A run recorded this way is a run like any other: ``convexp runs``, ``show``, ``compare``,
``filters``, ``plot``, ``report`` and the UI read it. It is written as ``convexp run`` writes:
rows go to the database in whole steps (a step is complete once a later step is logged,
:meth:`TrackedRun.end_step` says so, or the run finishes), one transaction per batch, on a writer
thread (which hands the writing to a process of its own once it proves heavy and training leaves a
core free: :mod:`convexp.store.writer_process`), with the run's heartbeat at least every second (also while the loop logs nothing, as in a
long evaluation). A run whose process dies shows as stale with every complete step kept; leaving
the ``with`` block by Ctrl-C marks it interrupted, by an exception failed (a step not yet
complete is then left out, as it may be partial). A run never finished is closed when the
interpreter exits: interrupted after Ctrl-C, failed after an uncaught exception, else finished.
Rows are never duplicated: logging a name again at the current step replaces its value, and a
step before one already logged is refused. A process forked from the one that opened the run
(a data-loader worker) neither records into it nor closes it.

Kernels are stored canonically, (out_channels, in_channels / groups, kh, kw) float32, whatever the
framework (see :mod:`convexp.tracking.model_kernels` for which models and layers are read, and how). The
run's spec is marked ``external``, with your ``config``, each recorded layer's kernel shape and
the group count of grouped layers.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from convexp import __version__
from convexp.errors import ConvexpError, StoreError
from convexp.model.names import experiment_name_problem, layer_name_problem, notes_problem, run_name_problem
from convexp.model.weights import non_finite
from convexp.store import MetricRecord, Store
from convexp.store.background import FLUSH_BYTES, HEARTBEAT_SECONDS, Batch
from convexp.store.budget import EPOCH_END, LAST, RecordingBudget, check_budget, save_recording
from convexp.store.labels import checked_tags
from convexp.store.packed import Layout, PackedSnapshots, unpack
from convexp.store.records import MAX_ID
from convexp.store.writer_process import make_writer
from convexp.tracking.model_kernels import KernelReader, kernel_reader, kernels_of

__all__ = ["EXTERNAL", "TrackedRun", "kernel_reader", "kernels_of", "track", "unpack"]

EXTERNAL = "external"
"""How the runs table names the backend of a run recorded from a user's own loop."""
#: How a run may end: :meth:`TrackedRun.finish`'s statuses.
ENDINGS = ("finished", "failed", "interrupted")


class RunEndedError(ConvexpError, RuntimeError):
    """Something was logged into a tracked run after it had ended."""


class TrackedRun:
    """A run being recorded from the user's own loop, made by :func:`track`: a context manager, or a
    plain object ended by :meth:`finish` (or at interpreter exit)."""

    def __init__(
        self, store: Store, run_id: int, layers: list[str] | None = None, quiet: bool = False, budget: float | None = None
    ):
        #: The run's id in the database: ``convexp show RUN_ID``.
        self.run_id = run_id
        self.store, self.layers, self.quiet = store, layers, quiet
        #: Which steps' kernels are recorded, when the run has a budget (see :mod:`convexp.store.budget`).
        self.budget = None if budget is None else RecordingBudget(budget, say=None if quiet else _say)
        self._left_out: tuple[int, Any] | None = None  # (step, model) of a step the budget left out
        #: The step of the kernels logged last (None before any).
        self.kernels_step: int | None = None
        self.writer = make_writer(store, run_id, heartbeat_seconds=HEARTBEAT_SECONDS)
        self.pid = os.getpid()  # the process that records: a forked child does nothing with the run
        #: How the run ended (``finished``, ``failed``, ``interrupted``), None while it records.
        self.status: str | None = None
        self.step: int | None = None  # the step being logged: complete once a later one is logged
        self.epoch = 0
        self._step_ended = False  # end_step() was called since the last log call
        self._current_metrics: dict[str, MetricRecord] = {}
        # by layer names: the same layers logged again at the same step replace what was logged
        self._current_kernels: dict[tuple[str, ...], tuple[Layout, np.ndarray]] = {}
        self._metrics: list[MetricRecord] = []  # complete steps, not yet handed to the writer
        self._snapshots: list[tuple[int, int, list[tuple[Layout, np.ndarray]]]] = []
        self._bytes = 0
        self._steps_completed = 0
        self._last_flush = time.monotonic()
        self.shapes: dict[str, list[int]] = {}
        self.groups: dict[str, int] = {}
        #: Lines kept in the run's spec (``notes``) about what could not be recorded, and why.
        self.notes: list[str] = []
        # a model, its kernel reader (built once) and its layer names, by the model's id
        self._readers: dict[int, tuple[Any, KernelReader, tuple[str, ...]]] = {}
        _open_runs.add(self)

    # --- the forms people write: ``with track(...) as run`` and ``run = track(...); run.finish()``

    def __enter__(self) -> TrackedRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: Any) -> None:
        if kind is None:
            self.finish()
        elif issubclass(kind, KeyboardInterrupt):
            self.finish("interrupted", "interrupted (Ctrl-C)")
        else:
            self.finish("failed", f"{kind.__name__}: {error}")

    def _recording(self) -> bool:
        """Whether log calls record: in the process that opened the run, until it ends."""
        if os.getpid() != self.pid:
            return False
        if self.status is not None:
            raise RunEndedError(
                f"run {self.run_id} has ended ({self.status}): nothing more can be logged into it; "
                "start another with convexp.track(...)"
            )
        return True

    def _at(self, step: int, epoch: int | None) -> None:
        _check_count("step", step)
        if epoch is not None:
            _check_count("epoch", epoch)
        if self.step is not None and step < self.step:
            raise ValueError(f"step {step} is before step {self.step}, which was already logged; steps only go forward")
        if self.step is not None and step > self.step:
            self._complete_current()
        self.step = int(step)
        self._step_ended = False
        if epoch is not None:
            self.epoch = int(epoch)

    def _complete_current(self) -> None:
        self._left_out = None  # a later step came: the one left out was not the last
        self._metrics.extend(self._current_metrics.values())
        if self._current_kernels and self.step is not None:
            self._snapshots.append((self.step, self.epoch, list(self._current_kernels.values())))
        self._current_metrics, self._current_kernels = {}, {}
        if self.step is not None:
            self._steps_completed = self.step
        if self._bytes >= FLUSH_BYTES or time.monotonic() - self._last_flush >= HEARTBEAT_SECONDS:
            self.flush()

    def log_metrics(self, metrics: Mapping[str, float], step: int, epoch: int | None = None) -> None:
        """Record named values at ``step`` (any names; ``train_loss``, ``test_accuracy`` ... are what
        convexp's own runs use, and what its pictures look for). Only finite numbers are recorded."""
        if not self._recording():
            return
        self._at(step, epoch)
        now = time.time()
        for name, value in metrics.items():
            number = float(value)
            if not np.isfinite(number):
                raise ValueError(f"metric {name} at step {step} is {number}: only finite values are recorded")
            self._current_metrics[name] = MetricRecord(int(step), self.epoch, str(name), number, now)

    def log_kernels(self, model: Any, step: int, epoch: int | None = None, *, epoch_end: bool = False) -> None:
        """Record the conv kernels of ``model`` (see :func:`convexp.tracking.model_kernels.kernels_of`) at ``step``.

        With a budget (:func:`track`'s ``budget``) the kernels of a step may be left out; ``epoch_end``
        says the step is an epoch's last, whose kernels are always kept, as are step 0's, the first
        steps' and the last step's (read from ``model`` when the run finishes: change the model no
        further between the last ``log_kernels`` and :meth:`finish`)."""
        if not self._recording():
            return
        self._at(step, epoch)
        if self.budget is None:
            self._read_kernels(model, step)
            return
        reason = self.budget.offer(step, self.writer.written, EPOCH_END if epoch_end else None)
        if reason is None:
            # the last step's kernels are read at finish: a model's as it is then, a mapping's as it is now
            kept = kernels_of(model, self.layers) if isinstance(model, Mapping) else model
            self._left_out = (step, kept)
            return
        began = time.perf_counter()
        size = self._read_kernels(model, step)
        self.budget.kept(step, reason, time.perf_counter() - began, size)

    def _read_kernels(self, model: Any, step: int) -> int:
        """Read and keep ``model``'s kernels as the current step's; their bytes."""
        cached = self._readers.get(id(model))
        if cached is not None and cached[0] is model:  # a model seen before: its reader, its layout checked
            layout, flat = cached[1]()
            names = cached[2]
        else:
            reader = kernel_reader(model, self.layers)
            layout, flat = reader()
            self._check_layout(layout, reader.groups, step)
            names = tuple(name for name, _, _ in layout)
            if not isinstance(model, Mapping):  # a mapping may change from one call to the next
                self._readers[id(model)] = (model, reader, names)
        if not np.isfinite(flat).all():
            raise ValueError(_non_finite(layout, flat, step))
        if self._current_kernels and names not in self._current_kernels:
            taken = {name for other in self._current_kernels for name in other}.intersection(names)
            if taken:
                raise ValueError(f"layer {', '.join(sorted(taken))} logged twice at step {step}, from two models")
        self._current_kernels[names] = (layout, flat)
        self._bytes += flat.nbytes
        self.kernels_step = step
        self._left_out = None
        return int(flat.nbytes)

    def end_step(self) -> None:
        """Say the current step is whole: if the run then ends by an error or Ctrl-C before another step
        is logged, this step is kept (otherwise it is left out, as it may be partial). Logging more
        at the same step afterwards is allowed; call this again after it."""
        if self._recording():
            self._step_ended = True

    def _keep_last_step(self) -> None:
        """The run's last step was left out by the budget: read its kernels from the model now (a finished run keeps them)."""
        assert self._left_out is not None and self.budget is not None
        step, model = self._left_out
        if step != self.step or self.kernels_step == step:
            return
        began = time.perf_counter()
        size = self._read_kernels(model, step)
        self.budget.kept(step, LAST, time.perf_counter() - began, size)

    def _check_layout(self, layout: Layout, groups: dict[str, int], step: int) -> None:
        """Each layer keeps the kernel shape (and group count) it was first logged with."""
        for name, shape, _ in layout:
            # a model that is itself a conv layer reads as the layer "" (torch's name for the root module)
            if name not in self.shapes and name and (problem := layer_name_problem(str(name))):
                raise ValueError(f"layer {name!r}: {problem}")
            known = self.shapes.setdefault(name, list(shape))
            if known != list(shape):
                raise ValueError(f"layer {name}: kernel shape {list(shape)} at step {step}, {known} before")
            if name in groups:
                self.groups[name] = groups[name]

    def flush(self) -> None:
        """Hand the complete steps to the writer thread (done by itself at least every second)."""
        if os.getpid() != self.pid:
            return
        began = time.perf_counter()
        self.writer.submit(Batch(self._metrics, PackedSnapshots(self._snapshots), self.epoch, self._steps_completed))
        self._metrics, self._snapshots, self._bytes = [], [], 0
        self._last_flush = time.monotonic()
        if self.budget is not None:  # waiting for the writer (back-pressure) is recording's cost too
            self.budget.spent_elsewhere(time.perf_counter() - began)

    def finish(self, status: str = "finished", message: str | None = None) -> None:
        """End the run: write what is logged and set its status (``finished``, ``failed`` or
        ``interrupted``, with an optional ``message``). A finished run keeps the step being logged;
        a failed or interrupted one keeps it only if :meth:`end_step` said it was whole. Calling
        it again does nothing; in a forked child it does nothing."""
        if status not in ENDINGS:
            raise ValueError(f"a run ends {', '.join(ENDINGS)}, not {status!r}")
        if os.getpid() != self.pid or self.status is not None:
            return
        self.status = status
        _open_runs.discard(self)
        failure: BaseException | None = None
        try:
            if status == "finished" and self._left_out is not None:
                self._keep_last_step()
            if status == "finished" or self._step_ended:
                self._complete_current()
            self.flush()
        except BaseException as exc:  # the writer failed (disk full, database gone): the run failed
            failure = exc
        try:
            self.writer.close()
        except BaseException as exc:
            failure = failure or exc
        try:
            if failure is not None:
                self.status, message = "failed", f"recording failed: {type(failure).__name__}: {failure}"
            changes: dict[str, Any] = {"kernel_shapes": self.shapes}
            if self.groups:
                changes["groups"] = self.groups
            if self.notes:
                changes["notes"] = self.notes
            # a run another process has taken over (--resume after this one was thought dead) is left to it
            if self.store.finish_run(self.run_id, self.status, message, owner=self.writer.owner):
                self.store.update_spec(self.run_id, changes)
                if self.budget is not None:
                    save_recording(self.store, self.run_id, self.budget.summary())
            self.store.confirm_recorded(self.run_id)
        except StoreError as exc:
            failure = failure or exc
        finally:
            problem = self.store.file_problem(self.run_id) if failure is not None else None  # the likeliest cause, plainly
            location = self.store.location
            self.store.close()
        if problem is not None:
            raise StoreError(problem) from None
        if failure is not None:
            raise failure
        if not self.quiet:  # where it went, once, as `convexp run` says it
            print(f"convexp: recorded as run {self.run_id} ({self.status}) in {location}", file=sys.stderr)


#: Runs recorded by this process and not ended yet: kept alive here, ended at interpreter exit.
_open_runs: set[TrackedRun] = set()


@atexit.register
def _finish_open_runs() -> None:
    """End the runs nobody finished: interrupted after Ctrl-C, failed after an uncaught exception,
    else finished. (An interactive session shows errors and goes on, so there they do not count.)"""
    last = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    interactive = hasattr(sys, "ps1") or sys.flags.interactive
    for run in list(_open_runs):
        try:
            if isinstance(last, KeyboardInterrupt):
                run.finish("interrupted", "interrupted (Ctrl-C)")
            elif last is not None and not interactive:
                run.finish("failed", f"{type(last).__name__}: {last}")
            else:
                run.finish("finished", "finished at interpreter exit, without finish()")
        except BaseException as exc:  # noqa: BLE001 -- one run's failure must not keep the others open
            print(f"convexp: run {run.run_id} could not be closed at exit: {exc}", file=sys.stderr)


def track(
    experiment: str,
    db: str | os.PathLike[str] | None = None,
    config: Mapping[str, Any] | None = None,
    *,
    layers: list[str] | None = None,
    dataset: str = EXTERNAL,
    framework: str = EXTERNAL,
    name: str | None = None,
    tags: list[str] | None = None,
    notes: str | None = None,
    quiet: bool = False,
    budget: float | None = None,
) -> TrackedRun:
    """Start recording a run from your own training loop into ``db`` (a SQLite path or SQLAlchemy
    URL; default ``$CONVEXP_DB`` or ./convexp.db), as experiment ``experiment``; see the module's
    docs. Use the run as a context manager, or end it with :meth:`TrackedRun.finish`.

    ``config`` is kept as the run's settings (JSON-able values; ``seed``, if there, is also the
    run's seed); ``layers`` limits the recorded conv layers by name; ``dataset`` and ``framework``
    are noted with the run; ``name``, ``tags`` and ``notes`` label it (as ``convexp name/tag/note`` do). When it
    ends it says ``convexp: recorded as run N (finished) in FILE`` on stderr, unless ``quiet``; its id is
    :attr:`TrackedRun.run_id`.

    ``budget`` (a share of training time, 0.05 = 5%): record kernels at every step only while that costs
    at most this share, else every k-th step (see :mod:`convexp.store.budget`); what was kept, and why,
    goes into the run's ``runs.recording`` (``convexp show`` prints it). Without it, every ``log_kernels``
    call is recorded."""
    check_budget(budget)
    problem = experiment_name_problem(str(experiment))
    if problem:
        raise ValueError(f"experiment {experiment!r}: {problem}")
    if name is not None and (problem := run_name_problem(name)):
        raise ValueError(f"name {name!r}: {problem}")
    try:
        tags = checked_tags(tags or (), "tags: ")
    except StoreError as exc:  # the tracking API's bad arguments are ValueErrors
        raise ValueError(str(exc)) from None
    if notes is not None and (problem := notes_problem(notes)):
        raise ValueError(problem)
    settings = dict(config or {})
    store = Store(db)
    try:
        store.check_recording_settings()  # a bad CONVEXP_SNAPSHOT_ENCODING or CONVEXP_WRITER is refused before the run is created
        run_id = store.create_run(
            experiment=experiment,
            backend=EXTERNAL,
            seed=int(settings.get("seed", 0)),
            dataset=dataset,
            kernel_initializer=str(settings.get("initializer", "unknown")),
            bias_initializer=str(settings.get("bias_initializer", "unknown")),
            spec={"external": True, "config": settings, "dataset": dataset, "layers": []},
            convexp_version=__version__,
            backend_version=__version__,
            framework=framework,
            framework_version=_framework_version(framework),
            name=name,
            tags=tags or None,
            notes=notes or None,
        )
        if budget is not None:  # stated before anything is recorded: a run that dies still says it had one
            save_recording(store, run_id, {"budget": budget})
        return TrackedRun(store, run_id, layers, quiet, budget)
    except BaseException:
        store.close()
        raise


def _say(line: str) -> None:
    print(f"convexp: {line}", file=sys.stderr)


def _check_count(what: str, value: object) -> None:
    """Refuse a step or epoch that is not a whole number the database's integers hold (bool is no number here)."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 <= value <= MAX_ID:
        raise ValueError(f"{what} must be a whole number from 0 to {MAX_ID}, not {value!r}")


def _framework_version(framework: str) -> str:

    try:
        return importlib.metadata.version(framework)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return "unknown"


def _non_finite(layout: Layout, flat: np.ndarray, step: int) -> str:
    """Which layer of a logged step holds NaN or infinity, as one line."""
    for name, (kernel, bias) in unpack(layout, flat):
        for part, values in (("kernel", kernel), ("bias", bias)):
            bad = None if values is None else non_finite(values)
            if bad is not None:
                return f"layer {name}'s {part} holds {bad} at step {step}: only finite kernels are recorded"
    return f"a kernel holds NaN or infinity at step {step}: only finite kernels are recorded"
