"""The writer process: batches sent through a pipe and committed by a child process, in order, bit for bit,
its own heartbeat, its death reported, and no life after its parent's. (What it shares with the
writer thread - order, back-pressure, a failed write - is tested for both in test_background_writer.)"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import convexp
from convexp.errors import StoreError
from convexp.store import MetricRecord, SnapshotToWrite
from convexp.store.background import Batch
from convexp.store.packed import PackedSnapshots
from convexp.store.writer_process import ProcessWriter
from tests.conftest import REPO, stored_kernels
from tests.store.test_background_writer import committed, step_batch


def test_batches_of_rows_and_of_packed_steps_are_committed_in_order_bit_for_bit(db_path, new_run):
    store, run_id = new_run
    writer = ProcessWriter(store, run_id)
    for first in range(1, 100, 10):
        writer.submit(step_batch(first, first + 9))
    rng = np.random.default_rng(0)
    layout = (("wide", (64, 32, 3, 3), 64), ("small", (4, 1, 3, 3), None))
    flats = {step: rng.standard_normal(64 * 32 * 9 + 64 + 36).astype(np.float32) for step in range(101, 131)}
    packed = PackedSnapshots([(step, 2, [(layout, flat)]) for step, flat in flats.items()])
    writer.submit(Batch([MetricRecord(130, 2, "test_loss", 0.25)], packed, 2, 130))
    writer.drain()
    assert writer.cpu_seconds > 0  # the child's CPU, reported with each batch
    writer.close()
    done, metrics, snapshots = committed(db_path, run_id)
    assert (done, metrics) == (130, [*range(1, 101), 130])
    assert snapshots[:100] == list(range(1, 101))
    wide, small = stored_kernels(db_path, "wide", run_id), stored_kernels(db_path, "small", run_id)
    for step, flat in flats.items():
        assert wide[step].tobytes() == flat[: 64 * 32 * 9].tobytes()
        assert small[step].tobytes() == flat[-36:].tobytes()
    with sqlite3.connect(db_path) as connection:
        biases = dict(connection.execute("SELECT step, bias FROM kernel_snapshots WHERE layer = 'wide'"))
    assert all(biases[step] == flat[64 * 32 * 9 : 64 * 32 * 9 + 64].tobytes() for step, flat in flats.items())


def test_the_writer_process_writes_the_heartbeat_while_the_trainer_is_quiet(db_path, new_run):
    store, run_id = new_run
    writer = ProcessWriter(store, run_id)
    writer.submit(step_batch(1, 1))
    writer.drain()
    with sqlite3.connect(db_path) as connection:
        first = connection.execute("SELECT heartbeat_at FROM runs").fetchone()[0]
    time.sleep(2.5)  # nothing submitted: the child beats on its own, once a second
    with sqlite3.connect(db_path) as connection:
        later = connection.execute("SELECT heartbeat_at FROM runs").fetchone()[0]
    writer.close()
    assert later > first


def test_a_writer_process_that_dies_fails_the_run_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVEXP_WRITER", "process")
    db = tmp_path / "r.db"
    run = convexp.track(experiment="x", db=str(db))
    run.log_kernels({"c": np.zeros((2, 1, 3, 3), np.float32)}, step=0)
    run.flush()
    run.writer.drain()  # the writer process started with the first batch
    os.kill(run.writer._process.pid, signal.SIGKILL)
    run.writer._process.wait()
    with pytest.raises(StoreError, match=r"the database writer process of run 1 exited \(code -9\)"):
        run.finish()
    with sqlite3.connect(db) as connection:
        status, message = connection.execute("SELECT status, message FROM runs").fetchone()
    assert status == "failed" and message.startswith("recording failed: StoreError: the database writer process of run 1 exited")


def test_the_writer_process_ends_with_its_parent_and_keeps_whole_steps(tmp_path):
    """With the default writer, which moves to its process once recording proves heavy (32 x 32 x 3 x 3
    every step does): a kill of the training process after the move keeps whole steps, in place and
    moved alike, and the writer process ends too."""
    db = tmp_path / "r.db"
    script = tmp_path / "loop.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time, numpy as np, convexp
            run = convexp.track(experiment="killed", db={str(db)!r})
            for step in range(100000):
                run.log_kernels({{"c": np.full((32, 32, 3, 3), step, np.float32)}}, step=step)
                run.log_metrics({{"train_loss": 1.0}}, step=step)
                if step % 100 == 0:
                    moved = run.writer._moved and run.writer._process.pid
                    print(step, int(moved), flush=True)
                time.sleep(0.001)
            """
        )
    )
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert process.stdout is not None
    child, moved_at = 0, None
    for line in process.stdout:
        step, child = map(int, line.split())
        moved_at = moved_at if moved_at is not None or not child else step
        if moved_at is not None and step >= moved_at + 1000:
            break
    assert moved_at is not None, "the writer never moved to its process"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.1)
    assert not _alive(child), "the writer process outlived the process it wrote for"
    with sqlite3.connect(db) as connection:
        (done,) = connection.execute("SELECT steps_completed FROM runs").fetchone()
        steps = [s for (s,) in connection.execute("SELECT step FROM kernel_snapshots ORDER BY step")]
        losses = [s for (s,) in connection.execute("SELECT step FROM metrics ORDER BY step")]
    assert done >= moved_at + 900
    assert steps == list(range(done + 1)) and losses == list(range(done + 1))  # whole steps, all claimed
    kernels = stored_kernels(db, "c")
    assert all(kernels[step].tobytes() == np.full((32, 32, 3, 3), step, np.float32).tobytes() for step in (0, done))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_the_writer_can_be_the_thread_and_a_bad_choice_is_refused_before_any_run(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVEXP_WRITER", "thread")
    db = tmp_path / "t.db"
    with convexp.track(experiment="x", db=str(db)) as run:
        assert not isinstance(run.writer, ProcessWriter)
        run.log_kernels({"c": np.ones((2, 1, 3, 3), np.float32)}, step=0)
    assert stored_kernels(db, "c")[0].tobytes() == np.ones((2, 1, 3, 3), np.float32).tobytes()
    monkeypatch.setenv("CONVEXP_WRITER", "fork")
    with pytest.raises(StoreError, match=r"^CONVEXP_WRITER='fork' is not a writer; use one of auto, process, thread$"):
        convexp.track(experiment="x", db=str(tmp_path / "refused.db"))
    with sqlite3.connect(tmp_path / "refused.db") as connection:
        assert connection.execute("SELECT count(*) FROM runs").fetchone() == (0,)


def test_rows_with_biases_and_without_travel_intact(db_path, new_run):
    store, run_id = new_run
    writer = ProcessWriter(store, run_id)
    kernel = np.arange(2 * 3 * 5 * 5, dtype=np.float64).reshape(2, 3, 5, 5)  # float64 in: stored as float32
    writer.submit(
        Batch([], [SnapshotToWrite("a", 0, 0, kernel, np.array([1.5, -2.0])), SnapshotToWrite("b", 0, 0, kernel[:1], None)], 0, 0)
    )
    writer.close()
    assert stored_kernels(db_path, "a", run_id)[0].tobytes() == kernel.astype(np.float32).tobytes()
    assert stored_kernels(db_path, "b", run_id)[0].shape == (1, 3, 5, 5)
    with sqlite3.connect(db_path) as connection:
        assert dict(connection.execute("SELECT layer, bias FROM kernel_snapshots")) == {
            "a": np.array([1.5, -2.0], np.float32).tobytes(),
            "b": None,
        }


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_a_run_taken_over_by_another_process_is_never_written_again(tmp_path, monkeypatch, writer):
    """Once another process owns the run (a --resume that found this one stale), this one's batches,
    heartbeats and final status are refused, and what the new owner wrote stays as it is."""
    monkeypatch.setenv("CONVEXP_WRITER", writer)
    db = tmp_path / "r.db"
    run = convexp.track(experiment="x", db=str(db))
    run.log_kernels({"c": np.zeros((2, 1, 3, 3), np.float32)}, step=0)
    run.log_kernels({"c": np.zeros((2, 1, 3, 3), np.float32)}, step=1)  # step 0 is complete
    run.flush()
    run.writer.drain()
    with sqlite3.connect(db) as connection:  # what reopen_run does for the new owner
        connection.execute("UPDATE runs SET pid = 999999999, host = 'elsewhere', status = 'running', steps_completed = 0")
    run.log_kernels({"c": np.ones((2, 1, 3, 3), np.float32)}, step=2)
    run.log_kernels({"c": np.ones((2, 1, 3, 3), np.float32)}, step=3)
    with pytest.raises(
        StoreError, match=r"run 1 is no longer this process's to write: it is now pid 999999999 on elsewhere \(running\)"
    ):
        run.finish()
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT status, pid, steps_completed, message FROM runs").fetchone() == (
            "running",
            999999999,
            0,
            None,
        )
        assert connection.execute("SELECT step FROM kernel_snapshots").fetchall() == [(0,)]


