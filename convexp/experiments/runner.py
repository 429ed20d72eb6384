"""Run experiments: validate everything first, then train each run on its backend and record it.

Usable from Python as from the CLI::

    from convexp.experiments.runner import prepare_runs, execute
    from convexp.store import Store
    outcomes = execute(prepare_runs("experiments.yaml", ["quickstart"]), Store("convexp.db"))
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from convexp import __version__
from convexp.backends.output_checks import PlanCheck, PluginBreach
from convexp.backends.protocol import Backend
from convexp.backends.registry import call_backend, get_backend, get_backends, plugin_version
from convexp.backends.trainer import TrainingJob
from convexp.datasets import Dataset, data_source, dataset_info, load_dataset
from convexp.errors import DatasetError, SpecError, StoreError
from convexp.experiments.allocator import keep_freed_memory
from convexp.experiments.grids import Grid, resolve_grids
from convexp.experiments.overrides import Override
from convexp.experiments.recorder import Diverged, ProgressListener, Pruned, RunRecorder
from convexp.experiments.samplers import optuna_module
from convexp.experiments.spec import ResolvedRun, RunSpec
from convexp.experiments.sweeping import judge_for, open_sweep
from convexp.model.layers import PlannedLayer
from convexp.model.seeding import initial_weights
from convexp.store import RunRecord, Store


@dataclass(frozen=True)
class PreparedRun:
    """A validated run, with its backend and resolved initializers, ready to execute."""

    experiment: str
    spec: RunSpec
    backend: Backend
    layers: tuple[PlannedLayer, ...]
    kernel_initializer: str
    bias_initializer: str
    #: Where it trains: the spec's ``device`` as the backend resolved it here (cpu, cuda).
    device: str = "cpu"
    #: The experiment's tags and notes, which the run starts with.
    tags: tuple[str, ...] = ()
    notes: str | None = None
    #: For a sweep's trial: the sweep's id, the trial's number and the values sampled for it (path -> value).
    sweep_id: int | None = None
    trial: int | None = None
    sampled: Mapping[str, Any] | None = None


@dataclass
class RunOutcome:
    """How one run ended."""

    run_id: int
    experiment: str
    backend: str
    status: str
    test_accuracy: float | None = None
    epoch_seconds: list[float] = field(default_factory=list)
    message: str | None = None
    #: For a sweep's trial: its sweep, its number, and its objective at the last epoch it reached.
    sweep_id: int | None = None
    trial: int | None = None
    objective: float | None = None


class RunListener(ProgressListener, Protocol):
    """Progress of a whole batch of runs, for display."""

    def run_start(self, run_id: int, run: PreparedRun, job: TrainingJob) -> None:
        """Before a run trains."""

    def run_end(self, outcome: RunOutcome) -> None:
        """After a run has ended, whatever its status."""


class _Preparer:
    """Turns resolved runs into prepared ones (each with its backend and its layer plan), asking each backend (usable? which device?) once."""

    def __init__(self, data_dir: Path | None = None):
        self.data_dir = data_dir
        self.devices: dict[tuple[str, str], str] = {}  # resolving may import the framework: once per backend and device
        self.available: set[str] = set()

    def check(self, spec: RunSpec, where: str) -> tuple[Backend, str]:
        """That ``spec``'s backend is usable here on its device and its data is present."""
        backend = get_backend(spec.backend)
        if spec.dataset not in self.available:
            dataset_info(spec.dataset).check_available(self.data_dir)
            self.available.add(spec.dataset)
        key = (backend.name, spec.device)
        if key not in self.devices:
            call_backend(backend, "framework_version")  # a plugin that cannot say it is refused before anything runs
            self.devices[key] = _resolve_device(backend, spec.device, where)
        return backend, self.devices[key]

    def prepare(self, run: ResolvedRun) -> PreparedRun:
        backend, device = self.check(run.spec, f"experiment '{run.experiment}'")
        return PreparedRun(
            run.experiment,
            run.spec,
            backend,
            run.spec.plan(),
            call_backend(backend, "resolve_initializer", run.spec.initializer, "kernel"),
            call_backend(backend, "resolve_initializer", run.spec.bias_initializer, "bias"),
            device,
            run.tags,
            run.notes,
        )


def prepare(resolved: list[ResolvedRun], data_dir: Path | None = None) -> list[PreparedRun]:
    """Check that every run can start (backend usable, data present) before any of them does."""
    preparer = _Preparer(data_dir)
    return [preparer.prepare(run) for run in resolved]


