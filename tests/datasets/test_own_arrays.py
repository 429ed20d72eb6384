"""Your own images as a dataset (issue 30): `dataset: {path: FILE.npz}`, validated array by array, trained on, analysed."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from tests.conftest import TINY_DIGITS, run_cli, sha256, write_experiments

SMALL = {
    **TINY_DIGITS,
    "layers": [
        {"type": "conv", "filters": 4, "kernel_size": 3, "activation": "relu"},
        {"type": "global_avgpool"},
        {"type": "dense", "units": 4},
    ],
}


def colour_bars(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB images (N, H, W, C), uint8, whose label is the colour (green or blue) and direction of a bright bar."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, count)
    images = rng.integers(0, 30, (count, 10, 10, 3), dtype=np.uint8)
    for n, label in enumerate(labels):
        where = rng.integers(1, 9)
        if label // 2:
            images[n, where, :, label % 2 + 1] = 255  # a horizontal bar
        else:
            images[n, :, where, label % 2 + 1] = 255  # a vertical one
    return images, labels


def test_an_npz_of_your_own_trains_and_is_analysed(tmp_path):
    x_train, y_train = colour_bars(400, 0)
    x_test, y_test = colour_bars(100, 1)
    np.savez(tmp_path / "mine.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    spec = {**SMALL, "dataset": {"path": "mine.npz"}, "epochs": 10, "optimizer": {"name": "adam", "learning_rate": 0.02}}
    experiments = write_experiments(tmp_path / "experiments.yaml", {"mine": spec})
    db = tmp_path / "r.db"
    validated = run_cli("validate", str(experiments))
    assert validated.returncode == 0, validated.stderr
    assert "input[3, 10, 10] -> conv1[4, 8, 8]" in validated.stdout  # channels last in the file, first in convexp
    ran = run_cli("run", str(experiments), "--db", str(db), cwd=tmp_path.parent)  # the path is the file's, not the cwd's
    assert ran.returncode == 0, ran.stderr
    dataset, spec = sqlite3.connect(db).execute("SELECT dataset, spec FROM runs").fetchone()
    assert dataset == f"npz:{(tmp_path / 'mine.npz').resolve()}" and json.loads(spec)["dataset"] == dataset
    kernel = sqlite3.connect(db).execute("SELECT shape FROM kernel_snapshots WHERE step = 0").fetchone()[0]
    assert json.loads(kernel) == [4, 3, 3, 3]  # three input channels: the colour filters of conv1
    shown = json.loads(run_cli("runs", "--format", "json", "--db", str(db)).stdout)
    assert shown[0]["test_accuracy"] > 0.5  # four kinds of bars: well above the 25% of guessing
    patches = run_cli("filters", "1", "--patches", "--top", "2", "--format", "json", "--db", str(db))
    assert patches.returncode == 0, patches.stderr


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x_test": None}, "holds no 'test_images' (or 'x_test') array"),
        ({"y_train": np.array([0, 1, 2, 5]), "x_train": np.zeros((5, 8, 8))}, "'y_train' has 4 labels for 5 images"),
        ({"y_train": np.array([0, -1, 2, 1])}, "'y_train' holds the label -1; labels count from 0"),
        ({"y_train": np.array([0.0, 1.0, 2.0, 1.0])}, "'y_train' is float64 of shape [4]; labels are one whole number per image"),
        (
            {"x_train": np.zeros((4, 8, 8, 2))},
            "'x_train' has shape [4, 8, 8, 2]; images are (N, H, W), (N, C, H, W) or (N, H, W, C)",
        ),
        ({"x_test": np.full((2, 8, 8), np.nan)}, "'x_test' holds NaN or infinity"),
        ({"x_test": np.zeros((2, 9, 8))}, "train images are [1, 8, 8] (C, H, W), test images [1, 9, 8]"),
        ({"y_train": np.zeros(4, int), "y_test": np.zeros(2, int)}, "every label is 0; a classifier needs two classes or more"),
    ],
)
def test_a_bad_file_is_one_line_naming_it_and_the_array(tmp_path, arrays, message):
    good = {
        "x_train": np.zeros((4, 8, 8)),
        "y_train": np.array([0, 1, 2, 3]),
        "x_test": np.zeros((2, 8, 8)),
        "y_test": np.array([0, 1]),
    }
    np.savez(tmp_path / "bad.npz", **{k: v for k, v in {**good, **arrays}.items() if v is not None})  # None: left out
    experiments = write_experiments(tmp_path / "experiments.yaml", {"bad": {**SMALL, "dataset": {"path": "bad.npz"}}})
    db = tmp_path / "r.db"
    result = run_cli("run", str(experiments), "--db", str(db))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"field 'dataset': {(tmp_path / 'bad.npz').resolve()}: " in result.stderr and message in result.stderr
    assert sha256(db) is None  # refused before anything was written
