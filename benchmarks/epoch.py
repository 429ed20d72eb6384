"""One MNIST epoch of the Keras example (mnist-keras-convnet: batch 128, Adam) on everything, in one run.

    python benchmarks/epoch.py [--mnist DIR] [--repeats N] [--json FILE]

Times, each in a fresh process: plain PyTorch and plain Keras scripts (in this folder; no convexp
code) -- PyTorch as its examples write it (DataLoader) and as a skilled user writes it for speed
(``--lean``: tensors indexed directly), Keras's ``model.fit`` without and with XLA
(``jit_compile``) -- then convexp's torch, tensorflow and numpy backends with the default
snapshot schedule (step 0 and the end of the epoch), and again with kernels recorded at every
step. Where torch sees a CUDA GPU, convexp's torch and tensorflow backends are also timed with
``device: cuda`` (``--no-gpu`` skips that). Prints a table (median seconds per epoch over the
repeats, test accuracy), the ratios the performance targets are about -- against the named
baseline and against the fastest plain variant of that framework, so that convexp is never
measured against a slow baseline only -- and writes everything as JSON. Each default-schedule run is
followed at once by its every-step twin (preceded by it on odd repeats, so that an order effect
cancels), and the snapshot overhead is the median of those paired ratios: on a shared 2-core
machine single epochs vary by 10% or more from minute to minute, far more than the 3% being
measured.

Warm-up is excluded from the per-epoch figure: the plain scripts fit one batch before the
timed epoch (Keras traces its train function there), and convexp's tensorflow backend traces
its tf.functions before its epoch timer starts. Memory: the peak resident set size of each
convexp process, and its resident size after each of three epochs (on 20,000 examples).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
#: (convexp program, baseline program, target ratio); each is also reported against the fastest plain variant.
TARGETS = [
    ("convexp-torch", "plain-torch", 0.90),
    ("convexp-tensorflow", "plain-keras", 0.95),
    ("convexp-numpy", "plain-torch", 1.10),
]
#: The plain variants of each baseline's framework.
PLAIN_VARIANTS = {"plain-torch": ("plain-torch", "plain-torch-lean"), "plain-keras": ("plain-keras", "plain-keras-xla")}
SNAPSHOT_OVERHEAD_TARGET = 0.01


def run_json(command: list[str]) -> dict:
    """Run a benchmark program and parse the JSON on its last line of output."""
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (asked in a child process, so this one imports no framework)."""
    probe = "import torch; print(torch.cuda.is_available())"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    return result.returncode == 0 and result.stdout.strip() == "True"


def programs(mnist: str, gpu: bool = False, every_step_first: bool = False) -> dict[str, list[str]]:
    """Every timed program, in run order: each default-schedule convexp run and its every-step twin
    back to back, the twin second unless ``every_step_first`` (odd repeats swap them, so that a
    machine that runs the first or second program of a pair slower does not show up as snapshot cost)."""
    py = sys.executable
    convexp = [py, str(HERE / "convexp_epoch.py"), mnist]
    order = slice(None, None, -1 if every_step_first else 1)

    def twins(backend: str) -> tuple[tuple[str, list[str]], ...]:
        return (
            (f"convexp-{backend}", [*convexp, backend]),
            (f"convexp-{backend} every-step", [*convexp, backend, "--every-step"]),
        )

    return {
        "plain-torch": [py, str(HERE / "plain_torch.py"), mnist],
        "plain-torch-lean": [py, str(HERE / "plain_torch.py"), mnist, "1", "--lean"],
        "plain-keras": [py, str(HERE / "plain_keras.py"), mnist],
        "plain-keras-xla": [py, str(HERE / "plain_keras.py"), mnist, "1", "--jit-compile"],
        **{name: command for b in ("torch", "tensorflow", "numpy") for name, command in twins(b)[order]},
        **({f"convexp-{b} cuda": [*convexp, b, "--device", "cuda"] for b in ("torch", "tensorflow")} if gpu else {}),
    }


