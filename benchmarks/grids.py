"""How fast grids are read back by their parameters: `convexp runs -e` and `convexp summary` over many runs.

    python benchmarks/grids.py [--runs 1000] [--snapshot-runs 15] [--steps 470] [--repeats 3] [--json FILE]

Builds two SQLite databases with the store's own writes (no training: the numbers read are what
matters): ``--runs`` finished runs of one experiment (4 initializers x 250 seeds by default, each with
the metrics of a 10-epoch run: test_accuracy and test_loss per epoch, train_loss every step of 100),
and ``--snapshot-runs`` every-step runs of conv1 (32x1x3x3, ``--steps`` snapshots each, XOR-delta
encoded as recording writes them). Then times, each as a fresh ``convexp`` process as a user runs it
(interpreter start-up included; median of ``--repeats``):

- ``convexp runs -e grid`` (a column per varying parameter) against a target of 1 s;
- ``convexp summary grid --by initializer`` (test accuracy and loss per group), 1 s;
- ``convexp summary every-step --by initializer --measure edge_share --layer conv1``, 5 s;
- ``convexp ui``'s page ``/experiments/grid100?by=initializer`` (100 runs, test accuracy by group with
  its curves), server time, 0.5 s; the runs page with every run and its parameters, 0.3 s;
- ``convexp validate`` of a grid of 1,000,000,000 runs (seed, epochs and batch_size with 1,000
  values each): counting, checking every value, sizing what it writes and the memory a run holds,
  in this process, 1 s (issue 33: counted from the sizes, never expanded); the same with issue 43's nested
  axes (a seed range, 1,000 learning rates inside the optimizer, 1,000 batch sizes), 1 s; and the whole command.

Prints a table and writes JSON (benchmarks/results/grids.json by default).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
INITIALIZERS = ["glorot_uniform", "he_normal", "lecun_normal", "orthogonal"]


def experiments_file(folder: Path, seeds: int) -> Path:
    """Two experiments: `grid` (initializers x seeds) and `every-step` (the same, fewer seeds)."""
    import yaml

    body = {
        "dataset": "digits",
        "backend": "numpy",
        "layers": [
            {"type": "conv", "filters": 32, "kernel_size": 3, "activation": "relu"},
            {"type": "maxpool", "pool_size": 2},
            {"type": "flatten"},
            {"type": "dense", "units": 10},
        ],
        "initializer": INITIALIZERS,
        "epochs": 10,
        "snapshots": {"every": 1},
    }
    path = folder / "grids.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "experiments": {
                    "grid": {**body, "seed": list(range(seeds))},
                    "grid100": {**body, "seed": list(range(25))},
                    "every-step": body,
                }
            }
        )
    )
    return path


def build(db: Path, runs: int, snapshot_runs: int, steps: int) -> None:
    """Insert finished runs with metrics, and every-step runs with conv1 snapshots, through the store."""
    from convexp.experiments import runner
    from convexp.store import MetricRecord, SnapshotToWrite, Store
    from convexp.store.background import Batch, write_batch

    folder = db.parent
    seeds = -(-runs // len(INITIALIZERS))
    path = experiments_file(folder, seeds)
    rng = np.random.default_rng(0)
    with Store(f"sqlite:///{db}") as store:
        planned = list(itertools.islice(runner.prepare_runs(path, ["grid"]), runs)) + list(runner.prepare_runs(path, ["grid100"]))
        for run in planned:
            run_id = runner.create_run(run, store)
            metrics = [MetricRecord(s, s // 100, "train_loss", float(rng.random())) for s in range(1, 1001, 10)]
            for epoch in range(1, 11):
                metrics += [
                    MetricRecord(epoch * 100, epoch, "test_accuracy", float(rng.uniform(0.8, 0.99))),
                    MetricRecord(epoch * 100, epoch, "test_loss", float(rng.uniform(0.05, 0.5))),
                ]
            store.record(run_id, metrics, [], epochs_completed=10, steps_completed=1000)
            store.finish_run(run_id, "finished")
        owner = (os.getpid(), socket.gethostname())
        for index in range(snapshot_runs):
            run = list(runner.prepare_runs(path, ["every-step"], {"seed": index}))[index % len(INITIALIZERS)]
            run_id = runner.create_run(run, store)
            kernel = rng.normal(0, 0.3, (32, 1, 3, 3)).astype(np.float32)
            for first in range(0, steps, 50):
                rows = []
                for step in range(first, min(first + 50, steps)):
                    kernel = kernel + rng.normal(0, 0.01, kernel.shape).astype(np.float32)
                    rows.append(SnapshotToWrite("conv1", step, 0, kernel.copy(), np.zeros(32, np.float32)))
                write_batch(store, run_id, Batch([MetricRecord(first, 0, "test_accuracy", 0.9)], rows, 0, rows[-1].step), owner)
            store.finish_run(run_id, "finished")


def timed(args: list[str], db: Path) -> float:
    """Seconds a fresh `convexp ...` process takes, start-up included."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "convexp", *args, "--db", str(db)], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"convexp {' '.join(args)} failed: {result.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--snapshot-runs", type=int, default=15)
    parser.add_argument("--steps", type=int, default=470)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "grids.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "grids.db"
        start = time.perf_counter()
        build(db, args.runs, args.snapshot_runs, args.steps)
        print(
            f"built {args.runs} + 100 + {args.snapshot_runs} runs in {time.perf_counter() - start:.1f} s ({db.stat().st_size / 1e6:.1f} MB)"
        )
        pages = {
            "convexp ui: /experiments/grid100?by=initializer (100 runs), server time": (
                page_ms(db, "/experiments/grid100?by=initializer", args.repeats),
                0.5,
            ),
            f"convexp ui: the runs page, {args.runs + 100 + args.snapshot_runs} runs with their parameters, server time": (
                page_ms(db, "/", args.repeats),
                0.3,
            ),
        }
        commands = {
            f"convexp runs -e grid ({args.runs} runs)": (["runs", "-e", "grid"], 1.0),
            f"convexp summary grid --by initializer ({args.runs} runs)": (["summary", "grid", "--by", "initializer"], 1.0),
            f"convexp summary every-step --by initializer --measure edge_share --layer conv1 ({args.snapshot_runs} runs x {args.steps} snapshots)": (
                ["summary", "every-step", "--by", "initializer", "--measure", "edge_share", "--layer", "conv1"],
                5.0,
            ),
            "convexp --help (start-up alone)": (["--help"], None),
        }
        huge = billion_grid(Path(folder))
        commands["convexp validate, a 1,000,000,000-run grid (start-up included)"] = (["validate", str(huge)], None)
        results = {}
        times = [billion_grid_seconds(huge) for _ in range(args.repeats)]
        results["a 1,000,000,000-run grid validated, sized and checked for memory, in this process"] = {
            "seconds": statistics.median(times),
            "all": times,
            "target": 1.0,
        }
        nested = billion_grid(Path(folder), nested=True)
        times = [billion_grid_seconds(nested) for _ in range(args.repeats)]
        results["the same with nested axes: a seed range, 1,000 learning rates, 1,000 batch sizes, in this process"] = {
            "seconds": statistics.median(times),
            "all": times,
            "target": 1.0,
        }
        for name, (command, target) in commands.items():
            times = [timed(command, db) if command != ["--help"] else timed_help() for _ in range(args.repeats)]
            results[name] = {"seconds": statistics.median(times), "all": times, "target": target}
    for name, (times, target) in pages.items():
        results[name] = {"seconds": statistics.median(times) / 1000, "all": [t / 1000 for t in times], "target": target}
    print(f"{'command':<110} {'median s':>9} {'target s':>9}")
    for name, r in results.items():
        target = "" if r["target"] is None else f"{r['target']:.1f}"
        print(f"{name:<110} {r['seconds']:>9.3f} {target:>9}")
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python {platform.python_version()}",
        "repeats": args.repeats,
        "runs": args.runs,
        "snapshot_runs": args.snapshot_runs,
        "steps": args.steps,
        "commands": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


def billion_grid(folder: Path, nested: bool = False) -> Path:
    """An experiments file of one experiment with 1,000 seeds x 1,000 epoch counts x 1,000 batch sizes; ``nested``:
    a seed range, 1,000 learning rates inside the optimizer and 1,000 batch sizes (issue 43's axes)."""
    import yaml

    spec = {
        "dataset": "digits",
        "backend": "numpy",
        "layers": [{"type": "conv", "filters": 4, "kernel_size": 3}, {"type": "flatten"}, {"type": "dense", "units": 10}],
        "seed": list(range(1000)),
        "epochs": list(range(1, 1001)),
        "batch_size": list(range(1, 1001)),
    }
    if nested:
        spec = {
            **spec,
            "epochs": 1,
            "seed": {"range": [0, 1000]},
            "optimizer": {"name": "adam", "learning_rate": [round(1e-4 * (1 + i), 6) for i in range(1000)]},
        }
    path = folder / ("nested.yaml" if nested else "billion.yaml")
    path.write_text(yaml.safe_dump({"experiments": {"billion": spec}}))
    return path


def billion_grid_seconds(path: Path) -> float:
    """What `convexp validate` does with the file, timed in this process (start-up apart)."""
    from convexp.backends.registry import get_backends
    from convexp.experiments import estimate_disk
    from convexp.experiments.estimate_memory import check_grids
    from convexp.experiments.grids import validate_file

    backends = get_backends()
    start = time.perf_counter()
    (grid,) = validate_file(path, backends=backends).values()
    assert len(grid) == 10**9
    estimate_disk.estimate_grid(grid)
    check_grids([grid])
    return time.perf_counter() - start


def page_ms(db: Path, path: str, repeats: int) -> list[float]:
    """A page's server time in ms (its Server-Timing header), the app in this process."""
    from starlette.testclient import TestClient

    from convexp.ui.app import create_app

    with TestClient(create_app(f"sqlite:///{db}")) as client:
        times = []
        for _ in range(repeats + 1):  # the first warms the imports up
            response = client.get(path)
            assert response.status_code == 200, response.text
            times.append(float(response.headers["server-timing"].split("dur=")[1]))
    return times[1:]


def timed_help() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "convexp", "--help"], capture_output=True, check=True)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
