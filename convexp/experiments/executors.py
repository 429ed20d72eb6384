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
from dataclasses import dataclass
from pathlib import Path

from convexp.errors import ConvexpError, RunStillRunningError
from convexp.experiments.allocator import tuning_setting
from convexp.experiments.runner import PreparedRun, RunOutcome, create_run, resume
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
    runs: list[PreparedRun],
    store: Store,
    data_dir: Path | None = None,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    max_retries: int = DEFAULT_RETRIES,
    listener: GridListener | None = None,
) -> list[RunOutcome]:
    """Each run as a task on a Dask cluster: the one at ``scheduler``, or a new LocalCluster of
    ``workers`` processes. Returns the outcomes in the order of ``runs``.

    A run whose worker died is re-run up to ``max_retries`` times (resuming from its checkpoint);
    after that it is marked interrupted and the grid goes on.
    """
    try:
        import dask  # the optional dask extra
        import distributed  # the optional dask extra
    except ImportError:
        raise ConvexpError("--executor dask needs dask.distributed: pip install 'convexp[dask]'") from None
    store.check_recording_settings()  # a bad CONVEXP_SNAPSHOT_ENCODING or CONVEXP_WRITER is refused before any run is queued
    tuning_setting()  # and a bad CONVEXP_MALLOC_TUNING
    run_ids = [create_run(run, store, queued=True) for run in runs]
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
        try:
            with distributed.Client(cluster if cluster is not None else scheduler) as client:

                def submit(run_id: int, key: str):
                    return client.submit(
                        train_queued_run, run_id, store.url, data, key=key, retries=max_retries, pure=False, resources=resources
                    )

                futures = [submit(run_id, f"convexp-run-{run_id}") for run_id in run_ids]
                outcomes = _collect(futures, run_ids, runs, store, listener, distributed, submit)
        finally:  # also on Ctrl-C: the LocalCluster's workers stop, and their runs with them
            if cluster is not None:
                # tearing the cluster down makes its workers log lost heartbeats (with tracebacks): expected, not news
                logging.getLogger("distributed").setLevel(logging.CRITICAL)
                cluster.close()
            _mark_unfinished(store, run_ids)
    return [outcomes[run_id] for run_id in run_ids]


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


def _collect(futures, run_ids, runs, store, listener, distributed, submit) -> dict[int, RunOutcome]:
    by_key = {future.key: (run_id, run) for future, run_id, run in zip(futures, run_ids, runs)}
    outcomes: dict[int, RunOutcome] = {}
    completed = distributed.as_completed(futures)
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
                outcome = RunOutcome(run_id, run.experiment, run.backend.name, status, message=reason)
            outcomes[run_id] = outcome
            ended.append(outcome)
        progress = _progress(outcomes, run_ids, store)
        if listener:
            for outcome in ended:
                listener(progress, outcome)
            if progress != last and not ended:
                listener(progress, None)
        last = progress
        time.sleep(0.25)
    return outcomes


def _progress(outcomes: dict[int, RunOutcome], run_ids: list[int], store: Store) -> GridProgress:
    statuses = store.statuses(run_ids)
    running = sum(1 for run_id in run_ids if run_id not in outcomes and statuses.get(run_id) == "running")
    failed = sum(1 for o in outcomes.values() if o.status != "finished")
    return GridProgress(len(run_ids), len(outcomes) - failed, failed, running)