def test_a_light_run_is_written_in_place_and_never_starts_a_writer_process(tmp_path):
    db = tmp_path / "light.db"
    with convexp.track(experiment="x", db=str(db)) as run:
        for step in range(50):
            run.log_kernels({"c": np.full((4, 1, 3, 3), step, np.float32)}, step=step)
        writer = run.writer
    assert isinstance(writer, ProcessWriter) and writer._process is None and writer.cpu_seconds > 0
    assert sorted(stored_kernels(db, "c")) == list(range(50))


def test_a_writer_process_started_too_late_for_any_batch_is_stopped_and_nothing_is_lost(db_path, new_run):
    store, run_id = new_run
    writer = ProcessWriter(store, run_id, move_after_cpu_seconds=1e-9)  # starts it at the first batch
    writer.submit(step_batch(1, 10))
    writer.close()  # long before a new interpreter has imported numpy: the batch was written in place
    assert not writer._moved and writer._process is not None and writer._process.returncode == -signal.SIGKILL
    assert committed(db_path, run_id) == (10, list(range(1, 11)), list(range(1, 11)))


def _write_until_moved(writer: ProcessWriter, first: int, between=lambda: time.sleep(0.01)) -> int:
    """Submit whole batches of 10 steps from ``first``, calling ``between`` after each, until the writer
    process has answered its start (600 s at most: a bound on a broken test, not a timing); returns the
    next step."""
    deadline = time.monotonic() + 600
    while not writer._moved and time.monotonic() < deadline:
        writer.submit(step_batch(first, first + 9))
        writer.drain()
        first += 10
        between()
    return first


