"""convexp ui: how fast the pages answer, measured in headless Chromium against a real `convexp ui` process.

    python benchmarks/ui.py MNIST_DIR [--backend tensorflow] [--epochs 2] [--json FILE]
    python benchmarks/ui.py --digits            # the same measurements on a small digits run (a quick check)

- record: mnist-keras-convnet with kernels recorded at every step (470 steps per epoch) for
  --epochs epochs, through `convexp run` (or reuse --db if it already holds such a run);
- slider: move the step slider of the run page to random steps, conv1 and then conv2 (64x32 kernels)
  shown channel by channel, timing each from the input event to the grid drawn and painted;
- keep-alive: small responses (a conv1 snapshot) over one kept-alive connection, round trip against
  the app's own Server-Timing;
- distribution: a second run (recorded through convexp.track, a random walk of the same two layers
  over 5,000 steps) and the time from choosing its conv2 to the spread over steps drawn;
- experiment and compare pages: from navigation to drawn, in the browser;
- play: play conv1 through one epoch of snapshots at the 60 fps setting; frames per second;
- memory: the server's resident memory while 10,000 random conv2 steps are requested;
- runs page: a database with 1,000 runs; time of `/` and `/api/runs` (loopback round trip).
Prints a table with the targets and writes benchmarks/results/ui.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TARGETS = {
    "slider_ms": 30.0,
    "play_fps": 30.0,
    "runs_page_ms": 300.0,
    "keep_alive_extra_ms": 2.0,
    "page_ms": 300.0,
    "distribution_ms": 500.0,
}
WALK_STEPS = 5000


def record(db: Path, experiments: Path, mnist: str | None, backend: str, epochs: int, digits: bool) -> int:
    """Record the run the page shows; returns its id."""
    document = yaml.safe_load((REPO / "experiments.yaml").read_text())
    spec = dict(document["experiments"]["mnist-keras-convnet"])
    if digits:  # two conv layers on the 8x8 digits: the same page, in seconds
        spec.update(
            dataset="digits",
            layers=[
                {"type": "conv", "filters": 32, "kernel_size": 3, "activation": "relu"},
                {"type": "conv", "filters": 64, "kernel_size": 3, "activation": "relu"},
                {"type": "flatten"},
                {"type": "dense", "units": 10},
            ],
            batch_size=32,
        )
    spec.update(backend=backend, epochs=epochs, snapshots={"every": 1})
    experiments.write_text(yaml.safe_dump({"experiments": {"ui-benchmark": spec}}, sort_keys=False))
    command = [sys.executable, "-m", "convexp", "run", str(experiments), "--db", str(db)]
    if mnist:
        command += ["--data-dir", mnist]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    print(
        f"recorded {epochs} epoch(s) on {backend} with every-step snapshots in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    return 1


def many_runs(db: Path, count: int) -> None:
    """A database of ``count`` finished runs with 20 epochs of metrics each (the runs page's load)."""
    from convexp.experiments.grids import resolve_runs
    from convexp.store import MetricRecord, Store

    spec = resolve_runs(REPO / "experiments.yaml", ["quickstart"])[0].spec.model_dump(mode="json")
    with Store(db) as store:
        for index in range(count):
            run_id = store.create_run(
                experiment=f"grid-{index % 7}",
                backend=("numpy", "torch", "tensorflow")[index % 3],
                seed=index,
                dataset="digits",
                kernel_initializer="glorot_uniform",
                bias_initializer="zeros",
                spec=spec,
                convexp_version="0.1.0",
                backend_version="0.1.0",
                framework="numpy",
                framework_version="2",
            )
            metrics = [
                MetricRecord(45 * e, e, name, 0.5 + e / 50)
                for e in range(1, 21)
                for name in ("test_accuracy", "test_loss", "epoch_seconds")
            ]
            store.record(run_id, metrics, epochs_completed=20, steps_completed=900)
            store.finish_run(run_id, "finished")


def random_walk(db: Path, steps: int) -> int:
    """A second run in ``db``: conv1 (32, 1, 3, 3) and conv2 (64, 32, 3, 3) walking randomly over ``steps``
    steps, recorded every step through convexp.track (a distribution over that many steps to draw)."""
    import numpy as np

    import convexp

    rng = np.random.default_rng(0)
    kernels = {"conv1": rng.normal(0, 0.2, (32, 1, 3, 3)).astype("f4"), "conv2": rng.normal(0, 0.06, (64, 32, 3, 3)).astype("f4")}
    started = time.perf_counter()
    with convexp.track("ui-benchmark-walk", db) as run:
        for step in range(steps + 1):
            for kernel in kernels.values():
                kernel += rng.normal(0, 1e-4, kernel.shape).astype("f4")
            run.log_metrics({"train_loss": 1.0 / (1 + step)}, step=step)
            run.log_kernels(kernels, step=step)
        run_id = run.run_id
    print(f"recorded a {steps}-step random walk in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return run_id


def start_ui(db: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "convexp", "ui", "--port", "0", "--db", str(db)], stderr=subprocess.PIPE, text=True
    )
    for line in process.stderr:
        found = re.search(r"at (http://\S+/)", line)
        if found:
            return process, found.group(1)
    raise SystemExit("convexp ui did not start")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


SLIDE = """async ([index, layer]) => {
  const state = window.cxRun.state, step = state.steps[index];
  const canvas = document.getElementById('kernel-canvas');
  const started = performance.now();
  const slider = document.getElementById('step-slider');
  // drawn: the page marks the canvas with the step it drew (seen at once by an observer, not by polling)
  const drawn = new Promise(r => {
    const done = () => canvas.dataset.step == String(step) && canvas.dataset.layer == layer;
    const watch = new MutationObserver(() => { if (done()) { watch.disconnect(); r(); } });
    watch.observe(canvas, {attributes: true});
  });
  slider.value = index; slider.dispatchEvent(new Event('input', {bubbles: true}));
  await drawn;
  await new Promise(r => requestAnimationFrame(() => r()));  // until the frame with the new grid is painted
  return performance.now() - started;
}"""

PLAY = """async (frames) => {
  const state = window.cxRun.state;
  document.getElementById('speed').value = '60';
  const started = performance.now();
  document.getElementById('play').click();
  while (state.index < frames) await new Promise(r => requestAnimationFrame(() => r()));
  const seconds = (performance.now() - started) / 1000;
  document.getElementById('play').click();
  return frames / seconds;
}"""


DISTRIBUTION = """async (layer) => {
  const started = performance.now();
  const select = document.getElementById('layer');
  select.value = layer; select.dispatchEvent(new Event('change', {bubbles: true}));
  const spread = window.cxRun.spread;
  while (!(spread.body && spread.body.layer === layer && spread.chart && spread.chart.frame)) await new Promise(r => setTimeout(r, 1));
  await new Promise(r => requestAnimationFrame(() => r()));
  return performance.now() - started;
}"""


def loaded_ms(page, url: str, repeats: int) -> float:
    """Median time from navigation to the page drawn (its own ``cxReadyAt``), over ``repeats`` loads after one warm-up."""
    times = []
    for _ in range(repeats + 1):
        page.goto(url)
        page.wait_for_function("() => window.cxReadyAt !== undefined")
        times.append(page.evaluate("() => window.cxReadyAt"))
    return statistics.median(times[1:])


def browser_figures(url: str, run_id: int, slides: int, frames: int, walk_id: int) -> dict:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.goto(f"{url}runs/{run_id}")
        page.wait_for_function("() => document.getElementById('kernel-canvas').dataset.step")
        page.select_option("#layer", "conv2")
        page.wait_for_function("() => document.getElementById('kernel-canvas').dataset.layer == 'conv2'")
        count = page.evaluate("() => window.cxRun.state.steps.length")
        chooser = random.Random(0)
        slide_ms = {"conv2": [page.evaluate(SLIDE, [chooser.randrange(count), "conv2"]) for _ in range(slides)]}
        page.select_option("#layer", "conv1")
        page.wait_for_function("() => document.getElementById('kernel-canvas').dataset.layer == 'conv1'")
        slide_ms["conv1"] = [page.evaluate(SLIDE, [chooser.randrange(count), "conv1"]) for _ in range(slides)]
        page.evaluate(SLIDE, [0, "conv1"])
        fps = page.evaluate(PLAY, min(frames, count - 1))
        page.goto(f"{url}runs/{walk_id}")
        page.wait_for_function("() => window.cxRun.spread.chart && window.cxRun.spread.chart.frame")
        distribution = [page.evaluate(DISTRIBUTION, layer) for layer in ("conv2", "conv1", "conv2", "conv1", "conv2")][::2]
        compare = loaded_ms(page, f"{url}compare?runs={run_id},{walk_id}", 5)
        browser.close()
    return {
        "snapshots": count,
        "slider_ms": slide_ms,
        "play_fps": fps,
        "play_frames": min(frames, count - 1),
        "distribution_ms": distribution,
        "compare_page_ms": compare,
    }


def experiment_page_ms(url: str, experiment: str) -> float:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        ms = loaded_ms(page, f"{url}experiments/{experiment}?by=backend", 5)
        browser.close()
    return ms


def keep_alive(url: str, run_id: int, steps: list[int], requests: int) -> dict[str, float]:
    """Median round trip and server time of small responses (one conv1 snapshot) over one kept-alive connection."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    chooser = random.Random(2)
    server, round_trip = [], []
    for _ in range(requests + 1):
        started = time.perf_counter()
        connection.request("GET", f"/api/runs/{run_id}/layers/conv1/kernels?step={chooser.choice(steps)}")
        response = connection.getresponse()
        response.read()
        round_trip.append((time.perf_counter() - started) * 1000)
        server.append(float(response.getheader("server-timing").split("dur=")[1]))
    connection.close()
    return {"round_trip_ms": statistics.median(round_trip[1:]), "server_ms": statistics.median(server[1:])}


def memory_while_scrubbing(url: str, pid: int, run_id: int, requests: int, count_steps: list[int]) -> list[tuple[int, float]]:
    host, port = url.split("//")[1].rstrip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    chooser = random.Random(1)
    samples = [(0, rss_mib(pid))]
    for done in range(1, requests + 1):
        connection.request("GET", f"/api/runs/{run_id}/layers/conv2/kernels?step={chooser.choice(count_steps)}")
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        if done % (requests // 5) == 0:
            samples.append((done, rss_mib(pid)))
    connection.close()
    return samples


def page_times(url: str, repeats: int) -> dict[str, dict[str, float]]:
    """Median server time (the app's Server-Timing header) and loopback round trip of the runs page and its JSON."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    figures = {}
    for path in ("/", "/api/runs"):
        server, round_trip = [], []
        for _ in range(repeats + 1):  # the first request warms up (imports, templates)
            started = time.perf_counter()
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            round_trip.append((time.perf_counter() - started) * 1000)
            server.append(float(response.getheader("server-timing").split("dur=")[1]))
            assert response.status == 200 and len(body) > 1000
        figures[path] = {"server_ms": statistics.median(server[1:]), "round_trip_ms": statistics.median(round_trip[1:])}
    connection.close()
    return figures


def table_rows(r: dict) -> list[tuple[str, str, str]]:
    """(measure, measured, target) of each figure of a report; the performance page's table is made from these too."""
    t = r["targets"]
    rows = [
        (
            f"step slider to a random step, {layer} drawn and painted: median / p95 / max of {r['slides']}",
            f"{s['median']:.1f} / {s['p95']:.1f} / {s['max']:.1f} ms",
            f"median < {t['slider_ms']:g} ms",
        )
        for layer, s in sorted(r["slider_ms"].items())
    ]
    k = r["keep_alive"]
    rows += [
        (
            f"play conv1 through one epoch ({r['play_frames']} snapshots) at the 60 fps setting",
            f"{r['play_fps']:.1f} fps",
            f">= {t['play_fps']:g} fps",
        ),
        (
            "a small response (a conv1 snapshot) over keep-alive: round trip (server time), median of 500",
            f"{k['round_trip_ms']:.2f} ({k['server_ms']:.2f}) ms",
            f"within {t['keep_alive_extra_ms']:g} ms of the server time",
        ),
        (
            f"conv2's spread over {r['walk_steps']:,} steps: chosen to drawn, median of 3",
            f"{statistics.median(r['distribution_ms']):.0f} ms",
            f"< {t['distribution_ms']:g} ms",
        ),
        (
            "compare page (the run beside the walk): navigation to drawn, median of 5",
            f"{r['compare_page_ms']:.0f} ms",
            f"< {t['page_ms']:g} ms",
        ),
        (
            f"experiment page (about {r['runs_in_runs_db'] // 7} runs by backend): navigation to drawn, median of 5",
            f"{r['experiment_page_ms']:.0f} ms",
            f"< {t['page_ms']:g} ms",
        ),
        (
            f"runs page with {r['runs_in_runs_db']:,} runs: server time (loopback round trip)",
            f"{r['runs_page_ms']:.1f} ({r['runs_page_round_trip_ms']:.1f}) ms",
            f"< {t['runs_page_ms']:g} ms",
        ),
        (
            f"`/api/runs` with {r['runs_in_runs_db']:,} runs: server time (round trip)",
            f"{r['api_runs_ms']:.1f} ({r['api_runs_round_trip_ms']:.1f}) ms",
            "",
        ),
        (
            f"server resident memory while {r['requests']:,} random conv2 steps are requested (every {r['requests'] // 5:,})",
            ", ".join(f"{mib:.0f}" for _, mib in r["rss_mib_while_scrubbing"]) + " MiB",
            "flat",
        ),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mnist", nargs="?", help="folder with the MNIST IDX files")
    parser.add_argument("--digits", action="store_true", help="a small digits run instead of MNIST (a quick check)")
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--db", type=Path, help="a database that already holds the recorded run (id 1)")
    parser.add_argument("--runs", type=int, default=1000, help="runs in the runs-page database")
    parser.add_argument("--slides", type=int, default=50)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--walk-steps", type=int, default=WALK_STEPS, help="steps of the random-walk run (distribution)")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "ui.json")
    args = parser.parse_args()
    if not args.mnist and not args.digits and not args.db:
        parser.error("give the MNIST folder, --digits, or --db")
    folder = Path(tempfile.mkdtemp(prefix="convexp-ui-bench-"))
    db = args.db or folder / "run.db"
    run_id = 1 if args.db else record(db, folder / "experiments.yaml", args.mnist, args.backend, args.epochs, args.digits)
    from convexp.store import Store

    with Store(db, read_only=True) as store:
        recorded = store.get_run(run_id)  # what the page shows, as recorded (also for a --db given)
        described = f"{'digits' if recorded.dataset == 'digits' else recorded.experiment}, {recorded.backend}, "
        described += f"{recorded.epochs_completed} epoch(s), every step"
        steps = store.snapshot_steps(run_id, "conv2")
        epoch_steps = store.get_run(run_id).steps_completed // max(1, store.get_run(run_id).epochs_completed)
    walk_id = random_walk(db, args.walk_steps)
    server, url = start_ui(db)
    try:
        browser = browser_figures(url, run_id, args.slides, epoch_steps, walk_id)
        small = keep_alive(url, run_id, steps, 500)
        memory = memory_while_scrubbing(url, server.pid, run_id, args.requests, steps)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    many = folder / "runs.db"
    many_runs(many, args.runs)
    server, url = start_ui(many)
    try:
        pages = page_times(url, 20)
        experiment_ms = experiment_page_ms(url, "grid-0")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)

    slider = browser["slider_ms"]
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "run": described,
        "snapshots_per_layer": browser["snapshots"],
        "slides": args.slides,
        "slider_ms": {
            layer: {"median": statistics.median(ms), "p95": percentile(ms, 0.95), "max": max(ms)} for layer, ms in slider.items()
        },
        "play_fps": browser["play_fps"],
        "play_frames": browser["play_frames"],
        "keep_alive": small,
        "walk_steps": args.walk_steps,
        "distribution_ms": browser["distribution_ms"],
        "compare_page_ms": browser["compare_page_ms"],
        "experiment_page_ms": experiment_ms,
        "rss_mib_while_scrubbing": memory,
        "requests": args.requests,
        "runs_in_runs_db": args.runs,
        "runs_page_ms": pages["/"]["server_ms"],
        "runs_page_round_trip_ms": pages["/"]["round_trip_ms"],
        "api_runs_ms": pages["/api/runs"]["server_ms"],
        "api_runs_round_trip_ms": pages["/api/runs"]["round_trip_ms"],
        "targets": TARGETS,
    }
    rows = table_rows(report)
    print(f"convexp ui benchmark: {report['run']}, {browser['snapshots']} snapshots per layer")
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'measured':<28}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<28}  {target}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
