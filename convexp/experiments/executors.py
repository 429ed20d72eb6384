"""Where the runs of an expanded grid execute: here, one after another, or as tasks on a Dask cluster.

The Dask executor uses dask.distributed as it is meant to be used: one task per run,
Dask's own ``retries=`` and ``allowed-failures`` for re-running a task whose worker died,
and nothing home-made in between. The client inserts every run as ``queued`` first; a task
claims its run in the database (:meth:`convexp.store.Store.reopen_run`), so a task that Dask
runs twice resumes the run from its last checkpoint instead of recording anything twice.
Workers write straight into the database, so give them one they can all reach (PostgreSQL
for a real cluster; a SQLite file works for a LocalCluster on one machine).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from convexp.errors import ConvexpError, RunStillRunningError
from convexp.experiments.allocator import tuning_setting
from convexp.experiments.runner import PreparedRun, PreparedRuns, RunOutcome, create_run, prepared_from_record, resume
from convexp.experiments.sweeping import OpenSweep, open_sweep
from convexp.store import Store
from convexp.store.records import STALE_AFTER_SECONDS

#: The Dask worker resource a run takes on a LocalCluster (one per worker).
RUN_RESOURCE = "convexp-run"
#: Default for --max-retries: how often a run whose task failed or whose worker died is re-run.
DEFAULT_RETRIES = 2


@dataclass(frozen=True)
class GridProgress:
    """How far a grid on a cluster has got."""

    total: int
    done: int
    failed: int
    running: int


#: Told the grid's progress whenever it changes, and each run's outcome as it ends.
GridListener = Callable[[GridProgress, "RunOutcome | None"], None]


def train_queued_run(run_id: int, db_url: str, data_dir: str | None = None) -> RunOutcome:
    """The Dask task: claim run ``run_id`` in the database and train it to the end, recording as it goes.

    A first attempt starts the queued run; a retry (Dask re-runs the task when its worker died)
    resumes it from its last epoch checkpoint, once the dead attempt's heartbeat has aged.
    """
    deadline = time.monotonic() + STALE_AFTER_SECONDS + 30
    with Store(db_url) as store:
        while True:
            try:
                return resume(run_id, store, Path(data_dir) if data_dir else None)
            except RunStillRunningError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2.0)  # the previous attempt's worker died on another host: wait until it is stale


def run_on_dask(
    runs: PreparedRuns | list[PreparedRun],
    store: Store,
    data_dir: Path | None = None,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    max_retries: int = DEFAULT_RETRIES,
    listener: GridListener | None = None,
    resume_sweeps: bool = False,
) -> list[RunOutcome]:
    """Each run as a task on a Dask cluster: the one at ``scheduler``, or a new LocalCluster of
    ``workers`` processes. Returns the outcomes in the order the runs were queued.

    A run whose worker died is re-run up to ``max_retries`` times (resuming from its checkpoint);
    after that it is marked interrupted and the grid goes on. An experiment with a ``sweep:`` block
    (given :class:`PreparedRuns`) runs its trials in parallel, as many as there are workers: the sampler
    stays here, drawing each trial's values once a worker is free, from the trials recorded so far (those
    still training included); the pruning rule is applied on the workers, from the database.
    """
    try:
        import dask  # the optional dask extra
        import distributed  # the optional dask extra
    except ImportError:
        raise ConvexpError("--executor dask needs dask.distributed: pip install 'convexp[dask]'") from None
    store.check_recording_settings()  # a bad CONVEXP_SNAPSHOT_ENCODING or CONVEXP_WRITER is refused before any run is queued
    tuning_setting()  # and a bad CONVEXP_MALLOC_TUNING
    plain = list(runs)  # a sweep's trials are not among them: they are sampled as the sweep goes
    sweeps = [grid for grid in runs.grids if grid.sweep] if isinstance(runs, PreparedRuns) else []
    opened = [open_sweep(store, grid, resume_sweeps) for grid in sweeps]
    queued = [(create_run(run, store, queued=True), run) for run in plain]
    data = str(data_dir) if data_dir else None
    with dask.config.set({"distributed.scheduler.allowed-failures": max_retries}):
        cluster, resources = None, None
        if scheduler is None:
            # Each worker offers one "convexp-run" and each task takes it (Dask's worker resources):
            # a worker holds only the run it trains, so one that dies takes no waiting run down with it.
            resources = {RUN_RESOURCE: 1}
            cluster = distributed.LocalCluster(
                n_workers=workers or os.cpu_count() or 1,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                resources=resources,
                preload=[__name__],  # dask_setup below, in each worker
            )
        run_ids = [run_id for run_id, _ in queued]
        try:
            with distributed.Client(cluster if cluster is not None else scheduler) as client:

                def submit(run_id: int, key: str):
                    return client.submit(
                        train_queued_run, run_id, store.url, data, key=key, retries=max_retries, pure=False, resources=resources
                    )

                parallel = workers or os.cpu_count() or 1
                if cluster is None:
                    parallel = max(1, len(client.scheduler_info().get("workers", {})))
                feeder = _SweepFeeder(opened, runs, store, parallel) if opened else None
                started = queued + (feeder.first() if feeder else [])
                run_ids[:] = [run_id for run_id, _ in started]
                futures = [(submit(run_id, f"convexp-run-{run_id}"), run_id, run) for run_id, run in started]
                outcomes = _collect(futures, run_ids, store, listener, distributed, submit, feeder)
        finally:  # also on Ctrl-C: the LocalCluster's workers stop, and their runs with them
            if cluster is not None:
                # tearing the cluster down makes its workers log lost heartbeats (with tracebacks): expected, not news
                logging.getLogger("distributed").setLevel(logging.CRITICAL)
                cluster.close()
            _mark_unfinished(store, run_ids)
    return [outcomes[run_id] for run_id in run_ids]


class _SweepFeeder:
    """Queues sweeps' trials as workers free up: at most ``parallel`` of them training at a time."""

    def __init__(self, sweeps: list[OpenSweep], runs: PreparedRuns | list[PreparedRun], store: Store, parallel: int):
        assert isinstance(runs, PreparedRuns)
        self.sweeps, self.runs, self.store, self.parallel = list(sweeps), runs, store, parallel
        self.in_flight = 0
        self.total = sum(sweep.sweep.total_trials for sweep in sweeps)

    def first(self) -> list[tuple[int, PreparedRun]]:
        """The trials that stopped before their end (continued from their checkpoints), then new ones."""
        resumed = []
        for sweep in self.sweeps:
            for run_id in sweep.unfinished():  # a task resumes an interrupted or stale run as it does a queued one
                resumed.append((run_id, prepared_from_record(self.store.get_run(run_id))))
        self.in_flight = len(resumed)
        return resumed + self.top_up()

    def ended(self) -> list[tuple[int, PreparedRun]]:
        """A trial ended: the next ones to queue."""
        self.in_flight -= 1
        return self.top_up()

    def top_up(self) -> list[tuple[int, PreparedRun]]:
        new = []
        while self.sweeps and self.in_flight < self.parallel:
            sweep = self.sweeps[0]
            trial = sweep.next_trial()
            if trial is None:
                self.sweeps.pop(0)
                continue
            run = replace(self.runs.prepare(trial.run), sweep_id=sweep.id, trial=trial.number, sampled=trial.values)
            new.append((create_run(run, self.store, queued=True), run))
            self.in_flight += 1
        return new


