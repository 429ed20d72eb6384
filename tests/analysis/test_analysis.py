"""Comparing runs, analysing filters, pictures and the HTML report, checked against independent references."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from convexp.analysis.filters import EDGE_OPERATORS, EDGE_THRESHOLD, OPERATORS, analyse_layer, best_operator, orientation
from convexp.analysis.kernels import cosine_matrix, match_filters, relative_drift
from tests.conftest import TINY_DIGITS, run_cli, write_experiments


def test_matching_recovers_a_permutation_and_agrees_with_brute_force():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 2, 3, 3))
    permutation = [3, 0, 5, 1, 4, 2]
    matching = match_filters(a, a[permutation])
    assert matching.mean_similarity == pytest.approx(1.0)
    assert sorted((i, permutation.index(i)) for i in range(6)) == sorted((i, j) for i, j, _ in matching.pairs)
    b = rng.standard_normal((6, 2, 3, 3))
    similarity = cosine_matrix(a, b)
    brute = max(np.mean([similarity[i, p[i]] for i in range(6)]) for p in itertools.permutations(range(6)))
    assert match_filters(a, b).mean_similarity == pytest.approx(brute)


def test_cosine_and_drift_by_their_definitions():
    a = np.array([[[[1.0, 0.0]]], [[[0.0, 2.0]]]])
    b = np.array([[[[3.0, 3.0]]], [[[0.0, 0.0]]]])
    np.testing.assert_allclose(cosine_matrix(a, b), [[1 / np.sqrt(2), 0.0], [1 / np.sqrt(2), 0.0]])
    series = np.stack([a, a * 2, a * 0.5])
    np.testing.assert_allclose(relative_drift(series), [0.0, 1.0, 0.5])


@pytest.mark.parametrize("name", list(OPERATORS))
def test_every_operator_matches_itself(name):
    matched, correlation = best_operator(OPERATORS[name])
    assert correlation == pytest.approx(1.0)
    assert matched == name or np.allclose(np.corrcoef(OPERATORS[matched].ravel(), OPERATORS[name].ravel())[0, 1], 1.0)


@pytest.mark.parametrize(
    "name, angle", [("sobel_x", 0), ("sobel_y", 90), ("-sobel_x", 0), ("diagonal_45", 45), ("diagonal_135", 135)]
)
def test_orientation_of_edge_operators(name, angle):
    measured, coherence = orientation(OPERATORS[name])
    assert min(abs(measured - angle), 180 - abs(measured - angle)) < 1.0
    assert coherence > 0.5


def test_edge_like_share_of_a_layer():
    kernels = np.stack([OPERATORS["sobel_x"], OPERATORS["laplacian"], OPERATORS["-prewitt_y"], np.ones((3, 3))])[:, None] * 0.1
    layer = analyse_layer(kernels, step=7)
    assert [f.edge_like for f in layer.filters] == [True, False, True, False]
    assert layer.edge_share == 0.5 and layer.step == 7
    assert EDGE_THRESHOLD == 0.8 and "sobel_x" in EDGE_OPERATORS and "laplacian" not in EDGE_OPERATORS
    assert layer.filters[3].mean == pytest.approx(0.1) and layer.filters[0].norm == pytest.approx(np.linalg.norm(kernels[0]))


@pytest.mark.parametrize("size, channels", [(3, 1), (3, 32), (5, 3), (7, 16)])
def test_a_runs_edge_shares_at_once_are_each_snapshots_and_the_correlations_are_pearsons(size, channels):
    from scipy.stats import pearsonr

    from convexp.analysis.filters import best_operators, edge_shares, operator_bank

    rng = np.random.default_rng(size * channels)
    bank = list(operator_bank(size).values())
    noise = np.linspace(0.0, 1.5, 30)[:, None, None, None, None]  # from exact operators to mostly noise
    filters = np.stack([bank[i % len(bank)] for i in range(10)])[None, :, None] + noise * rng.normal(size=(30, 10, 1, size, size))
    kernels = (filters + 0.05 * rng.normal(size=(30, 10, channels, size, size))).astype(np.float32)
    shares = edge_shares(kernels)
    assert shares.tolist() == [analyse_layer(k, 0, gabor=False).edge_share for k in kernels]  # bit for bit
    assert shares[0] > 0.5 and shares.min() < shares[0]
    means = kernels[-1].astype(np.float64).mean(axis=1)
    names, correlations = best_operators(means)
    for mean, name, correlation in zip(means, names, correlations):
        expected = max(pearsonr(mean.ravel(), op.ravel())[0] for op in bank)
        assert correlation == pytest.approx(expected, abs=1e-12)
        assert pearsonr(mean.ravel(), operator_bank(size)[name].ravel())[0] == pytest.approx(expected, abs=1e-12)


def test_random_filters_are_rarely_edge_like():
    kernels = np.random.default_rng(0).uniform(-1, 1, size=(2000, 1, 3, 3))
    assert analyse_layer(kernels, 0).edge_share < 0.15


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """Two runs of a small digits experiment that differ only by seed, every step recorded."""
    folder = tmp_path_factory.mktemp("seeds")
    body = {
        **TINY_DIGITS,
        "layers": [
            {"type": "conv", "filters": 8, "kernel_size": 3, "activation": "relu"},
            {"type": "maxpool", "pool_size": 2},
            {"type": "flatten"},
            {"type": "dense", "units": 10},
        ],
        "seed": [0, 1],
        "epochs": 3,
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "snapshots": {"every": 1},
    }
    path = write_experiments(folder / "e.yaml", {"seeds": body})
    db = folder / "r.db"
    result = run_cli("run", str(path), "--db", str(db))
    assert result.returncode == 0, result.stderr
    return db


def compare_json(db, *runs, step="last"):
    result = run_cli("compare", *runs, "--db", str(db), "--format", "json", "--step", str(step))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compare_a_run_with_itself(two_seeds):
    report = compare_json(two_seeds, "1", "1")
    (layer,) = report["layers"]
    assert layer["similarity_to_first_run"] == [1.0, 1.0]
    assert layer["drift"][0] == layer["drift"][1] > 0
    assert report["spec_differences"] == {}


def test_compare_two_seeds(two_seeds):
    report = compare_json(two_seeds, "1", "2")
    similarity = report["layers"][0]["similarity_to_first_run"][1]
    assert similarity < 0.9
    assert report["spec_differences"] == {"seed": [0, 1]}
    at_zero = compare_json(two_seeds, "1", "2", step=0)["layers"][0]
    assert at_zero["drift"] == [0.0, 0.0] and at_zero["steps"] == [0, 0]
    csv_rows = run_cli("compare", "1", "2", "--db", str(two_seeds), "--format", "csv").stdout.splitlines()
    assert csv_rows[0].startswith("run,final_test_accuracy") and len(csv_rows) == 3


def test_compare_selects_runs_by_experiment_and_backend(two_seeds):
    report = compare_json(two_seeds, "seeds:numpy", "1")
    assert report["runs"][0]["run"].startswith("2 seeds:numpy")
    bad = run_cli("compare", "nope:numpy", "--db", str(two_seeds))
    assert bad.returncode != 0 and "no run matches 'nope:numpy'" in bad.stderr


def test_filters_command_reports_operators_and_edge_share(two_seeds):
    table = run_cli("filters", "1", "--db", str(two_seeds))
    assert table.returncode == 0, table.stderr
    assert (
        "best_operator" in table.stdout
        and "edge-like (best match an edge operator with correlation >= 0.8): step 0:" in table.stdout
    )
    data = json.loads(run_cli("filters", "1", "--db", str(two_seeds), "--format", "json", "--step", "0").stdout)
    assert len(data["filters"]) == 8 and set(data["edge_share"]) == {"0"}


def assert_real_picture(path: Path, min_bytes: int = 5000):
    from PIL import Image

    assert path.stat().st_size > min_bytes
    image = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    assert image.shape[0] > 200 and image.shape[1] > 200
    assert image.std() > 10  # not blank


@pytest.mark.parametrize("kind", ["filters", "evolution", "curves", "histogram", "features", "patches", "maximize"])
def test_each_picture_kind(two_seeds, tmp_path, kind):
    out = tmp_path / f"{kind}.png"
    result = run_cli("plot", kind, "1", "2", "--out", str(out), "--db", str(two_seeds))
    assert result.returncode == 0, result.stderr
    assert_real_picture(out)


def test_evolution_as_animated_gif(two_seeds, tmp_path):
    from PIL import Image

    out = tmp_path / "evolution.gif"
    assert run_cli("plot", "evolution", "1", "--out", str(out), "--db", str(two_seeds)).returncode == 0
    assert Image.open(out).n_frames > 10


@pytest.mark.parametrize(
    "command, out, fragment",
    [
        (["plot", "filters", "1"], "f.txt", "cannot write '.txt' files; use one of"),
        (["plot", "curves", "1"], "missing/c.png", "missing does not exist"),
        (["report", "1"], "missing/r.html", "missing does not exist"),
        (["report", "1"], "r.pdf", "use one of .htm, .html"),
    ],
)
def test_an_out_that_cannot_be_written_is_refused_before_drawing(two_seeds, tmp_path, command, out, fragment):
    from tests.cli.test_cli import assert_one_line_error

    result = run_cli(*command, "--out", str(tmp_path / out), "--db", str(two_seeds))
    assert_one_line_error(result, f"--out {tmp_path / out}", fragment)
    assert result.returncode == 2 and list(tmp_path.iterdir()) == []


def test_metrics_as_rows_and_dataframe(two_seeds):
    pd = pytest.importorskip("pandas")
    from convexp.store import Store

    with Store(str(two_seeds)) as store:
        rows = store.metrics(1, ["test_accuracy"])
        frame = store.metrics_frame(1)
        series = store.kernel_series(1, "conv1")
    assert [r.epoch for r in rows] == [1, 2, 3]
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["step", "epoch", "name", "value", "wall_time"]
    wide = frame.pivot_table(index="step", columns="name", values="value")
    assert wide["test_accuracy"].dropna().tolist() == [r.value for r in rows]
    assert series.kernels.shape == (len(series.steps), 8, 1, 3, 3) and series.steps[0] == 0


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_opens_in_headless_chromium_with_every_image_and_no_network(two_seeds, tmp_path):
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    out = tmp_path / "report.html"
    result = run_cli("report", "1", "2", "--out", str(out), "--db", str(two_seeds))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "http://" not in text and "https://" not in text
    with sync_api.sync_playwright() as playwright:
        # playwright gives the browser a fresh profile of its own (the --user-data-dir the issue asks for)
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page()
        page.set_default_timeout(120_000)  # a bound on a broken page, not a timing
        requested = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(out.as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        title = page.title()
        browser.close()
    assert title == "convexp report: run 1, run 2"
    assert len(images) == 1 + 2 * 4  # curves, then filters/evolution/histogram/features per run
    assert all(complete and width > 100 and height > 100 for complete, width, height in images)
    assert all(url.startswith(("file://", "data:")) for url in requested), requested


def test_compare_says_which_layers_it_could_not_compare_and_why(tmp_path):
    conv = lambda filters, size: {"type": "conv", "filters": filters, "kernel_size": size, "activation": "relu"}  # noqa: E731
    head = [{"type": "flatten"}, {"type": "dense", "units": 10}]
    path = write_experiments(
        tmp_path / "e.yaml",
        {
            "a": {**TINY_DIGITS, "layers": [conv(4, 3), *head]},
            "b": {**TINY_DIGITS, "layers": [conv(6, 5), *head]},
            "c": {**TINY_DIGITS, "layers": head},
        },
    )
    db = tmp_path / "r.db"
    assert run_cli("run", str(path), "-e", "a", "-e", "b", "-e", "c", "--db", str(db)).returncode == 0
    shapes = compare_json(db, "1", "2")
    assert shapes["layers"] == [] and shapes["layers_not_compared"] == {
        "conv1": "kernel shapes differ (run 1 [4, 1, 3, 3], run 2 [6, 1, 5, 5])"
    }
    assert compare_json(db, "1", "3")["layers_not_compared"] == {"conv1": "no snapshots in run(s) 3"}
    table = run_cli("compare", "1", "3", "--db", str(db)).stdout
    assert "conv1: filters not compared: no snapshots in run(s) 3" in table
