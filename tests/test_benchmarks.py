"""The benchmark programs still run (their timings are reported by the benchmarks, never asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def run(*args: str) -> dict:
    result = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_convexp_epoch_program_reports_times_snapshots_and_memory(mnist_dir):
    report = run("benchmarks/convexp_epoch.py", str(mnist_dir), "numpy", "--every-step", "--train-examples", "640", "--epochs", "2")
    assert report["conv2_snapshots"] == 2 * 5 + 1  # step 0 and every one of the 5 steps of each epoch
    assert len(report["epoch_seconds"]) == 2 and len(report["rss_after_epoch_mib"]) == 2
    assert 0 < report["recording_seconds"] < report["wall_seconds"]


def test_store_benchmark_runs(tmp_path):
    result = subprocess.run([sys.executable, "benchmarks/store.py", "--json", str(tmp_path / "store.json")],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "store.json").read_text())
    assert report["read all snapshots of conv1 and conv2"] > 0 and report["database_mib"] > 30