class PreparedRuns:
    """The runs of a selection of experiments, counted from their grids and prepared one at a time as
    they are reached, so that a grid of any size costs constant memory. Everything a run needs that
    can be checked before the first starts is checked when this is made: each value of each field
    (:meth:`Grid.check`), and each backend, device and dataset the grids name."""

    def __init__(self, grids: list[Grid], data_dir: Path | None = None):
        self.grids = grids
        self._preparer = _Preparer(data_dir)
        for grid in grids:
            if grid.sweep is not None and grid.sweep.needs_optuna():
                optuna_module()  # one line, before anything is printed or written, where Optuna is missing
            for axis in ("backend", "device", "dataset"):
                for spec in grid.validated(axis) if axis in grid.axes else [grid.spec()]:
                    self._preparer.check(spec, f"experiment '{grid.experiment}'")

    def __len__(self) -> int:
        return sum(len(grid) for grid in self.grids)

    def __iter__(self) -> Iterator[PreparedRun]:
        """The runs of the grids (a sweep's trials are sampled as it runs: :func:`execute`)."""
        for grid in self.grids:
            if grid.sweep is None:
                yield from self.of(grid)

    def of(self, grid: Grid) -> Iterator[PreparedRun]:
        """The runs of one grid, prepared as they are reached."""
        for run in grid:
            yield self._preparer.prepare(run)

    def prepare(self, run: ResolvedRun) -> PreparedRun:
        """One resolved run, prepared (its backend and device were checked when this was made)."""
        return self._preparer.prepare(run)


def prepare_runs(
    path: str | Path,
    names: list[str] | None = None,
    overrides: Mapping[str, Any] | Sequence[Override] | None = None,
    data_dir: Path | None = None,
) -> PreparedRuns:
    """Validate the named experiments of a file against the installed backends, and everything they need,
    without expanding their grids; nothing is written. Iterate the result for the runs, in order. ``overrides``
    set fields first: field -> value (``{"epochs": 2}``), or :class:`~convexp.experiments.overrides.Override`\\ s
    (``--set``: :func:`~convexp.experiments.overrides.parse_set`)."""
    return PreparedRuns(resolve_grids(path, names, overrides, backends=get_backends()), data_dir)


def make_job(run: PreparedRun, data: Dataset) -> TrainingJob:
    """The backend-neutral description of one run's training."""
    spec = run.spec
    train_images, train_labels = data.train_images, data.train_labels
    if spec.train_examples:
        train_images, train_labels = train_images[: spec.train_examples], train_labels[: spec.train_examples]
    return TrainingJob(
        layers=run.layers,
        num_classes=data.num_classes,
        kernel_initializer=run.kernel_initializer,
        bias_initializer=run.bias_initializer,
        optimizer=spec.optimizer,
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        seed=spec.seed,
        shuffle=spec.shuffle,
        train_images=train_images,
        train_labels=train_labels,
        test_images=data.test_images,
        test_labels=data.test_labels,
        max_steps=spec.max_steps,
        device=run.device,
        gradient_clip_norm=spec.gradient_clip_norm,
        label_smoothing=spec.label_smoothing,
        augmentation=spec.augmentation,
        snapshot_layers=spec.snapshot_layers(),
        initial_weights=(
            initial_weights(run.layers, run.kernel_initializer, run.bias_initializer, spec.seed) if spec.shared_init else None
        ),
    )


def execute(
    runs: Iterable[PreparedRun],
    store: Store,
    data_dir: Path | None = None,
    listener: RunListener | None = None,
    *,
    resume_sweeps: bool = False,
) -> list[RunOutcome]:
    """Train and record each run in turn. A run that fails is recorded as failed, one whose loss
    becomes NaN or infinite as diverged (keeping its snapshots up to that step), and the rest go
    on; Ctrl-C marks the current run interrupted (keeping what was recorded) and stops.

    Given :class:`PreparedRuns`, an experiment with a ``sweep:`` block runs as a search: each trial's values
    are sampled once the trials before it are recorded, and a trial the pruning rule stops ends ``pruned``.
    With ``resume_sweeps`` a sweep continues the newest one of the same definition in ``store``: its
    interrupted trials first (from their checkpoints), then the trials it lacks."""
    store.check_recording_settings()  # a bad CONVEXP_SNAPSHOT_ENCODING or CONVEXP_WRITER is refused before any run starts
    keep_freed_memory()
    training = _Training(store, data_dir, listener)
    if not isinstance(runs, PreparedRuns):
        return [training.new(run) for run in runs]
    outcomes = []
    for grid in runs.grids:
        if grid.sweep is None:
            outcomes += [training.new(run) for run in runs.of(grid)]
            continue
        sweep = open_sweep(store, grid, resume_sweeps)
        outcomes += [resume(run_id, store, data_dir, listener) for run_id in sweep.unfinished()]
        while (trial := sweep.next_trial()) is not None:
            prepared = replace(runs.prepare(trial.run), sweep_id=sweep.id, trial=trial.number, sampled=trial.values)
            outcomes.append(training.new(prepared))
    return outcomes


