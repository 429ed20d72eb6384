"""What a sweep costs beyond its runs: sampling and bookkeeping per trial, counting and sizing a big one, and reading
1,000 trials back (``--importance``, the experiment page's parallel coordinates).

    python benchmarks/sweeps.py [--trials 1000] [--tpe-trials 1000] [--repeats 5] [--json FILE]

Builds a SQLite database by doing a sweep's bookkeeping for ``--trials`` trials of a random search (the
experiment below: a log-uniform learning rate and a choice of conv1's filters, pruning by the median rule),
with the store's own writes and no training -- the training is the run's own cost, the same in or out of a sweep:
for each trial, its values are sampled from the recorded history, its run is validated, prepared and inserted,
its objective (test_accuracy, a made-up function of the learning rate plus noise: what is read back is what is
timed) is recorded at three epochs with a pruning decision after each, and it ends finished. Then times:

- the bookkeeping of one trial, mean over all ``--trials`` and over the last 100 (the history grows), against
  50 ms; the same for a TPE search of ``--tpe-trials`` trials (Optuna's sampler drawing from every trial
  before, whose own cost grows with them: the last 50 are shown);
- counting a ``--trials``-trial random sweep and estimating what it writes and the memory a run holds, as
  ``convexp run`` does before it starts, in this process, against 1 s;
- ``convexp summary EXPERIMENT --importance`` over the ``--trials`` finished trials, a fresh process (start-up
  included), against 2 s;
- the experiment page's parallel coordinates of those runs drawn in headless Chromium (``new ParallelChart``
  on the page's own data, median of ``--repeats``), against 300 ms, and redrawn after a brush; and the whole
  page, from navigation to drawn (the server reading 1,000 runs, their groups' curves, both sweep views).

Prints a table and writes JSON (benchmarks/results/sweeps.json by default).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EPOCHS = 3


def experiments_file(folder: Path, method: str, trials: int) -> Path:
    body = {
        "dataset": "digits",
        "backend": "numpy",
        "layers": [
            {"type": "conv", "filters": 8, "kernel_size": 3, "activation": "relu"},
            {"type": "flatten"},
            {"type": "dense", "units": 10},
        ],
        "epochs": EPOCHS,
        "sweep": {
            "method": method,
            "trials": trials,
            "parameters": {
                "optimizer.learning_rate": {"loguniform": [1e-5, 1.0]},
                "layers.0.filters": {"choice": [4, 8, 16, 32]},
            },
            "prune": {"rule": "median", "startup_trials": 5},
        },
    }
    path = folder / f"{method}.yaml"
    path.write_text(yaml.safe_dump({"experiments": {method: body}}, sort_keys=False))
    return path


def bookkeeping(path: Path, db: Path, experiment: str) -> list[float]:
    """Seconds of each trial's bookkeeping (no training), in trial order."""
    from convexp.experiments.runner import create_run, prepare_runs
    from convexp.experiments.sweeping import TrialJudge, open_sweep
    from convexp.store import MetricRecord, Store

    planned = prepare_runs(path, [experiment])
    (grid,) = planned.grids
    rng = np.random.default_rng(0)
    seconds = []
    with Store(str(db)) as store:
        sweep = open_sweep(store, grid)
        while True:
            start = time.perf_counter()
            trial = sweep.next_trial()
            if trial is None:
                break
            run = replace(planned.prepare(trial.run), sweep_id=sweep.id, trial=trial.number, sampled=trial.values)
            run_id = create_run(run, store)
            judge = TrialJudge(store, run_id, sweep.id, trial.number, sweep.sweep, EPOCHS)
            lr = trial.values["optimizer.learning_rate"]
            status = "finished"
            for epoch in range(1, EPOCHS + 1):
                accuracy = float(np.clip(0.95 - (math.log10(lr) + 2.5) ** 2 / 12 + rng.normal(0, 0.01) - 0.1 / epoch, 0, 1))
                store.record(
                    run_id,
                    [MetricRecord(epoch * 45, epoch, "test_accuracy", accuracy)],
                    epochs_completed=epoch,
                    steps_completed=epoch * 45,
                )
                judge.epoch_end(epoch, {"test_accuracy": accuracy}, lambda: {})
                if judge.verdict(epoch) is not None:
                    status = "pruned"
                    break
            store.finish_run(run_id, status)
            seconds.append(time.perf_counter() - start)
    return seconds


