"""The frameworks' own MNIST examples, recorded as a user would record them, run as scripts (their models
are classes of ``__main__``): PyTorch's mnist/main.py (a subclassed ``Net``, Adadelta, StepLR) and
keras.io's simple MNIST convnet (Sequential, functional and subclassed), in examples/recording/.

Each records every conv layer at every step; the last snapshot, read back with the documented
sqlite3 recipe (not through convexp's store), equals the script's own final weights bit for bit;
a crash at step N leaves steps 0..N and ``failed``, Ctrl-C leaves ``interrupted``."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, readme_read_kernel, run_cli, sigint_as_a_terminal_delivers_it

EXAMPLES = REPO / "examples" / "recording"


def run_example(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        preexec_fn=sigint_as_a_terminal_delivers_it,  # --interrupt-at sends itself SIGINT
    )


def run_row(db) -> tuple:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT status, message, steps_completed FROM runs").fetchone()


def snapshot_steps(db, layer: str) -> list[int]:
    with sqlite3.connect(db) as connection:
        return [s for (s,) in connection.execute("SELECT step FROM kernel_snapshots WHERE layer = ? ORDER BY step", (layer,))]


def torch_example(tmp_path, mnist_dir, *args: str):
    pytest.importorskip("torch")
    db = tmp_path / "torch.db"
    result = run_example(
        "torch_mnist_main.py",
        *("--data", str(mnist_dir), "--db", str(db), "--epochs", "2", "--batches", "12"),
        *("--test-examples", "500", "--log-interval", "100", "--save-final", str(tmp_path / "final.npz"), *args),
    )
    return db, result


def test_pytorch_mnist_main_records_every_step_of_both_convs_bit_for_bit(tmp_path, mnist_dir):
    db, result = torch_example(tmp_path, mnist_dir)
    assert result.returncode == 0, result.stderr
    assert run_row(db) == ("finished", None, 24)
    read_kernel = readme_read_kernel()
    with np.load(tmp_path / "final.npz") as final:
        for layer in ("conv1", "conv2"):  # the attributes of the script's Net
            assert snapshot_steps(db, layer) == list(range(25))  # step 0 and 12 updates in each of 2 epochs
            assert read_kernel(str(db), 1, layer, 24).tobytes() == final[layer].tobytes()
    with sqlite3.connect(db) as connection:
        epoch_metrics = connection.execute(
            "SELECT step, name FROM metrics WHERE name LIKE 'test_%' ORDER BY step, name"
        ).fetchall()
    assert epoch_metrics == [(12, "test_accuracy"), (12, "test_loss"), (24, "test_accuracy"), (24, "test_loss")]
    assert run_cli("filters", "1", "--layer", "conv1", "--db", str(db)).returncode == 0


@pytest.mark.parametrize(
    ("flag", "status", "message"),
    [("--crash-at", "failed", "RuntimeError: a bad batch at step 7"), ("--interrupt-at", "interrupted", "interrupted (Ctrl-C)")],
)
def test_pytorch_mnist_main_ending_early_keeps_steps_0_to_n(tmp_path, mnist_dir, flag, status, message):
    db, result = torch_example(tmp_path, mnist_dir, flag, "7")
    assert result.returncode != 0
    assert run_row(db) == (status, message, 7)
    for layer in ("conv1", "conv2"):
        assert snapshot_steps(db, layer) == list(range(8))


def keras_example(tmp_path, mnist_dir, model: str, *args: str):
    pytest.importorskip("tensorflow")
    db = tmp_path / f"{model}.db"
    result = run_example(
        "keras_mnist_convnet.py",
        *("--data", str(mnist_dir), "--db", str(db), "--model", model, "--epochs", "2", "--examples", "1024"),
        *("--save-final", str(tmp_path / f"{model}.npz"), *args),
    )
    return db, result


@pytest.mark.parametrize("model", ["sequential", "functional", "subclassed"])
def test_keras_mnist_convnet_records_every_step_of_both_convs_bit_for_bit(tmp_path, mnist_dir, model):
    db, result = keras_example(tmp_path, mnist_dir, model)
    assert result.returncode == 0, result.stderr
    assert run_row(db) == ("finished", None, 16)  # 922 training images (validation_split=0.1), batch 128: 8 steps an epoch
    # fit builds a subclassed model in its first step: its weights exist from step 1 (said in a warning)
    first = 1 if model == "subclassed" else 0
    assert ("initial kernels (step 0) could not be recorded" in result.stderr) == (model == "subclassed")
    read_kernel = readme_read_kernel()
    with np.load(tmp_path / f"{model}.npz") as final:
        assert list(final) == ["conv2d", "conv2d_1"]  # Keras's own names for the two Conv2D layers
        for layer in final:
            assert snapshot_steps(db, layer) == list(range(first, 17))
            assert (
                read_kernel(str(db), 1, layer, 16).tobytes() == np.ascontiguousarray(final[layer].transpose(3, 2, 0, 1)).tobytes()
            )


@pytest.mark.parametrize(
    ("flag", "status", "message"),
    [("--crash-at", "failed", "RuntimeError: a bad batch at step 5"), ("--interrupt-at", "interrupted", "interrupted (Ctrl-C)")],
)
def test_keras_mnist_convnet_ending_early_keeps_steps_0_to_n(tmp_path, mnist_dir, flag, status, message):
    """Keras calls no callback when fit dies: the run is ended at interpreter exit, as the process ended."""
    db, result = keras_example(tmp_path, mnist_dir, "functional", flag, "5")
    assert result.returncode != 0
    assert run_row(db) == (status, message, 5)
    for layer in ("conv2d", "conv2d_1"):
        assert snapshot_steps(db, layer) == list(range(6))
