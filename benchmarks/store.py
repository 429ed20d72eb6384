"""The results store and the command line: writing and reading every-step snapshots, and cold start times.

    python benchmarks/store.py [--json FILE]

- write: one epoch of the Keras example's every-step snapshots (469 steps + step 0 of conv1
  (32, 1, 3, 3) and conv2 (64, 32, 3, 3), moving by small random steps as training moves them,
  with their per-step metrics) through convexp's recorder into a new SQLite file, in the batches
  it uses while training, encoded as convexp stores them;
- read: all snapshots of conv1 and of conv2 of that run back as (steps, out, in, kh, kw) arrays;
- cold start: `convexp --help` and `convexp runs` in fresh processes, and `convexp run` of the
  quickstart experiment end to end on numpy and on torch (median of --repeats, after one untimed
  run that fills the digits cache), each beside its floor: the same imports and set-up done by a
  bare Python process with no convexp code (SQLAlchemy's ORM, Typer and Rich, which any command
  that reads the store imports; `import torch` and a torch.optim optimizer, which every PyTorch
  training script pays).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from convexp.experiments.grids import resolve_runs
from convexp.experiments.recorder import RunRecorder
from convexp.model.weights import KernelSnapshot
from convexp.store import Store

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STEPS = 469
READ_TARGET = 0.5
START_TARGET = 0.5
RUNS_TARGET = 0.3
QUICKSTART_TARGETS = {"numpy": 2.0, "torch": 4.0}
#: What a process pays before any convexp code runs, measured with no convexp code at all.
STORE_FLOOR = "import sqlalchemy.orm, typer, typer._adapters, rich.table"
TORCH_FLOOR = "import torch; torch.optim.Adam(torch.nn.Linear(2, 2).parameters())"


def convexp(*arguments: str) -> None:
    """Run the convexp command line in a fresh process, from the repository (its experiments.yaml)."""
    subprocess.run([sys.executable, "-m", "convexp", *arguments], cwd=REPO, capture_output=True, check=True)


def python(code: str) -> None:
    """Run a bare Python process with no convexp code."""
    subprocess.run([sys.executable, "-c", code], check=True)


def median_seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=HERE / "results" / "store.json")
    parser.add_argument("--repeats", type=int, default=7, help="fresh processes per cold-start figure (the median is reported)")
    args = parser.parse_args()
    repeats = args.repeats
    (run,) = resolve_runs(REPO / "experiments.yaml", ["mnist-keras-convnet"], {"epochs": 1, "snapshots": {"every": 1}})
    # kernels that move as training moves them (small steps), so the stored deltas are as large as real ones
    rng = np.random.default_rng(0)
    path = {"conv1": [rng.standard_normal((32, 1, 3, 3)).astype(np.float32) * np.float32(0.3)]}
    path["conv2"] = [rng.standard_normal((64, 32, 3, 3)).astype(np.float32) * np.float32(0.06)]
    for start in path.values():
        for _ in range(STEPS):
            start.append(start[-1] - np.float32(1e-3) * rng.standard_normal(start[0].shape).astype(np.float32) * start[0].std())
    at = [0]

    def reader():  # what a backend hands over: fresh copies each time
        return {
            name: KernelSnapshot(kernels[at[0]].copy(), np.zeros(len(kernels[0]), np.float32)) for name, kernels in path.items()
        }

    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "bench.db"
        store = Store(str(db))
        run_id = store.create_run(
            experiment="bench",
            backend="numpy",
            seed=0,
            dataset="mnist",
            kernel_initializer="glorot_uniform",
            bias_initializer="zeros",
            spec=run.spec.model_dump(mode="json"),
            convexp_version="bench",
            backend_version="bench",
            framework="numpy",
            framework_version=np.__version__,
        )
        started = time.perf_counter()
        recorder = RunRecorder(store, run_id, run.spec)
        recorder.on_train_start(reader)
        for step in range(1, STEPS + 1):
            at[0] = step
            recorder.on_step(step, 1, {"train_loss": 0.1, "train_accuracy": 0.9}, reader)
        recorder.on_epoch_end(1, STEPS, {"test_loss": 0.1, "test_accuracy": 0.9, "epoch_seconds": 1.0}, reader)
        handed_over_seconds = time.perf_counter() - started  # what training waits for: the writer thread does the rest
        recorder.close()
        write_seconds = time.perf_counter() - started
        store.close()
        megabytes = db.stat().st_size / 2**20

        def read_all():
            with Store(str(db)) as fresh:
                series = [fresh.kernel_series(run_id, layer) for layer in ("conv1", "conv2")]
            assert series[1].kernels.shape == (STEPS + 1, 64, 32, 3, 3)

        read_seconds = median_seconds(read_all, 5)
        quickstart = {
            backend: ["run", "-e", "quickstart", "--backend", backend, "--db", str(Path(folder) / f"quickstart-{backend}.db")]
            for backend in QUICKSTART_TARGETS
        }
        for start in quickstart.values():
            convexp(*start)  # untimed: fills the digits cache of a fresh machine
        # (name, what it runs, target): each figure beside its floor, timed in turn in every repeat
        # so that the machine's drift hits a figure and its floor alike
        starts = [
            ("cold `convexp --help`", lambda: convexp("--help"), START_TARGET),
            ("cold `convexp runs`", lambda: convexp("runs", "--db", str(db)), RUNS_TARGET),
            ("(floor: importing SQLAlchemy's ORM, Typer and Rich, no convexp code)", lambda: python(STORE_FLOOR), None),
            (
                "`convexp run -e quickstart` on numpy, end to end",
                lambda: convexp(*quickstart["numpy"]),
                QUICKSTART_TARGETS["numpy"],
            ),
            (
                "`convexp run -e quickstart --backend torch`, end to end",
                lambda: convexp(*quickstart["torch"]),
                QUICKSTART_TARGETS["torch"],
            ),
            ("(floor: `import torch` and creating a torch.optim.Adam, no convexp code)", lambda: python(TORCH_FLOOR), None),
            ("(a bare `python -c pass`, for scale)", lambda: python("pass"), None),
        ]
        times: dict[str, list[float]] = {name: [] for name, _, _ in starts}
        for _ in range(repeats):
            for name, action, _ in starts:
                started = time.perf_counter()
                action()
                times[name].append(time.perf_counter() - started)

    rows = [
        ("record one epoch of every-step snapshots (training thread)", handed_over_seconds, None),
        ("... until all committed (writer thread)", write_seconds, None),
        ("read all snapshots of conv1 and conv2", read_seconds, READ_TARGET),
        *((name, statistics.median(times[name]), target) for name, _, target in starts),
    ]
    print(f"every-step snapshots of one epoch: {STEPS + 1} x 2 layers, database {megabytes:.1f} MiB\n")
    print(f"{'measure':74} {'seconds':>8} {'target':>8}")
    for name, seconds, target in rows:
        verdict = "" if target is None else f"{'<= ' + str(target):>8} {'ok' if seconds <= target else 'MISSED'}"
        print(f"{name:74} {seconds:8.3f} {verdict}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {name: seconds for name, seconds, _ in rows}
            | {"database_mib": megabytes, "repeats": repeats, "targets": {name: t for name, _, t in rows if t is not None}},
            indent=2,
        )
    )
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
