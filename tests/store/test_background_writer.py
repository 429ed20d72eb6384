"""The writers, the thread and the process alike: batches committed in order with their progress,
back-pressure when the database falls behind, a failed write raised to the training thread with
nothing after it written."""

from __future__ import annotations

import functools
import sqlite3
import threading
import time

import numpy as np
import pytest

from convexp.store import MetricRecord, SnapshotToWrite
from convexp.store.background import BackgroundWriter, Batch
from convexp.store.writer_process import ProcessWriter
from tests.conftest import wait_until


def step_batch(first: int, last: int) -> Batch:
    """Whole steps first..last: one metric and one conv1 snapshot each, claiming ``last`` done."""
    return Batch(
        [MetricRecord(s, 1, "train_loss", 1.0 / s) for s in range(first, last + 1)],
        [
            SnapshotToWrite("conv1", s, 1, np.full((2, 1, 3, 3), s, np.float32), np.zeros(2, np.float32))
            for s in range(first, last + 1)
        ],
        epochs_completed=0,
        steps_completed=last,
    )


def committed(path, run_id: int) -> tuple[int, list[int], list[int]]:
    """steps_completed, metric steps and snapshot steps as a plain sqlite3 reader sees them."""
    with sqlite3.connect(path) as connection:
        (done,) = connection.execute("SELECT steps_completed FROM runs WHERE id = ?", (run_id,)).fetchone()
        metrics = [s for (s,) in connection.execute("SELECT step FROM metrics WHERE run_id = ? ORDER BY id", (run_id,))]
        snapshots = [
            s for (s,) in connection.execute("SELECT step FROM kernel_snapshots WHERE run_id = ? ORDER BY id", (run_id,))
        ]
    return done, metrics, snapshots


@pytest.fixture(
    params=[BackgroundWriter, ProcessWriter, functools.partial(ProcessWriter, move_after_cpu_seconds=1e-9)],
    ids=["thread", "process", "moving"],
)
def writer_class(request):
    """The writer thread; the writer process from the first batch; the default's path, writing in place
    while the process it started at its first batch gets ready (the move itself: test_writer_process)."""
    return request.param


def test_batches_are_committed_in_order_with_their_progress(db_path, new_run, writer_class):
    store, run_id = new_run
    writer = writer_class(store, run_id)
    for first in range(1, 200, 10):
        writer.submit(step_batch(first, first + 9))
    writer.drain()
    assert committed(db_path, run_id) == (200, list(range(1, 201)), list(range(1, 201)))
    writer.close()


def test_the_writer_counts_its_own_cpu_time_only(db_path, new_run):
    """cpu_seconds is what the writer thread used (what benchmarks report as the writer's share), not the trainer's."""
    store, run_id = new_run
    writer = BackgroundWriter(store, run_id)
    writer.submit(step_batch(1, 50))
    writer.drain()
    after_writing = writer.cpu_seconds
    assert after_writing > 0
    started = time.thread_time()
    while time.thread_time() - started < 0.5:  # the training thread busy: not the writer's time
        pass
    writer.submit(step_batch(51, 51))
    writer.close()
    assert after_writing <= writer.cpu_seconds < after_writing + 0.25


def test_submit_waits_while_the_database_is_behind(db_path, new_run, writer_class):
    """With another process holding the write lock, the queue fills and the trainer waits; once the
    lock is released every batch is written, in order."""
    store, run_id = new_run
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the database is busy for as long as this holds
    writer = writer_class(store, run_id, max_pending=2)
    submitted: list[int] = []

    def trainer():
        for first in range(1, 60, 10):
            writer.submit(step_batch(first, first + 9))
            submitted.append(first)

    thread = threading.Thread(target=trainer)
    thread.start()
    # one batch taken by the writer (waiting for the lock) and two queued: the fourth waits, for as long as
    # the lock is held -- however long the test looks (the wait below only gives a wrong writer time to err)
    wait_until(lambda: len(submitted) >= 3, "three batches submitted")
    time.sleep(0.5)
    assert submitted == [1, 11, 21], submitted
    assert thread.is_alive()
    blocker.rollback()
    blocker.close()
    thread.join(timeout=600)
    assert not thread.is_alive()
    writer.close()
    assert committed(db_path, run_id) == (60, list(range(1, 61)), list(range(1, 61)))


def test_a_failed_write_reaches_the_trainer_and_nothing_after_it_is_written(db_path, new_run, writer_class):
    store, run_id = new_run
    writer = writer_class(store, run_id)
    writer.submit(step_batch(1, 10))
    writer.drain()
    broken = Batch(
        [MetricRecord(11, 1, "train_loss", 1.0)],
        [SnapshotToWrite("conv1", 11, 1, np.zeros((2, 1, 3, 3), np.float32), np.zeros(2, np.float32))] * 2,  # duplicate key
        steps_completed=11,
    )
    writer.submit(broken)
    writer.submit(step_batch(12, 20))  # may be queued before the failure is known: never written
    with pytest.raises(Exception) as raised:
        writer.drain()
    assert not isinstance(raised.value, AssertionError)
    with pytest.raises(type(raised.value)):
        writer.submit(step_batch(21, 30))
    with pytest.raises(type(raised.value)):
        writer.close()
    # the failed batch rolled back as a whole, and the one after it was not written
    assert committed(db_path, run_id) == (10, list(range(1, 11)), list(range(1, 11)))


def test_a_quiet_run_still_beats_when_asked_to(db_path, new_run):
    store, run_id = new_run
    writer = BackgroundWriter(store, run_id, heartbeat_seconds=0.2)
    beats = set()
    deadline = time.monotonic() + 600  # a bound on a broken writer, not a timing: it stops at the third beat
    while len(beats) < 3 and time.monotonic() < deadline:
        with sqlite3.connect(db_path) as connection:
            beats.add(connection.execute("SELECT heartbeat_at FROM runs").fetchone()[0])
        time.sleep(0.1)
    writer.close()
    assert len(beats) >= 3  # the heartbeat moved while nothing was submitted