def test_a_writer_moves_to_its_process_part_way_and_keeps_order_and_bits(db_path, new_run):
    store, run_id = new_run
    writer = ProcessWriter(store, run_id, move_after_cpu_seconds=1e-9)  # starts it at the first batch
    first = _write_until_moved(writer, 1)
    assert writer._moved and first > 11, "the writer should write in place while its process starts, then move"
    in_place = writer.cpu_seconds
    rng = np.random.default_rng(1)
    layout = (("wide", (32, 32, 3, 3), None),)
    flats = {step: rng.standard_normal(32 * 32 * 9).astype(np.float32) for step in range(first, first + 20)}
    writer.submit(Batch([], PackedSnapshots([(step, 0, [(layout, flat)]) for step, flat in flats.items()]), 0, first + 19))
    writer.close()
    assert writer.cpu_seconds > in_place  # the process's CPU added to what was spent in place
    done, metrics, snapshots = committed(db_path, run_id)
    assert (done, metrics) == (first + 19, list(range(1, first)))
    assert snapshots == list(range(1, first + 20))
    wide = stored_kernels(db_path, "wide", run_id)
    assert all(wide[step].tobytes() == flat.tobytes() for step, flat in flats.items())


def test_a_writer_process_whose_parent_is_gone_ends_quietly(db_path, new_run):
    """Its parent killed or its Dask task cancelled, the writer finds no one to answer: it ends, with no traceback."""
    import pickle
    import subprocess
    import sys

    from convexp.store.writer_process import _HEADER

    store, run_id = new_run
    child = subprocess.Popen(
        [sys.executable, "-c", "from convexp.store.writer_child import main; main()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    child.stdout.close()  # the parent stops listening before the writer answers
    meta = pickle.dumps((store.url, run_id, 5.0, (0, "")))
    child.stdin.write(_HEADER.pack(b"I", len(meta), 0) + meta)
    child.stdin.close()
    stderr = child.stderr.read()
    assert child.wait(timeout=600) == 0 and b"Traceback" not in stderr, stderr.decode()


class TrainingClocks:
    """Clocks for a writer as training of a given kind would drive them: each call to the wall clock is a
    further stretch of ``stretch`` seconds in which training used ``cores_used`` cores' worth of CPU (the
    writer's own CPU time stays 0). The machine's real load cannot change what the writer sees."""

    def __init__(self, cores_used: float, stretch: float):
        self.cores_used, self.stretch, self.now = cores_used, stretch, 0.0

    def wall(self) -> float:
        self.now += self.stretch
        return self.now

    def process_cpu(self) -> float:
        return self.now * self.cores_used


@pytest.mark.parametrize(("cores", "cores_used", "moves"), [(1, 1.0, False), (2, 1.99, False), (2, 1.0, True), (8, 2.0, True)])
def test_the_default_writer_moves_only_to_a_core_that_training_leaves_free(db_path, new_run, cores, cores_used, moves):
    """Training that keeps every core busy gains nothing from a writer process and pays for its start:
    the writer stays in place. One that leaves a core free gets the process. The clocks are the test's,
    so the machine's own load cannot decide it."""
    from convexp.store.writer_process import MEASURE_SECONDS, Clocks

    store, run_id = new_run
    training = TrainingClocks(cores_used, stretch=MEASURE_SECONDS)
    clocks = Clocks(wall=training.wall, process_cpu=training.process_cpu, writer_cpu=lambda: 0.0)
    writer = ProcessWriter(store, run_id, move_after_cpu_seconds=1e-9, cores=cores, clocks=clocks)
    first = 1
    for _ in range(4):
        writer.submit(step_batch(first, first + 9))
        writer.drain()
        first += 10
    if moves:
        first = _write_until_moved(writer, first)
    writer.close()
    assert (writer._process is not None, writer._moved) == (moves, moves)
    assert committed(db_path, run_id) == (first - 1, list(range(1, first)), list(range(1, first)))


def test_a_writer_measures_training_on_the_real_clocks(db_path, new_run):
    """With the real clocks, a loop that waits (as a GPU's does) leaves a core of two free, however busy
    the machine is: the writer moves. (A loop that spins may be given less than a core by a loaded
    machine, so the opposite case is decided with the test's clocks above.)"""
    store, run_id = new_run
    writer = ProcessWriter(store, run_id, move_after_cpu_seconds=1e-9, cores=2)
    first = _write_until_moved(writer, 1, between=lambda: time.sleep(0.05))
    writer.close()
    assert writer._moved
    assert committed(db_path, run_id) == (first - 1, list(range(1, first)), list(range(1, first)))


def test_a_spare_core_is_what_training_leaves_of_the_cores():
    from convexp.store.writer_process import SPARE_CORE, spare_cores

    assert spare_cores(2, 1.0, 1.0) == 1.0 >= SPARE_CORE  # one torch thread on two cores
    assert spare_cores(2, 3.96, 2.0) < SPARE_CORE  # two torch threads, spinning while they wait
    assert spare_cores(8, 2.0, 1.0) == 6.0


def test_the_default_writer_measures_on_the_cores_this_process_may_use(new_run, monkeypatch):
    from convexp.store.writer_process import make_writer

    monkeypatch.delenv("CONVEXP_WRITER", raising=False)
    writer = make_writer(*new_run)
    writer.close()
    assert isinstance(writer, ProcessWriter) and writer._cores == len(os.sched_getaffinity(0))