class _Training:
    """Trains new runs one after another, loading each dataset once."""

    def __init__(self, store: Store, data_dir: Path | None, listener: RunListener | None):
        self.store, self.data_dir, self.listener = store, data_dir, listener
        self.datasets: dict[str, tuple[Dataset, dict[str, Any]]] = {}

    def new(self, run: PreparedRun) -> RunOutcome:
        """Record ``run`` as a new run and train it."""
        if run.spec.dataset not in self.datasets:
            data = load_dataset(run.spec.dataset, self.data_dir)
            self.datasets[run.spec.dataset] = data, data_source(data, self.data_dir)
        data, source = self.datasets[run.spec.dataset]
        run_id = create_run(run, self.store, data_source=source)
        return _train_and_record(run, make_job(run, data), self.store, run_id, self.listener)


def resume(
    run_id: int, store: Store, data_dir: Path | None = None, listener: RunListener | None = None, force: bool = False
) -> RunOutcome:
    """Train on a run that stopped before finishing (interrupted, failed, or stale), recording into
    the same run: from its latest epoch checkpoint, or from step 0 if it has none.

    The run's own recorded spec is used. Rows it recorded after the checkpoint are replaced,
    never duplicated. Raises :class:`~convexp.errors.RunNotResumableError` for a run that
    finished, diverged or is still running; the database is then unchanged. Without ``data_dir``
    the data is looked for in the folder the run recorded, and data whose fingerprint differs from
    the recorded one is refused (:class:`~convexp.errors.DatasetError`), also leaving it unchanged.
    With ``force`` a run that still looks alive is taken over (its process records nothing more).
    """
    store.check_recording_settings()  # a bad CONVEXP_SNAPSHOT_ENCODING or CONVEXP_WRITER is refused before anything changes
    keep_freed_memory()
    recorded = store.get_run(run_id)
    source = recorded.data_source or {}
    if data_dir is None and source.get("dir") and Path(source["dir"]).is_dir():
        data_dir = Path(source["dir"])  # where the run found its data, unless told otherwise
    planned = prepared_from_record(recorded, data_dir)
    data = load_dataset(planned.spec.dataset, data_dir)
    found = data_source(data, data_dir)
    if source.get("fingerprint") and source["fingerprint"] != found["fingerprint"]:
        where = found["dir"] or f"the bundled {data.name}"
        raise DatasetError(
            f"run {run_id} trained on {data.name} data with fingerprint {source['fingerprint']}"
            f"{' from ' + source['dir'] if source.get('dir') else ''}; the data in {where} differs "
            f"({found['fingerprint']}): pass --data-dir with the data the run used"
        )
    checkpoint = store.reopen_run(run_id, force=force)
    if not source:  # a run recorded before convexp noted its data, or queued elsewhere: note it now
        store.set_data_source(run_id, found)
    job = replace(make_job(planned, data), resume_from=checkpoint)
    return _train_and_record(planned, job, store, run_id, listener)


def prepared_from_record(recorded: RunRecord, data_dir: Path | None = None) -> PreparedRun:
    """The run a database row describes, checked to be able to start here (backend usable, data present)."""
    spec = RunSpec.model_validate(recorded.spec)
    backend = get_backend(recorded.backend)
    dataset_info(spec.dataset).check_available(data_dir)
    device = _resolve_device(backend, spec.device, f"run {recorded.id}")
    return PreparedRun(
        recorded.experiment,
        spec,
        backend,
        spec.plan(),
        recorded.kernel_initializer,
        recorded.bias_initializer,
        device,
        sweep_id=recorded.sweep_id,
        trial=recorded.trial,
    )


def _resolve_device(backend: Backend, requested: str, what: str) -> str:
    """The device ``requested`` means on ``backend`` here; one line naming ``what`` asked for it when it is not there."""
    try:
        return call_backend(backend, "resolve_device", requested)
    except ValueError as exc:
        raise SpecError(f"{what}: {exc}") from None


