"""What recording from your own loop costs: PyTorch loops alone, and with every-step kernels recorded.

    python benchmarks/tracking.py [--jobs peer,two-conv-1t,two-conv-2t,mnist-main] [--repeats 5]
                                  [--steps N] [--mnist DIR] [--json FILE]

The jobs (each a loop of ``steps`` updates, kernels of every conv layer and the loss at every step):

- peer: a small CNN on the bundled digits (conv 1->8 3x3, conv 8->16 3x3, dense), batch 32, Adam;
  kernels of 72 and 1,152 values, below the size that is delta-encoded.
- two-conv-1t / two-conv-2t: a subclassed ``nn.Module`` on the digits, conv 1->32 3x3 (padding 1)
  then conv 32->32 3x3 (9,216 values: delta-encoded), batch 10, SGD, 3,600 steps, with 1 and 2
  torch threads: small steps where every byte recorded shows.
- mnist-main: PyTorch's mnist/main.py ``Net`` (examples/recording/torch_mnist_main.py), Adadelta
  and StepLR, batch 64, 300 steps on MNIST (``--mnist``, default $CONVEXP_TEST_MNIST or
  ../shared/data/mnist; skipped when absent).

Variants, each in a fresh process, interleaved over the repeats (a variant's ratio is the median over the repeats
of its time against the plain run of the same repeat): plain (the loop alone),
convexp.torch (``convexp.torch.record``), convexp.track (``log_kernels`` / ``log_metrics``), and for
the peer job MLflow and TensorBoard where installed. Reported per job and variant: the loop's
median seconds and its ratio to plain; the training thread's time in convexp's calls per step; the
writer's CPU time; the training process's and the writer process's peak memory; the time to open
the run (a new database) and to end it (everything committed). Writes JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

JOBS = {
    "peer": {"steps": 900, "threads": 0, "target": 1.05, "about": "small CNN on the digits, batch 32, Adam"},
    "two-conv-1t": {
        "steps": 3600,
        "threads": 1,
        "target": 1.10,
        "about": "two convs (32x32x3x3) on the digits, batch 10, 1 torch thread",
    },
    "two-conv-2t": {"steps": 3600, "threads": 2, "target": 1.10, "about": "the same, 2 torch threads"},
    "mnist-main": {"steps": 300, "threads": 0, "target": 1.03, "about": "PyTorch's mnist/main.py Net, batch 64, Adadelta"},
    "resnet18": {
        "steps": 40,
        "threads": 0,
        "target": 1.25,
        "budget_target": 1.07,
        "about": "a ResNet-18 defined in the script, width 16 (2.8 MB of kernels a step), 28x28, batch 32, SGD",
    },
    "lightning": {
        "steps": 40,
        "threads": 0,
        "target": 1.10,
        "about": "a LightningModule with two convs on the digits, batch 32, Trainer.fit (its whole fit timed)",
    },
}
#: The budget the budgeted variants record under (``record(..., budget=BUDGET)``).
BUDGET = 0.05
#: Targets of opening a run on a new database and of ending it (everything committed), seconds.
OPEN_TARGET = CLOSE_TARGET = 0.1

LOOP = r"""
import json, resource, sys, time
import numpy as np, torch
import torch.nn.functional as F
from torch import nn

job, variant, steps, folder, threads, mnist = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6]
if threads:
    torch.set_num_threads(threads)
