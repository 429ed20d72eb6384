"""Write the benchmark tables of docs/benchmarks.md from benchmarks/results/*.json, so that they are never typed by hand.

    python benchmarks/readme.py           # rewrite the tables in docs/benchmarks.md
    python benchmarks/readme.py --check   # exit 1 if docs/benchmarks.md's tables differ from the results

Each table sits between ``<!-- benchmarks:NAME -->`` and ``<!-- /benchmarks:NAME -->`` in the
page; NAME is the results file it comes from (epoch, store, encoding).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parent / "docs" / "benchmarks.md"


def epoch_table(r: dict) -> str:
    """benchmarks/epoch.py's results: seconds per epoch, ratios, snapshot overhead, memory."""
    lines = [
        f"Measured {r['date'][:10]} on {r['machine']}; median of {r['repeats']} interleaved repeats:",
        "",
        "| program | s/epoch | test acc | peak RSS MiB |",
        "|---|---|---|---|",
    ]
    for name, seconds in r["seconds_per_epoch"].items():
        runs = r["raw"][name]
        peak = statistics.median(x["peak_rss_mib"] for x in runs) if "peak_rss_mib" in runs[0] else None
        lines.append(f"| {name} | {seconds:.2f} | {r['test_accuracy'][name]:.4f} | {'' if peak is None else f'{peak:.0f}'} |")
    lines += ["", "| ratio | measured | target | vs the fastest plain variant |", "|---|---|---|---|"]
    for name, ratio in r["ratios"].items():
        verdict = "" if ratio["measured"] <= ratio["target"] else " (missed)"
        lines.append(
            f"| {name} | {ratio['measured']:.3f}{verdict} | <= {ratio['target']} | "
            f"{ratio['vs_fastest_plain']:.3f} ({ratio['fastest_plain']}) |"
        )
    lines += ["", "| every-step snapshot overhead | A/B | recorder | writer CPU | target |", "|---|---|---|---|---|"]
    for backend, o in r["snapshot_overhead"].items():
        writer = f"{o['writer_share']:.1%}" if "writer_share" in o else "-"
        lines.append(f"| convexp-{backend} | {o['every_step_vs_default']:.1%} | {o['recorder_share']:.1%} | {writer} | <= 1% |")
    memory = ", ".join(
        f"{backend} {' / '.join(f'{v:.0f}' for v in m['rss_after_epoch_mib'])} MiB" for backend, m in r["memory"].items()
    )
    lines += ["", f"Resident memory after each of three epochs (20,000 examples, every-step snapshots): {memory}."]
    if not r.get("gpu_measured"):
        lines += ["", "GPU epochs: not measured (no GPU on the machine that ran it)."]
    return "\n".join(lines)


def store_table(r: dict) -> str:
    """benchmarks/store.py's results: writing and reading snapshots, cold starts."""
    lines = [
        f"Database of one epoch of every-step snapshots: {r['database_mib']:.1f} MiB.",
        "",
        "| measure | seconds | target |",
        "|---|---|---|",
    ]
    targets = r.get("targets", {})
    for name, seconds in r.items():
        if isinstance(seconds, float) and name != "database_mib":
            target = targets.get(name)
            verdict = "" if target is None else f"<= {target}" + ("" if seconds <= target else " (missed)")
            lines.append(f"| {name} | {seconds:.3f} | {verdict} |")
    return "\n".join(lines)


