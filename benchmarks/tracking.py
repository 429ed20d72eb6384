"""What recording from your own loop costs: a plain PyTorch loop alone, and with every-step kernels recorded.

    python benchmarks/tracking.py [--steps 900] [--repeats 5] [--json FILE]

The peer job: a small CNN on the bundled digits (conv 1->8 3x3, ReLU, conv 8->16 3x3, ReLU,
flatten, dense), batch 32, Adam -- a step of about a millisecond, where per-step recording costs
show. Each variant runs ``--steps`` updates in a fresh process, interleaved over the repeats:

- plain: the loop alone;
- convexp.torch: the loop with ``convexp.torch.record`` (kernels of both conv layers and the loss
  at every step, into a new SQLite file);
- convexp.track: the same through ``convexp.track`` directly (``log_kernels`` / ``log_metrics``);
- mlflow log_batch / tensorboard add_histogram: the loss and both kernels at every step (MLflow: one
  metric per weight; TensorBoard: a histogram per kernel, as torch's SummaryWriter has no
  add_tensor), where those packages are installed (they are not convexp's dependencies).

Prints the median seconds of the loop and its ratio to the plain loop; writes JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = 1.10

LOOP = """
import sys, time, numpy as np, torch
import torch.nn.functional as F
from torch import nn
from convexp.datasets import load_dataset

variant, steps, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = load_dataset("digits")
x, y = torch.from_numpy(data.train_images), torch.from_numpy(data.train_labels)
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
batches = [torch.randint(0, len(y), (32,)) for _ in range(steps)]

def update(index):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x[index]), y[index])
    loss.backward()
    optimizer.step()
    return loss.item()

update(batches[0])  # warm-up: torch.optim's first step imports and builds what it needs
convs = [m for m in model if isinstance(m, nn.Conv2d)]
if variant == "plain":
    started = time.perf_counter()
    for index in batches:
        update(index)
    seconds = time.perf_counter() - started
elif variant == "convexp.torch":
    import convexp.torch
    with convexp.torch.record(model, experiment="peer", db=folder + "/t.db") as recorder:
        started = time.perf_counter()
        for index in batches:
            recorder.step(train_loss=update(index))
        seconds = time.perf_counter() - started
elif variant == "convexp.track":
    import convexp
    with convexp.track(experiment="peer", db=folder + "/t.db") as run:
        started = time.perf_counter()
        for step, index in enumerate(batches, start=1):
            run.log_metrics({"train_loss": update(index)}, step=step)
            run.log_kernels(model, step=step)
        seconds = time.perf_counter() - started
elif variant == "mlflow log_batch":
    import mlflow
    from mlflow.entities import Metric
    mlflow.set_tracking_uri("sqlite:///" + folder + "/mlflow.db")
    client = mlflow.MlflowClient()
    with mlflow.start_run() as active:
        started = time.perf_counter()
        for step, index in enumerate(batches, start=1):
            loss = update(index)
            now = int(time.time() * 1000)
            values = [Metric("train_loss", loss, now, step)]
            for n, m in enumerate(convs):
                w = m.weight.detach().numpy().ravel()
                values += [Metric(f"conv{n}_{i}", float(v), now, step) for i, v in enumerate(w)]
            for start in range(0, len(values), 1000):
                client.log_batch(active.info.run_id, metrics=values[start : start + 1000])
        seconds = time.perf_counter() - started
elif variant == "tensorboard add_histogram":
    from torch.utils.tensorboard import SummaryWriter
    writer = SummaryWriter(folder + "/tb")
    started = time.perf_counter()
    for step, index in enumerate(batches, start=1):
        writer.add_scalar("train_loss", update(index), step)
        for n, m in enumerate(convs):
            writer.add_histogram(f"conv{n}", m.weight.detach(), step)  # torch's SummaryWriter has no add_tensor
    writer.close()
    seconds = time.perf_counter() - started
print(seconds)
"""


def variants() -> list[str]:
    found = ["plain", "convexp.torch", "convexp.track"]
    if importlib.util.find_spec("mlflow"):
        found.append("mlflow log_batch")
    if importlib.util.find_spec("tensorboard"):
        found.append("tensorboard add_histogram")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "tracking.json")
    args = parser.parse_args()
    times: dict[str, list[float]] = {v: [] for v in variants()}
    for _ in range(args.repeats):
        for variant in times:
            with tempfile.TemporaryDirectory() as folder:
                result = subprocess.run(
                    [sys.executable, "-c", LOOP, variant, str(args.steps), folder], capture_output=True, text=True
                )
                if result.returncode != 0:
                    sys.exit(f"{variant} failed:\n{result.stderr[-2000:]}")
                times[variant].append(float(result.stdout.strip().splitlines()[-1]))
    median = {v: statistics.median(t) for v, t in times.items()}
    plain = median["plain"]
    missing = [name for name in ("mlflow log_batch", "tensorboard add_histogram") if name not in times]
    print(f"{args.steps} steps of the peer job, median of {args.repeats}\n")
    print(f"{'variant':26} {'loop s':>8} {'ms/step':>8} {'ratio':>7}")
    for variant, seconds in median.items():
        print(f"{variant:26} {seconds:8.3f} {seconds / args.steps * 1000:8.3f} {seconds / plain:7.3f}")
    print(f"\ntarget: every-step recording <= {TARGET}x the plain loop")
    if missing:
        print(f"not installed here, not measured: {', '.join(missing)}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "steps": args.steps,
                "repeats": args.repeats,
                "seconds": median,
                "ratios": {v: s / plain for v, s in median.items()},
                "target": TARGET,
                "not_installed": missing,
                "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            },
            indent=2,
        )
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