torch.manual_seed(0)
if job == "lightning":
    import lightning
    from convexp.datasets import load_dataset
    data = load_dataset("digits")
    x, y = torch.from_numpy(data.train_images[: steps * 32]), torch.from_numpy(data.train_labels[: steps * 32])

    class TwoConvModule(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
            self.conv2 = nn.Conv2d(16, 32, 3)
            self.fc = nn.Linear(32 * 6 * 6, 10)

        def forward(self, x):
            return self.fc(torch.flatten(F.relu(self.conv2(F.relu(self.conv1(x)))), 1))

        def training_step(self, batch, index):
            loss = F.cross_entropy(self(batch[0]), batch[1])
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    module = TwoConvModule()
    callbacks = []
    started = time.perf_counter()  # the job as a script runs it: the callback made, the Trainer made, fit
    if variant != "plain":
        import convexp.lightning
        callbacks = [convexp.lightning.KernelRecorder("lightning", folder + "/t.db", quiet=True,
                                                      budget=float(variant.split("budget=")[1]) if "budget=" in variant else None)]
    opened = time.perf_counter() - started
    trainer = lightning.Trainer(max_epochs=1, callbacks=callbacks, logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(module, loader)
    seconds = time.perf_counter() - started  # the callback's import counts: a Lightning job pays it in full
    if callbacks:
        writer_cpu, writer_rss = callbacks[0].run.writer.cpu_seconds, getattr(callbacks[0].run.writer, "peak_rss_bytes", 0)
    print(json.dumps({
        "seconds": seconds, "us_per_step": 0.0, "open": opened, "close": 0.0, "writer_cpu": writer_cpu if callbacks else 0.0,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "writer_rss_mb": (writer_rss if callbacks else 0) / 2**20,
    }))
    sys.exit(0)
if job == "resnet18":
    import importlib.util
    spec = importlib.util.spec_from_file_location("torch_resnet18", sys.argv[8])
    example = importlib.util.module_from_spec(spec); spec.loader.exec_module(example)
    model = example.ResNet18(16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    batches = [slice(None)] * steps
    loss_of = F.cross_entropy
elif job == "mnist-main":
    import importlib.util
    spec = importlib.util.spec_from_file_location("torch_mnist_main", sys.argv[7])
    example = importlib.util.module_from_spec(spec); spec.loader.exec_module(example)
    from convexp.datasets.mnist import load
    data = load(mnist)
    x = torch.from_numpy((data.train_images[: steps * 64] - np.float32(0.1307)) / np.float32(0.3081))
    y = torch.from_numpy(data.train_labels[: steps * 64])
    model = example.Net()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    batches = [torch.arange(i * 64, i * 64 + 64) for i in range(steps)]
    loss_of = lambda out, target: F.nll_loss(out, target)
else:
    from convexp.datasets import load_dataset
    data = load_dataset("digits")
    x, y = torch.from_numpy(data.train_images), torch.from_numpy(data.train_labels)
    if job == "peer":
        model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        size = 32
    else:
        class TwoConv(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
                self.conv2 = nn.Conv2d(32, 32, 3)
                self.fc = nn.Linear(32 * 6 * 6, 10)

            def forward(self, x):
                return self.fc(torch.flatten(F.relu(self.conv2(F.relu(self.conv1(x)))), 1))

        model = TwoConv()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        size = 10
    batches = [torch.randint(0, len(y), (size,)) for _ in range(steps)]
    loss_of = F.cross_entropy

def update(index):
    optimizer.zero_grad()
    loss = loss_of(model(x[index]), y[index])
    loss.backward()
    optimizer.step()
    return loss.item()

update(batches[0])  # warm-up: torch.optim's first step imports and builds what it needs
convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
inside = opened = closed = writer_cpu = writer_rss = 0.0
kept = steps + 1
if variant == "plain":
    started = time.perf_counter()
    for index in batches:
        update(index)
    seconds = time.perf_counter() - started
elif variant.startswith("convexp.torch"):
    import convexp.torch
    begun = time.perf_counter()
    budget = float(variant.split("budget=")[1]) if "budget=" in variant else None
    recorder = convexp.torch.record(model, experiment="peer", db=folder + "/t.db", budget=budget, quiet=True)
    opened = time.perf_counter() - begun
    started = time.perf_counter()
    for index in batches:
        loss = update(index)
        before = time.perf_counter()
        recorder.step(train_loss=loss)
        inside += time.perf_counter() - before
    seconds = time.perf_counter() - started
    begun = time.perf_counter()
    recorder.finish()
    closed = time.perf_counter() - begun
    if budget is not None:
        import sqlite3
        kept = json.loads(sqlite3.connect(folder + "/t.db").execute("SELECT recording FROM runs").fetchone()[0])["snapshots_kept"]
    writer_cpu, writer_rss = recorder.run.writer.cpu_seconds, getattr(recorder.run.writer, "peak_rss_bytes", 0)
elif variant == "convexp.track":
    from convexp.tracking import track
    begun = time.perf_counter()
    run = track(experiment="peer", db=folder + "/t.db")
    opened = time.perf_counter() - begun
    started = time.perf_counter()
    for step, index in enumerate(batches, start=1):
        loss = update(index)
        before = time.perf_counter()
        run.log_metrics({"train_loss": loss}, step=step)
        run.log_kernels(model, step=step)
        inside += time.perf_counter() - before
    seconds = time.perf_counter() - started
    begun = time.perf_counter()
    run.finish()
    closed = time.perf_counter() - begun
    writer_cpu, writer_rss = run.writer.cpu_seconds, getattr(run.writer, "peak_rss_bytes", 0)
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
print(json.dumps({
    "seconds": seconds, "us_per_step": inside / steps * 1e6, "open": opened, "close": closed,
    "writer_cpu": writer_cpu, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "writer_rss_mb": writer_rss / 2**20, "kept": kept,
}))
"""


def variants(job: str) -> list[str]:
    if job == "lightning":
        return ["plain", "convexp.lightning", f"convexp.lightning budget={BUDGET}"]
    found = ["plain", "convexp.torch", "convexp.track"]
    if job == "resnet18":
        found.append(f"convexp.torch budget={BUDGET}")
    if job == "peer":
        found += [
            name
            for name, module in (("mlflow log_batch", "mlflow"), ("tensorboard add_histogram", "tensorboard"))
            if importlib.util.find_spec(module)
        ]
    return found


def target_of(job: str, variant: str) -> float:
    """The ratio to plain a variant must keep: the job's every-step target, or its budgeted one."""
    return JOBS[job].get("budget_target", 1 + BUDGET * 1.4) if "budget" in variant else JOBS[job]["target"]


def mnist_folder(given: str | None) -> Path | None:
    folder = Path(given or os.environ.get("CONVEXP_TEST_MNIST") or REPO.parent / "shared" / "data" / "mnist")
    return folder if (folder / "train-images-idx3-ubyte.gz").exists() or (folder / "train-images-idx3-ubyte").exists() else None


def measure(job: str, variant: str, steps: int, threads: int, mnist: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        examples = REPO / "examples" / "recording"
        command = [
            sys.executable, "-c", LOOP, job, variant, str(steps), folder, str(threads), str(mnist or ""),
            str(examples / "torch_mnist_main.py"), str(examples / "torch_resnet18.py"),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        sys.exit(f"{job} / {variant} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default=",".join(JOBS), help=f"comma-separated, of: {', '.join(JOBS)}")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=None, help="steps of every job (default: each job's own)")
    parser.add_argument("--mnist", default=None, help="the MNIST IDX folder, for mnist-main")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "tracking.json")
    args = parser.parse_args()
    jobs = [j for j in args.jobs.split(",") if j]
    unknown = [j for j in jobs if j not in JOBS]
    if unknown:
        sys.exit(f"unknown job {', '.join(unknown)}; known: {', '.join(JOBS)}")
    mnist = mnist_folder(args.mnist)
    skipped = []
    if "mnist-main" in jobs and mnist is None:
        jobs.remove("mnist-main")
        skipped.append("mnist-main (no MNIST folder: --mnist DIR)")
    if "lightning" in jobs and not importlib.util.find_spec("lightning"):
        jobs.remove("lightning")
        skipped.append("lightning (not installed: pip install 'convexp[lightning]')")
    runs: dict[str, dict[str, list[dict]]] = {job: {v: [] for v in variants(job)} for job in jobs}
    for repeat in range(args.repeats):
        for job in jobs:
            steps = args.steps or JOBS[job]["steps"]
            for variant in runs[job]:
                runs[job][variant].append(measure(job, variant, steps, JOBS[job]["threads"], mnist))
        print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)
    report: dict = {
        "repeats": args.repeats,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "open_target": OPEN_TARGET,
        "close_target": CLOSE_TARGET,
        "skipped": skipped,
        "not_installed": [
            n
            for n, m in (("mlflow log_batch", "mlflow"), ("tensorboard add_histogram", "tensorboard"))
            if not importlib.util.find_spec(m)
        ],
        "jobs": {},
    }
    print(f"median of {args.repeats} interleaved fresh processes\n")
    print(
        f"{'job':12} {'variant':30} {'loop s':>7} {'ratio':>6} {'target':>6} {'us/step':>8} {'writer s':>8} {'RSS MB':>7} {'writer MB':>9} {'open s':>7} {'close s':>7} {'kept':>5}"
    )
    for job, by_variant in runs.items():
        steps = args.steps or JOBS[job]["steps"]
        medians = {v: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for v, rs in by_variant.items()}
        paired = {v: [r["seconds"] / p["seconds"] for r, p in zip(rs, by_variant["plain"])] for v, rs in by_variant.items()}
        for variant, m in medians.items():
            # the median of each repeat's ratio to the plain run beside it: drift in the machine's speed between
            # repeats (a shared machine's minutes differ by 10-20%) cancels within a repeat
            m["ratio"] = statistics.median(paired[variant])
            target = "" if variant == "plain" else f"{target_of(job, variant):.2f}"
            print(
                f"{job:12} {variant:30} {m['seconds']:7.3f} {m['ratio']:6.3f} {target:>6} {m['us_per_step']:8.1f} {m['writer_cpu']:8.3f}"
                f" {m['rss_mb']:7.0f} {m['writer_rss_mb']:9.0f} {m['open']:7.3f} {m['close']:7.3f} {m.get('kept', 0):5.0f}"
            )
        report["jobs"][job] = {
            **JOBS[job],
            "steps": steps,
            "medians": medians,
            "ratios_each_repeat": paired,
        }
    print(f"\ntargets: recording <= the job's target x plain; opening a new database and ending a run <= {OPEN_TARGET} s each")
    for line in skipped + [f"{n}: not installed" for n in report["not_installed"]]:
        print(f"not measured: {line}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