def encoding_table(r: dict) -> str:
    """benchmarks/encoding.py's results: what lossless encodings of the kernel bytes save and cost."""
    lines = [f"{r['snapshots']} kernel snapshots of a real every-step MNIST run, {r['raw_bytes'] / 1e6:.1f} MB raw:", ""]
    lines += _encodings_rows(r)
    if "resnet18" in r:
        resnet = r["resnet18"]
        lines += [
            "",
            f"{resnet['snapshots']} kernel snapshots of a width-16 ResNet-18 recorded every step (20 conv layers, 41 steps), "
            f"{resnet['raw_bytes'] / 1e6:.1f} MB raw:",
            "",
        ]
        lines += _encodings_rows(resnet)
    lines += ["", "Read back through the store (`Store.kernel_series` of both MNIST layers, median of 5, checksums checked):", ""]
    lines += ["| stored | kernel + bias bytes | read all |", "|---|---|---|"]
    for name, e in r["store"].items():
        lines.append(f"| {name} | {e['snapshot_bytes'] / 1e6:.1f} MB | {e['read_all_seconds']:.3f} s |")
    return "\n".join(lines)


def _encodings_rows(r: dict) -> list[str]:
    lines = ["| encoding | bytes per snapshot | of raw | encode MB/s | decode MB/s |", "|---|---|---|---|---|"]
    for name, e in r["encodings"].items():
        speeds = "| - | -" if name == "raw" else f"| {e['encode_mb_s']:,.0f} | {e['decode_mb_s']:,.0f}"
        lines.append(f"| {name} | {e['bytes_per_snapshot']:,.0f} | {e['of_raw']:.3f} {speeds} |")
    c = r["checksum"]
    lines += [
        "",
        f"Checksums (CRC-32 of each kernel, written with every row, checked by every read): {c['seconds']:.3f} s for all, "
        f"{c['per_snapshot_us']:.1f} us a snapshot, {c['share_of_encode']:.1%} of the time convexp's encoding takes.",
    ]
    return lines