def create_run(run: PreparedRun, store: Store, *, queued: bool = False, data_source: dict[str, Any] | None = None) -> int:
    """Insert a prepared run into the database (status running in this process, or queued for an
    executor to start elsewhere); returns its id. ``data_source`` is where its data came from
    (:func:`convexp.datasets.data_source`; a queued run notes it when it starts)."""
    backend = run.backend
    return store.create_run(
        queued=queued,
        experiment=run.experiment,
        backend=backend.name,
        seed=run.spec.seed,
        dataset=run.spec.dataset,
        kernel_initializer=run.kernel_initializer,
        bias_initializer=run.bias_initializer,
        spec=run.spec.model_dump(mode="json"),
        convexp_version=__version__,
        backend_version=plugin_version(backend.name),
        framework=backend.framework,
        framework_version=call_backend(backend, "framework_version"),
        data_source=data_source,
        device=run.device,
        tags=list(run.tags) or None,
        notes=run.notes,
        sweep_id=run.sweep_id,
        trial=run.trial,
    )


def _train_and_record(run: PreparedRun, job: TrainingJob, store: Store, run_id: int, listener: RunListener | None) -> RunOutcome:
    backend = run.backend
    outcome = RunOutcome(run_id, run.experiment, backend.name, "running")
    plan = PlanCheck.for_job(backend.name, job)
    judge = judge_for(
        store, run_id, run.sweep_id, run.trial, job.epochs
    )  # a sweep's trial: its objective measured, the pruning rule applied
    say = getattr(listener, "note", None)  # a line for the user (the budget's), where the listener shows one
    recorder = RunRecorder(store, run_id, run.spec, listener, resume_from=job.resume_from, plan=plan, hook=judge, say=say)
    if listener:
        listener.run_start(run_id, run, job)
    stopping = True  # until the run ends in a way that lets the next run go on
    try:
        try:
            backend.train(job, recorder)
            recorder.finished()
        except SystemExit as exc:  # a plugin must not end convexp: the run failed, and the next goes on
            raise PluginBreach(f"backend '{backend.name}' called sys.exit({exc.code!r}) during training") from None
        finally:
            # everything recorded is committed before the run's status is written: what is
            # buffered (also after a failure, or Ctrl-C) and what the writer thread still holds
            recorder.close()
        outcome.status, stopping = "finished", False
    except KeyboardInterrupt:
        outcome.status, outcome.message = "interrupted", "interrupted (Ctrl-C or SIGTERM)"
        raise
    except StoreError as exc:
        # The database takes no more (full disk, read-only, its file deleted): record why if it still
        # can, and stop the whole batch, since every later run would fail the same way.
        problem = store.file_problem(run_id)
        outcome.status, outcome.message = "failed", problem or str(exc)
        if problem is not None:
            raise StoreError(problem) from None
        raise
    except Diverged as exc:  # recorded up to the step before; the next run goes on
        outcome.status, outcome.message, stopping = "diverged", str(exc), False
    except Pruned as exc:  # recorded to the end of the epoch it stopped after; the next trial goes on
        outcome.status, outcome.message, stopping = "pruned", str(exc), False
    except PluginBreach as exc:  # the backend handed back what its plan does not allow: nothing of it is stored
        outcome.status, outcome.message, stopping = "failed", str(exc), False
    except Exception as exc:  # the run failed; record why and go on with the next
        outcome.status, outcome.message = "failed", f"backend '{backend.name}' raised {type(exc).__name__}: {exc}"
        stopping = False
    finally:
        if stopping:  # if this write fails too, the run shows as stale once its heartbeat ages
            with contextlib.suppress(Exception):
                _finish(store, outcome, recorder.writer.owner, listener if outcome.status == "interrupted" else None)
        else:
            if judge is not None:
                outcome.sweep_id, outcome.trial, outcome.objective = judge.sweep_id, judge.trial, judge.last_value()
            _finish(store, outcome, recorder.writer.owner, listener)
    return outcome


def _finish(store: Store, outcome: RunOutcome, owner: tuple[int, str], listener: RunListener | None) -> None:
    """Record a run's final status, read back its results into ``outcome``, and tell the listener. Raises
    :class:`StoreError` when the run is no longer ``owner``'s (taken over) or not in the database."""
    if not store.finish_run(outcome.run_id, outcome.status, outcome.message, owner=owner):
        raise store.not_ours(outcome.run_id, "finish")
    store.confirm_recorded(outcome.run_id)
    metrics = store.metrics(outcome.run_id, ["test_accuracy", "epoch_seconds"])
    accuracies = [m.value for m in metrics if m.name == "test_accuracy"]
    outcome.test_accuracy = accuracies[-1] if accuracies else None
    outcome.epoch_seconds = [m.value for m in metrics if m.name == "epoch_seconds"]
    if listener:
        listener.run_end(outcome)