class _SchedulerGoneFilter(logging.Filter):
    """Drops a worker's "heartbeat failed" traceback when the scheduler's connection closed.

    The scheduler of a LocalCluster lives in convexp's own process, so it only goes away when
    convexp stops the grid; its workers then race it to the exit and may log a lost heartbeat,
    which says nothing the grid's own message does not."""

    def filter(self, record: logging.LogRecord) -> bool:
        from distributed.comm.core import CommClosedError  # the optional dask extra

        gone = record.exc_info is not None and isinstance(record.exc_info[1], CommClosedError)
        return not (gone and "heartbeat" in record.getMessage())


def dask_setup(worker) -> None:
    """Dask worker preload for the LocalCluster convexp starts: quiet teardown heartbeats."""
    logging.getLogger("distributed.worker").addFilter(_SchedulerGoneFilter())


def _mark_unfinished(store: Store, run_ids: list[int]) -> None:
    """Once the grid is over or stopped, no run of it is left queued, or running in a process that is gone.

    A run still training in a live process (a worker of your own cluster, whose task Dask could
    not stop) is left alone: it records on and ends as it ends."""
    wanted = set(run_ids)
    for record in store.list_runs():
        if record.id in wanted and (record.status == "queued" or record.is_stale()):
            store.mark_stopped(record.id, "interrupted", "the grid stopped before this run finished")


def _collect(futures, run_ids, store, listener, distributed, submit, feeder) -> dict[int, RunOutcome]:
    by_key = {future.key: (run_id, run) for future, run_id, run in futures}
    outcomes: dict[int, RunOutcome] = {}
    completed = distributed.as_completed([future for future, _, _ in futures])
    total = len(run_ids) + (feeder.total - sum(1 for _, run in by_key.values() if run.trial is not None) if feeder else 0)
    last = None
    while not completed.is_empty() or completed.has_ready():
        ended = []
        for future in completed.next_batch(block=False):
            run_id, run = by_key[future.key]
            if future.status == "finished":
                outcome = future.result()
            else:
                error = future.exception()
                if isinstance(error, distributed.KilledWorker) and store.statuses([run_id])[run_id] == "queued":
                    # The dead worker had been handed this run but never started it: that was no
                    # attempt of the run, so it does not use up a retry.
                    again = submit(run_id, f"{future.key}-again")
                    by_key[again.key] = (run_id, run)
                    completed.add(again)
                    continue
                reason = f"{type(error).__name__}: {error}"
                status = "interrupted" if isinstance(error, distributed.KilledWorker) else "failed"
                store.mark_stopped(run_id, status, reason)
                outcome = RunOutcome(
                    run_id, run.experiment, run.backend.name, status, message=reason, sweep_id=run.sweep_id, trial=run.trial
                )
            outcomes[run_id] = outcome
            ended.append(outcome)
            if feeder is not None and run.trial is not None:
                for new_id, new_run in feeder.ended():  # the sampler sees this trial's result before it draws
                    run_ids.append(new_id)
                    again = submit(new_id, f"convexp-run-{new_id}")
                    by_key[again.key] = (new_id, new_run)
                    completed.add(again)
        progress = _progress(outcomes, run_ids, store, max(total, len(run_ids)))
        if listener:
            for outcome in ended:
                listener(progress, outcome)
            if progress != last and not ended:
                listener(progress, None)
        last = progress
        time.sleep(0.25)
    return outcomes


def _progress(outcomes: dict[int, RunOutcome], run_ids: list[int], store: Store, total: int) -> GridProgress:
    statuses = store.statuses(run_ids)
    running = sum(1 for run_id in run_ids if run_id not in outcomes and statuses.get(run_id) == "running")
    failed = sum(1 for o in outcomes.values() if o.status not in ("finished", "pruned"))
    return GridProgress(total, len(outcomes) - failed, failed, running)
