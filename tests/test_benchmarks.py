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
    report = run(
        "benchmarks/convexp_epoch.py", str(mnist_dir), "numpy", "--every-step", "--train-examples", "640", "--epochs", "2"
    )
    assert report["conv2_snapshots"] == 2 * 5 + 1  # step 0 and every one of the 5 steps of each epoch
    assert len(report["epoch_seconds"]) == 2 and len(report["rss_after_epoch_mib"]) == 2
    assert 0 < report["recording_seconds"] < report["wall_seconds"]
    assert 0 < report["writer_cpu_seconds"] < report["wall_seconds"]


def test_store_benchmark_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, "benchmarks/store.py", "--json", str(tmp_path / "store.json"), "--repeats", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "store.json").read_text())
    assert report["read all snapshots of conv1 and conv2"] > 0 and report["database_mib"] > 15
    quickstart = [name for name in report if "quickstart" in name]
    assert len(quickstart) == 2 and all(report[name] > 0 for name in quickstart)
    floors = [name for name in report if name.startswith("(floor")]
    assert len(floors) == 2 and all(report[name] > 0 for name in floors)
    assert set(report["targets"]) == {
        "read all snapshots of conv1 and conv2",
        "cold `convexp --help`",
        "cold `convexp runs`",
        *quickstart,
    }


def test_ui_benchmark_runs_and_reports(tmp_path):
    """benchmarks/ui.py on a small digits run: every figure it reports is there (the MNIST figures are in docs/benchmarks.md)."""
    import pytest

    pytest.importorskip("starlette", reason="convexp ui needs the ui extra")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    import shutil

    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    report = run(
        "benchmarks/ui.py",
        "--digits",
        "--backend",
        "numpy",
        "--epochs",
        "1",
        "--runs",
        "50",
        "--requests",
        "200",
        "--slides",
        "5",
        "--walk-steps",
        "60",
        "--json",
        str(tmp_path / "ui.json"),
    )
    assert report["snapshots_per_layer"] == 46 and report["play_frames"] == 45
    assert all(report["slider_ms"][layer]["median"] > 0 for layer in ("conv1", "conv2"))
    assert report["play_fps"] > 0 and report["runs_page_ms"] > 0 and report["keep_alive"]["round_trip_ms"] > 0
    assert report["walk_steps"] == 60 and len(report["distribution_ms"]) == 3 and min(report["distribution_ms"]) > 0
    assert report["compare_page_ms"] > 0 and report["experiment_page_ms"] > 0
    assert [done for done, _ in report["rss_mib_while_scrubbing"]] == [0, 40, 80, 120, 160, 200]


def test_ui_views_benchmark_runs_and_reports(tmp_path):
    """benchmarks/ui_views.py at its small sizes: the GIF, the experiment view cold and kept, the runs page."""
    import pytest

    pytest.importorskip("starlette", reason="convexp ui needs the ui extra")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    import shutil

    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    report = run("benchmarks/ui_views.py", "--quick", "--repeats", "1", "--json", str(tmp_path / "views.json"))
    assert report["gif_snapshots"] == 61 and report["grid_snapshots"] == 13 and report["runs"] == 50
    assert report["gif_s"] > 0 and report["experiment_cold_s"] > 0 and report["runs_page_ms"] > 0
    assert report["experiment_warm_s"] > 0


def test_fidelity_script_runs_and_reports(tmp_path):
    """benchmarks/fidelity.py on a quick digits experiment (the 12-epoch MNIST figures are in docs/tour.md)."""
    from tests.conftest import TINY_DIGITS, write_experiments

    experiments = write_experiments(tmp_path / "e.yaml", {"tiny": {**TINY_DIGITS, "snapshots": {"every": 5}}})
    out = tmp_path / "fidelity.json"
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/fidelity.py",
            "--file",
            str(experiments),
            "--experiment",
            "tiny",
            "--epochs",
            "2",
            "--backends",
            "numpy",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = json.loads(out.read_text())["runs"]
    assert run["status"] == "finished" and run["epochs"] == 2 and len(run["test_accuracy_per_epoch"]) == 2
    assert run["median_epoch_seconds"] > 0 and list(run["conv1_edge_like"]) == ["0", "46"]
    assert "tiny, 2 epochs" in result.stdout and "numpy" in result.stdout


def test_encoding_benchmark_measures_lossless_encodings(tmp_path):
    from tests.conftest import TINY_DIGITS, run_cli, write_experiments

    path = write_experiments(tmp_path / "e.yaml", {"every": {**TINY_DIGITS, "snapshots": {"every": 1}}})
    db = tmp_path / "r.db"
    assert run_cli("run", str(path), "--db", str(db)).returncode == 0
    out = tmp_path / "encoding.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/encoding.py", "--db", str(db), "--json", str(out), "--resnet-steps", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]  # it checks every encoding decodes bit for bit
    report = json.loads(out.read_text())
    assert report["snapshots"] == 24 and report["raw_bytes"] == 24 * 4 * 9 * 4
    assert report["encodings"]["raw"]["saved"] == 0
    assert all(0 < e["bytes_per_snapshot"] for e in report["encodings"].values())
    if "resnet18" in report:  # where torch is installed: the ResNet-18's 20 conv layers at steps 0, 1 and 2
        assert report["resnet18"]["snapshots"] == 20 * 3


def test_the_readme_tables_are_the_recorded_results():
    result = subprocess.run([sys.executable, "benchmarks/readme.py", "--check"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_tracking_benchmark_runs_and_reports(tmp_path):
    import pytest

    pytest.importorskip("torch")
    out = tmp_path / "tracking.json"
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/tracking.py",
            "--jobs",
            "peer,two-conv-1t",
            "--steps",
            "30",
            "--repeats",
            "1",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["jobs"]) == {"peer", "two-conv-1t"}
    for job in report["jobs"].values():
        medians = job["medians"]
        assert {"plain", "convexp.torch", "convexp.track"} <= set(medians)
        assert medians["plain"]["ratio"] == 1.0 and all(m["seconds"] > 0 for m in medians.values())
        for variant in ("convexp.torch", "convexp.track"):
            assert medians[variant]["us_per_step"] > 0 and medians[variant]["writer_cpu"] > 0
            # 30 light steps never move the writer out of the training process: no writer process, no memory of its own
            assert medians[variant]["writer_rss_mb"] == 0 and 0 < medians[variant]["open"] and 0 < medians[variant]["close"]


def test_batch_norm_benchmark_runs_and_reports(tmp_path, mnist_dir):
    out = tmp_path / "batch_norm.json"
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/batch_norm.py",
            "--mnist",
            str(mnist_dir),
            "--examples",
            "640",
            "--repeats",
            "1",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["examples"] == 640 and set(report["medians"]) == {"plain", "batch_norm"}
    assert all(seconds > 0 for seconds in report["medians"].values())
    assert report["ratio"] == report["medians"]["batch_norm"] / report["medians"]["plain"]
    assert "batch_norm / plain" in result.stdout