def machine() -> str:
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", default=str(REPO.parent / "shared" / "data" / "mnist"), help="folder with the MNIST IDX files")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each program (the median is reported)")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "epoch.json", help="where to write the results")
    parser.add_argument("--no-gpu", action="store_true", help="do not time the GPU variants even where a GPU is seen")
    args = parser.parse_args()

    gpu = not args.no_gpu and cuda_available()
    results: dict[str, list[dict]] = {name: [] for name in programs(args.mnist, gpu)}
    started = time.perf_counter()
    for repeat in range(args.repeats):  # interleaved, so that drift in the machine's speed hits every program alike
        for name, command in programs(args.mnist, gpu, every_step_first=repeat % 2 == 1).items():
            print(
                f"[{time.perf_counter() - started:6.0f} s] repeat {repeat + 1}/{args.repeats}: {name}",
                file=sys.stderr,
                flush=True,
            )
            results[name].append(run_json(command))
    memory = {}
    for backend in ("torch", "tensorflow", "numpy"):
        print(f"[{time.perf_counter() - started:6.0f} s] memory over 3 epochs: convexp-{backend}", file=sys.stderr, flush=True)
        memory[backend] = run_json(
            [
                sys.executable,
                str(HERE / "convexp_epoch.py"),
                args.mnist,
                backend,
                "--every-step",
                "--epochs",
                "3",
                "--train-examples",
                "20000",
            ]
        )

    seconds = {name: statistics.median(r["epoch_seconds"][0] for r in runs) for name, runs in results.items()}
    accuracy = {name: statistics.median(r["test_accuracy"] for r in runs) for name, runs in results.items()}
    ratios = {}
    for program, baseline, target in TARGETS:
        fastest = min(PLAIN_VARIANTS[baseline], key=seconds.__getitem__)
        ratios[f"{program} / {baseline}"] = {
            "measured": seconds[program] / seconds[baseline],
            "target": target,
            "fastest_plain": fastest,
            "vs_fastest_plain": seconds[program] / seconds[fastest],
        }

    def pairs(backend: str) -> list[tuple[dict, dict]]:
        """Each repeat's (default-schedule, every-step) runs of a backend, run back to back in alternating order."""
        return list(zip(results[f"convexp-{backend}"], results[f"convexp-{backend} every-step"]))

    overhead = {
        b: {
            # the median of the paired ratios is far less sensitive to the machine's speed drifting between repeats
            "every_step_vs_default": statistics.median(
                every["epoch_seconds"][0] / default["epoch_seconds"][0] for default, every in pairs(b)
            )
            - 1,
            "recorder_share": statistics.median(
                r["recording_seconds"] / r["epoch_seconds"][0] for r in results[f"convexp-{b} every-step"]
            ),
            # the writer's CPU (the writer process's, by default) beyond what it uses on the default schedule: where training keeps
            # every core busy (two cores, two intra-op threads), that time comes out of training's
            "writer_share": statistics.median(
                (every["writer_cpu_seconds"] - default["writer_cpu_seconds"]) / every["epoch_seconds"][0]
                for default, every in pairs(b)
            ),
        }
        for b in ("torch", "tensorflow", "numpy")
    }

    print(f"\nOne MNIST epoch, mnist-keras-convnet (batch 128, Adam), median of {args.repeats}; {machine()}\n")
    print(f"{'program':32} {'s/epoch':>8} {'test acc':>9} {'peak RSS MiB':>13}")
    for name in results:
        peak = statistics.median(r["peak_rss_mib"] for r in results[name]) if "peak_rss_mib" in results[name][0] else None
        print(f"{name:32} {seconds[name]:8.2f} {accuracy[name]:9.4f} {'' if peak is None else f'{peak:13.0f}'}")
    print(f"\n{'ratio':36} {'measured':>9} {'target':>8}   {'vs the fastest plain variant':>30}")
    for name, r in ratios.items():
        verdict = "ok" if r["measured"] <= r["target"] else "MISSED"
        print(
            f"{name:36} {r['measured']:9.3f} {'<= ' + str(r['target']):>8} {verdict:6} {r['vs_fastest_plain']:6.3f} ({r['fastest_plain']})"
        )
    target = f"<= {SNAPSHOT_OVERHEAD_TARGET:.0%}"
    print(f"\n{'every-step snapshot overhead':36} {'A/B':>9} {'recorder':>9} {'writer':>9} {'target':>7}")
    for backend, o in overhead.items():
        ok = max(o["every_step_vs_default"], o["recorder_share"]) <= SNAPSHOT_OVERHEAD_TARGET
        print(
            f"{'convexp-' + backend:36} {o['every_step_vs_default']:9.1%} {o['recorder_share']:9.1%} "
            f"{o['writer_share']:9.1%} {target:>7} {'ok' if ok else 'MISSED'}"
        )
    if not gpu:
        print("\nGPU: not measured (" + ("--no-gpu" if args.no_gpu else "torch sees no CUDA GPU on this machine") + ")")
    print(
        "(A/B: median over repeats of every-step epoch time / default-schedule epoch time, run back to back\n"
        " in alternating order, minus 1; recorder: the training thread's time in convexp's recorder, copying\n"
        " kernels and handing them to the writer, as a share of the every-step epoch; writer: the CPU time\n"
        " the database writer uses beyond the default schedule's (in the training process, or in its own where\n"
        " training leaves a core free), as a share of the epoch)"
    )
    print(f"\n{'memory over 3 epochs (RSS MiB after each)':44} {'peak':>6}")
    for backend, m in memory.items():
        print(f"{'convexp-' + backend:44} {' '.join(f'{v:6.0f}' for v in m['rss_after_epoch_mib'])} {m['peak_rss_mib']:6.0f}")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "machine": machine(),
                "repeats": args.repeats,
                "seconds_per_epoch": seconds,
                "test_accuracy": accuracy,
                "ratios": ratios,
                "gpu_measured": gpu,
                "snapshot_overhead": overhead,
                "memory": memory,
                "raw": results,
                "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
