"""The Keras "Simple MNIST convnet" example to the end: mnist-keras-convnet for 12 epochs on every backend.

    python benchmarks/fidelity.py [--mnist DIR] [--epochs 12] [--backends numpy,torch,tensorflow]
                                  [--db FILE] [--json FILE] [--file experiments.yaml --experiment NAME]

keras.io reports a test accuracy of about 0.991 after 12-15 epochs of this network. Each backend
runs in its own `convexp run` process (the CLI, as a user would run it) into one SQLite database;
the figures are then read back from that database: test accuracy after each epoch, median seconds
per epoch, and the share of conv1's filters that are edge-like (`convexp filters`) at step 0 and
at the last step. Prints a table and writes benchmarks/results/fidelity.json. Not a test: about
ten minutes per backend on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TARGET = 0.990


def run_backend(file: Path, experiment: str, backend: str, epochs: int, db: Path, mnist: str) -> int:
    """Run the experiment on one backend with the CLI; return the new run's id."""
    command = [
        sys.executable,
        "-m",
        "convexp",
        "run",
        str(file),
        "-e",
        experiment,
        "--backend",
        backend,
        "--epochs",
        str(epochs),
        "--db",
        str(db),
        "--data-dir",
        mnist,
    ]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    print(f"{backend}: {time.perf_counter() - started:.0f} s wall", file=sys.stderr, flush=True)
    from convexp.store import Store

    with Store(str(db), must_exist=True) as store:
        return max(r.id for r in store.list_runs() if r.backend == backend)


def figures(db: Path, run_id: int) -> dict:
    """What the closing note reports about one run, read from the database."""
    from convexp.analysis.filters import analyse_layer
    from convexp.store import Store

    with Store(str(db), must_exist=True) as store:
        run = store.get_run(run_id)
        metrics = store.metrics(run_id, ["test_accuracy", "epoch_seconds"])
        series = store.kernel_series(run_id, "conv1")
    accuracy = [m.value for m in metrics if m.name == "test_accuracy"]
    seconds = [m.value for m in metrics if m.name == "epoch_seconds"]
    first, last = analyse_layer(series.kernels[0], int(series.steps[0])), analyse_layer(series.kernels[-1], int(series.steps[-1]))
    return {
        "run": run_id,
        "backend": run.backend,
        "framework": f"{run.framework} {run.framework_version}",
        "status": run.status,
        "epochs": run.epochs_completed,
        "test_accuracy_per_epoch": accuracy,
        "final_test_accuracy": accuracy[-1] if accuracy else None,
        "best_test_accuracy": max(accuracy) if accuracy else None,
        "median_epoch_seconds": statistics.median(seconds) if seconds else None,
        "conv1_edge_like": {
            str(first.step): [first.edge_like, len(first.filters)],
            str(last.step): [last.edge_like, len(last.filters)],
        },
        "conv1_edge_share_end": last.edge_share,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", default=os.environ.get("CONVEXP_TEST_MNIST", str(REPO.parent / "shared/data/mnist")))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--backends", default="numpy,torch,tensorflow")
    parser.add_argument("--db", type=Path, default=None, help="keep the runs in this SQLite file (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "fidelity.json")
    parser.add_argument("--file", type=Path, default=REPO / "experiments.yaml", help="experiments file (for a quick trial)")
    parser.add_argument("--experiment", default="mnist-keras-convnet")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        db = args.db or Path(folder) / "fidelity.db"
        results = [
            figures(db, run_backend(args.file, args.experiment, b, args.epochs, db, args.mnist)) for b in args.backends.split(",")
        ]
    print(f"{args.experiment}, {args.epochs} epochs (keras.io: about 0.991 after 12-15 epochs; target >= {TARGET})")
    print(f"{'backend':<11} {'final acc':>9} {'best acc':>9} {'s/epoch':>8} {'conv1 edge-like start -> end':>30}  >= target")
    for r in results:
        (start, (a, n)), (end, (b, m)) = r["conv1_edge_like"].items()
        print(
            f"{r['backend']:<11} {r['final_test_accuracy']:>9.4f} {r['best_test_accuracy']:>9.4f} "
            f"{r['median_epoch_seconds']:>8.2f} {f'step {start}: {a}/{n} -> step {end}: {b}/{m}':>30}  "
            f"{'yes' if r['final_test_accuracy'] >= TARGET else 'NO'}"
        )
        print(f"{'':<11} per epoch: {' '.join(f'{v:.4f}' for v in r['test_accuracy_per_epoch'])}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
                "date": time.strftime("%Y-%m-%d"),
                "experiment": args.experiment,
                "epochs": args.epochs,
                "target": TARGET,
                "runs": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
