"""One convexp run of the mnist-keras-convnet experiment in this process, timed; prints JSON on its last line.

    python benchmarks/convexp_epoch.py MNIST_DIR BACKEND [--every-step] [--epochs N] [--train-examples N] [--device cpu|cuda]

Uses the library as a user's script would (prepare_runs, execute, a SQLite store in a temporary
folder), with no progress display. The recorder is wrapped to time convexp's own recording
work on the training thread (kernel copies, handing batches over) and the CPU time of its
database writer (the writer process by default), and the process's resident memory is read at the end of every epoch.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import convexp.experiments.runner as runner
from convexp.experiments.recorder import RunRecorder
from convexp.store import Store

REPO = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    """Current resident set size of this process, in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


class TimedRecorder(RunRecorder):
    """A RunRecorder that adds up the time spent in it, and notes memory after each epoch."""

    recording_seconds = 0.0
    writer_cpu_seconds = 0.0
    rss_after_epoch: list[float] = []

    def _timed(self, method, *args):
        started = time.perf_counter()
        try:
            return method(self, *args)
        finally:
            TimedRecorder.recording_seconds += time.perf_counter() - started

    def on_train_start(self, kernels):
        self._timed(RunRecorder.on_train_start, kernels)

    def on_step(self, step, epoch, metrics, kernels):
        self._timed(RunRecorder.on_step, step, epoch, metrics, kernels)

    def on_epoch_end(self, epoch, step, metrics, kernels, state=None):
        self._timed(RunRecorder.on_epoch_end, epoch, step, metrics, kernels, state)
        TimedRecorder.rss_after_epoch.append(rss_mib())

    def close(self):
        try:
            RunRecorder.close(self)
        finally:
            TimedRecorder.writer_cpu_seconds += self.writer.cpu_seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mnist_dir", type=Path)
    parser.add_argument("backend")
    parser.add_argument("--every-step", action="store_true", help="record kernels at every step")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-examples", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="the spec's device (the benchmark's CPU figures say cpu explicitly)")
    args = parser.parse_args()

    overrides = {"backend": args.backend, "epochs": args.epochs, "device": args.device}
    if args.every_step:
        overrides["snapshots"] = {"every": 1}
    if args.train_examples:
        overrides["train_examples"] = args.train_examples
    runner.RunRecorder = TimedRecorder  # time convexp's recording work
    planned = runner.prepare_runs(REPO / "experiments.yaml", ["mnist-keras-convnet"], overrides, args.mnist_dir)
    with tempfile.TemporaryDirectory() as folder:
        store = Store(str(Path(folder) / "bench.db"))
        started = time.perf_counter()
        (outcome,) = runner.execute(planned, store, args.mnist_dir)
        wall = time.perf_counter() - started
        snapshots = store.kernel_series(outcome.run_id, "conv2").steps.size
        store.close()
    if outcome.status != "finished":
        sys.exit(f"run {outcome.status}: {outcome.message}")
    print(
        json.dumps(
            {
                "epoch_seconds": outcome.epoch_seconds,
                "test_accuracy": outcome.test_accuracy,
                "recording_seconds": TimedRecorder.recording_seconds,
                "writer_cpu_seconds": TimedRecorder.writer_cpu_seconds,
                "conv2_snapshots": int(snapshots),
                "wall_seconds": wall,
                "rss_after_epoch_mib": TimedRecorder.rss_after_epoch,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
