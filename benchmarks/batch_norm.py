"""What batch_norm costs the numpy backend: one MNIST epoch of mnist-batchnorm's two networks, without and with it.

    python benchmarks/batch_norm.py [--mnist DIR] [--examples N] [--repeats 3] [--json FILE]

mnist-batchnorm (experiments.yaml) trains the same network as ``plain`` (conv+relu, maxpool, conv+relu, maxpool,
dense) and ``batch_norm`` (each conv followed by batch_norm, then relu) on the numpy backend, batch 64, SGD with
momentum. Each is run for one epoch on the first ``--examples`` training images, in fresh processes, interleaved
over the repeats; reported: the median epoch seconds (the training pass, as `convexp run` prints it) and their
ratio, against the target of 1.5 (issue 45). batch_norm's sums are float64 (see
plugins/numpy_backend/model.py): the target is about the arithmetic around them.
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

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TARGET = 1.5


def epoch_seconds(variant: str, examples: int, mnist: str, folder: Path) -> float:
    spec = yaml.safe_load((REPO / "experiments.yaml").read_text())["experiments"]["mnist-batchnorm"]
    spec = {**spec, "layers": spec["layers"][variant], "epochs": 1, "train_examples": examples, "snapshots": {"every": 100}}
    name = variant.replace("_", "-")
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"experiments": {name: spec}}))
    db = folder / f"{name}-{time.monotonic_ns()}.db"
    subprocess.run(
        [sys.executable, "-m", "convexp", "run", str(path), "--data-dir", mnist, "--db", str(db)],
        cwd=REPO, check=True, capture_output=True,
    )  # fmt: skip
    import sqlite3

    with sqlite3.connect(db) as connection:
        return float(connection.execute("SELECT value FROM metrics WHERE name = 'epoch_seconds'").fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", default=str(REPO.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--examples", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "batch_norm.json")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"plain": [], "batch_norm": []}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            for variant in times if repeat % 2 == 0 else reversed(list(times)):
                times[variant].append(epoch_seconds(variant, args.examples, args.mnist, Path(folder)))
            print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)
    medians = {variant: statistics.median(seconds) for variant, seconds in times.items()}
    ratio = medians["batch_norm"] / medians["plain"]
    print(f"mnist-batchnorm on numpy, one epoch of {args.examples:,} examples, median of {args.repeats} fresh processes\n")
    print(f"{'network':12} {'epoch s':>8}")
    for variant, seconds in medians.items():
        print(f"{variant:12} {seconds:8.2f}")
    verdict = "" if ratio <= TARGET else " (missed)"
    print(f"\nbatch_norm / plain: {ratio:.2f} (target <= {TARGET}{verdict})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "examples": args.examples,
        "repeats": args.repeats,
        "seconds": times,
        "medians": medians,
        "ratio": ratio,
        "target": TARGET,
    }
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