def tracking_table(r: dict) -> str:
    """benchmarks/tracking.py's results: PyTorch loops with and without every-step recording."""
    lines = [
        f"Median of {r['repeats']} interleaved fresh processes, {r['date'][:10]}; kernels of every conv layer and the loss at every step:",
        "",
        "| job | steps | variant | loop s | ratio to plain | target | training thread us/step | writer CPU s | peak MB (training / writer) | open / close s | snapshots kept |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, job in r["jobs"].items():
        for variant, m in job["medians"].items():
            recording = variant.startswith("convexp.")
            goal = job.get("budget_target", 1.07) if "budget" in variant else job["target"]
            target = f"<= {goal:.2f}" + ("" if m["ratio"] <= goal else " (missed)") if recording else ""
            thread = f"{m['us_per_step']:.0f}" if recording else ""
            writer = f"{m['writer_cpu']:.2f}" if recording else ""
            writer_mb = f"{m['writer_rss_mb']:.0f}" if m.get("writer_rss_mb") else "none (wrote in process)"
            memory = f"{m['rss_mb']:.0f} / {writer_mb}" if recording else f"{m['rss_mb']:.0f}"
            timing = f"{m['open']:.3f} / {m['close']:.3f}" if recording else ""
            kept = f"{m['kept']:.0f} of {job['steps'] + 1}" if recording and "kept" in m else ""
            lines.append(
                f"| {name} | {job['steps']} | {variant} | {m['seconds']:.3f} | {m['ratio']:.3f} | {target} | {thread} | {writer} | {memory} | {timing} | {kept} |"
            )
    lines += ["", f"Targets: opening a run on a new database and ending it (everything committed) <= {r['open_target']} s each."]
    for line in r["skipped"]:
        lines.append(f"Not measured: {line}.")
    if r["not_installed"]:
        lines.append(f"Not installed on the machine that ran it, so not measured: {', '.join(r['not_installed'])}.")
    return "\n".join(lines)


def grids_table(r: dict) -> str:
    """benchmarks/grids.py's results: reading grids back by their parameters."""
    lines = [
        f"Median of {r['repeats']} fresh `convexp` processes (interpreter start-up included), {r['date'][:10]}, {r['machine']}:",
        "",
        "| command | seconds | target |",
        "|---|---|---|",
    ]
    for name, c in r["commands"].items():
        target = "" if c["target"] is None else f"< {c['target']:g}"
        lines.append(f"| {name} | {c['seconds']:.3f} | {target} |")
    return "\n".join(lines)


def _script_rows_table(script: str, intro: str, r: dict) -> str:
    """A table of the rows a benchmark script makes itself (its ``table_rows``), under a sentence of intro."""
    sys.path.insert(0, str(HERE))
    rows = __import__(script).table_rows(r)
    lines = [intro, "", "| measure | measured | target |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {target} |" for name, value, target in rows]
    return "\n".join(lines)


def ui_table(r: dict) -> str:
    """benchmarks/ui.py's results: convexp ui in headless Chromium (its rows are the script's own)."""
    intro = f"Measured {r['date']} on this machine, {r['run']}, {r['snapshots_per_layer']:,} snapshots per layer:"
    return _script_rows_table("ui", intro, r)


def ui_views_table(r: dict) -> str:
    """benchmarks/ui_views.py's results: the UI's views that do seconds of work (its rows are the script's own)."""
    intro = f"Measured {r['date']} on this machine, server times the median of {r['repeats']} fresh servers:"
    return _script_rows_table("ui_views", intro, r)


def sweeps_table(r: dict) -> str:
    """benchmarks/sweeps.py's results: what a sweep costs beyond its runs."""
    lines = [
        f"Measured {r['date'][:10]} on {r['machine']}; a process's measures are the median of {r['repeats']}:",
        "",
        "| measure | measured | target |",
        "|---|---|---|",
    ]
    for name, m in r["measures"].items():
        target = "" if m["target"] is None else f"< {m['target']:g}" + ("" if m["value"] < m["target"] else " (missed)")
        lines.append(f"| {name} | {m['value']:.3f} | {target} |")
    return "\n".join(lines)


def batch_norm_table(r: dict) -> str:
    """benchmarks/batch_norm.py's results: what batch_norm costs the numpy backend's epoch."""
    verdict = "" if r["ratio"] <= r["target"] else " (missed)"
    return "\n".join(
        [
            f"mnist-batchnorm on numpy, one epoch of {r['examples']:,} MNIST examples, median of {r['repeats']} fresh processes:",
            "",
            "| network | epoch s |",
            "|---|---|",
            *(f"| {variant} | {seconds:.2f} |" for variant, seconds in r["medians"].items()),
            "",
            f"batch_norm / plain: {r['ratio']:.2f} (target <= {r['target']}{verdict}).",
        ]
    )


TABLES = {
    "epoch": epoch_table,
    "store": store_table,
    "encoding": encoding_table,
    "tracking": tracking_table,
    "grids": grids_table,
    "ui": ui_table,
    "ui_views": ui_views_table,
    "sweeps": sweeps_table,
    "batch_norm": batch_norm_table,
}


def render(readme: str) -> str:
    """The performance page with every benchmark table rewritten from its results file."""
    for name, table in TABLES.items():
        results = HERE / "results" / f"{name}.json"
        if not results.exists():
            sys.exit(f"{results} is missing: run benchmarks/{name}.py (the performance page's table comes from it)")
        pattern = re.compile(rf"(<!-- benchmarks:{name} -->\n)(?:.*?\n)?(<!-- /benchmarks:{name} -->)", re.S)
        if not pattern.search(readme):
            sys.exit(f"docs/benchmarks.md has no <!-- benchmarks:{name} --> ... <!-- /benchmarks:{name} --> block")
        body = table(json.loads(results.read_text())) + "\n"
        readme = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(2), readme)
    return readme


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that docs/benchmarks.md is up to date")
    args = parser.parse_args()
    current = README.read_text()
    wanted = render(current)
    if args.check:
        if wanted != current:
            sys.exit("docs/benchmarks.md's benchmark tables differ from benchmarks/results: run python benchmarks/readme.py")
        print("docs/benchmarks.md's benchmark tables match benchmarks/results")
        return
    README.write_text(wanted)
    print("docs/benchmarks.md's benchmark tables rewritten from benchmarks/results")


if __name__ == "__main__":
    main()