def count_and_size(path: Path) -> float:
    """Seconds to count a sweep and size what it writes and the memory a run holds (as `convexp run` does first)."""
    from convexp.experiments.estimate_disk import estimate_grid
    from convexp.experiments.estimate_memory import check_grids
    from convexp.experiments.grids import resolve_grids

    start = time.perf_counter()
    grids = resolve_grids(path)
    total = sum(len(g) for g in grids)
    estimate = estimate_grid(grids[0])
    check_grids(grids)
    assert total == estimate.runs
    return time.perf_counter() - start


def importance(db: Path, experiment: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "convexp", "summary", experiment, "--importance", "--db", str(db)],
            capture_output=True,
            text=True,
        )
        times.append(time.perf_counter() - start)
        assert result.returncode == 0, result.stderr
    return statistics.median(times)


def parallel_draw(db: Path, experiment: str, repeats: int) -> tuple[float, float, int, float]:
    """Median ms to build and draw the parallel coordinates of the page's runs, to redraw after a brush, the
    number of runs drawn, and the median ms from navigating to the whole page drawn."""
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "convexp", "ui", "--db", str(db), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        with sync_playwright() as playwright:
            chromium = shutil.which("chromium") or shutil.which("chromium-browser")
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            ready = []
            for _ in range(repeats):  # the whole page: the server's reading, the groups' curves, the sweep's views
                page.goto(f"http://127.0.0.1:{port}/experiments/{experiment}", timeout=600_000)
                page.wait_for_function("() => document.body.dataset.drawn === 'true'", timeout=600_000)
                ready.append(page.evaluate("() => window.cxReadyAt"))
            measured = page.evaluate(
                """(repeats) => {
                  const draws = [], brushes = [];
                  for (let i = 0; i < repeats; i++) {
                    const box = document.createElement("div"); document.body.append(box);
                    let t = performance.now();
                    const chart = new ParallelChart(box, VIEW.sweep, { width: 900, height: 340 });
                    draws.push(performance.now() - t);
                    chart.brushes[0] = [0.2, 0.7];
                    t = performance.now(); chart.draw(); brushes.push(performance.now() - t);
                    box.remove();
                  }
                  const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
                  return [median(draws), median(brushes), VIEW.sweep.rows.length];
                }""",
                repeats,
            )
            browser.close()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait()
    return measured[0], measured[1], measured[2], statistics.median(ready)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--tpe-trials", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "sweeps.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        random_file = experiments_file(folder, "random", args.trials)
        tpe_file = experiments_file(folder, "tpe", args.tpe_trials)
        print(f"bookkeeping of {args.trials} random trials...", flush=True)
        random_seconds = bookkeeping(random_file, folder / "random.db", "random")
        print(f"bookkeeping of {args.tpe_trials} tpe trials...", flush=True)
        tpe_seconds = bookkeeping(tpe_file, folder / "tpe.db", "tpe")
        sizing = min(count_and_size(random_file) for _ in range(args.repeats))
        summary = importance(folder / "random.db", "random", args.repeats)
        draw_ms, brush_ms, drawn, page_ms = parallel_draw(folder / "random.db", "random", args.repeats)
    rows = {
        f"bookkeeping per trial, random search, mean of {args.trials} (ms)": (1000 * statistics.mean(random_seconds), 50),
        "bookkeeping per trial, random search, its last 100 (ms)": (1000 * statistics.mean(random_seconds[-100:]), 50),
        f"bookkeeping per trial, tpe search, mean of {args.tpe_trials} (ms)": (1000 * statistics.mean(tpe_seconds), 50),
        "bookkeeping per trial, tpe search, its last 50 (ms)": (1000 * statistics.mean(tpe_seconds[-50:]), 50),
        f"a {args.trials}-trial random sweep counted, sized and checked for memory (s)": (sizing, 1),
        f"convexp summary --importance over {args.trials} trials, start-up included (s)": (summary, 2),
        f"parallel coordinates of {drawn} runs built and drawn in Chromium (ms)": (draw_ms, 300),
        f"parallel coordinates of {drawn} runs redrawn after a brush (ms)": (brush_ms, None),
        f"the experiment page of those {drawn} runs, navigation to drawn (ms)": (page_ms, None),
    }
    print(f"{'measure':<90} {'measured':>9} {'target':>7}")
    for name, (value, target) in rows.items():
        print(f"{name:<90} {value:>9.3f} {'' if target is None else f'< {target}':>7}")
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "repeats": args.repeats,
        "measures": {name: {"value": value, "target": target} for name, (value, target) in rows.items()},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
