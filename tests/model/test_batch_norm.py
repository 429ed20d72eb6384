"""batch_norm: the numpy backend's layer against the formula and torch's own BatchNorm, its gradients against finite
differences, the parameter table against Keras's count, and a run whose deeper filters are analysed through it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convexp.model.layers import BatchNorm, Conv, Dense, Flatten, ReLU, plan
from tests.backends.test_numpy_backend import assert_gradients_match_finite_differences, small_network
from tests.conftest import TINY_DIGITS, readme_read_kernel, run_cli, write_experiments


def numpy_batch_norm(channels: int, momentum: float = 0.99, epsilon: float = 1e-3):
    from convexp_plugins.numpy_backend.model import BatchNormLayer

    (planned,) = plan(
        [BatchNorm(type="batch_norm", momentum=momentum, epsilon=epsilon), Flatten(type="flatten"), Dense(type="dense", units=2)],
        (channels, 5, 4),
        2,
    )[:1]
    return BatchNormLayer(planned, None)


def test_training_normalises_with_the_batch_and_moves_the_running_statistics_by_the_formula():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((6, 5, 4, 3)) * [1.0, 3.0, 0.5] + [0.0, 2.0, -1.0]).astype(np.float32)  # NHWC
    layer = numpy_batch_norm(3, momentum=0.9, epsilon=1e-3)
    layer.gamma[...] = [1.5, 0.5, 2.0]
    layer.beta[...] = [0.1, -0.2, 0.3]
    out = layer.forward(x, training=True)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 1, 2))
    var = ((x64 - mean) ** 2).mean(axis=(0, 1, 2))  # biased: 1/n
    expected = layer.gamma * (x64 - mean) / np.sqrt(var + 1e-3) + layer.beta
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.running_mean, 0.9 * 0 + 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(layer.running_var, 0.9 * 1 + 0.1 * var, rtol=1e-5)
    evaluated = layer.forward(x, training=False)  # evaluation: the running statistics, nothing moves
    expected_eval = layer.gamma * (x64 - layer.running_mean) / np.sqrt(layer.running_var + 1e-3) + layer.beta
    np.testing.assert_allclose(evaluated, expected_eval, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.running_mean, 0.1 * mean, rtol=1e-5)


def test_a_large_batch_far_from_zero_is_normalised_and_differentiated_as_in_float64():
    """The statistics come from float64 sums of x and x * x: a channel at 1000 +- 0.01 over 43,264 values (where
    float32 sums of x * x would lose the variance, and scaling x before subtracting the mean would cancel its
    digits) and one at 0 +- 1 agree with float64 arithmetic on the same float32 inputs, within what float32's
    x - mean allows (the mean rounds to 3e-5, a third of a percent of that channel's 0.01)."""
    rng = np.random.default_rng(1)
    shape = (64, 26, 26, 2)
    x = (rng.standard_normal(shape) * [0.01, 1.0] + [1000.0, 0.0]).astype(np.float32)
    grad = rng.standard_normal(shape).astype(np.float32)
    layer = numpy_batch_norm(2, epsilon=1e-8)
    layer.gamma[...] = [2.0, 0.5]
    out = layer.forward(x, training=True)
    dx = layer.backward(grad)
    x64, g64, gamma = x.astype(np.float64), grad.astype(np.float64), layer.gamma.astype(np.float64)
    axes = (0, 1, 2)
    mean = x64.mean(axis=axes)
    normalised = (x64 - mean) / np.sqrt(((x64 - mean) ** 2).mean(axis=axes) + 1e-8)
    np.testing.assert_allclose(out, gamma * normalised + layer.beta, rtol=0, atol=1e-2)
    expected_dx = (
        gamma
        / np.sqrt(((x64 - mean) ** 2).mean(axis=axes) + 1e-8)
        * (g64 - g64.mean(axis=axes) - normalised * (g64 * normalised).mean(axis=axes))
    )
    scale = np.abs(expected_dx).max(axis=axes)
    assert (np.abs(dx - expected_dx).max(axis=axes) / scale).max() < 1e-2
    np.testing.assert_allclose(layer.grad_gamma, (g64 * normalised).sum(axis=axes), rtol=1e-3, atol=0.5)
    np.testing.assert_allclose(layer.grad_beta, g64.sum(axis=axes), rtol=1e-5, atol=1e-3)


def test_the_numpy_layer_matches_torch_s_batch_norm_and_its_gradient():
    import torch

    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6, 5, 3)) * 2 + 1  # NHWC, float64
    upstream = rng.standard_normal(x.shape)
    layer = numpy_batch_norm(3, momentum=0.8, epsilon=1e-5)
    layer.gamma, layer.beta = np.array([1.2, 0.7, -0.4]), np.array([0.0, 0.5, 1.0])
    layer.running_mean, layer.running_var = np.zeros(3), np.ones(3)
    out = layer.forward(x, training=True)
    grad_x = layer.backward(upstream.copy())

    reference = torch.nn.BatchNorm2d(3, eps=1e-5, momentum=1 - 0.8, dtype=torch.float64)  # torch's momentum is 1 - ours
    with torch.no_grad():
        reference.weight.copy_(torch.tensor(layer.gamma))
        reference.bias.copy_(torch.tensor(layer.beta))
    x_torch = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    y = reference(x_torch)
    y.backward(torch.tensor(upstream.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(out, y.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_x, x_torch.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grad_gamma, reference.weight.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(layer.grad_beta, reference.bias.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(layer.running_mean, reference.running_mean.numpy(), rtol=1e-12)
    # torch moves its running variance towards the unbiased variance; convexp (as Keras) the biased one
    n = x.size // 3
    np.testing.assert_allclose(
        layer.running_var, 0.8 + 0.2 * (reference.running_var.numpy() - 0.8) / 0.2 * (n - 1) / n, rtol=1e-12
    )


def test_a_network_with_batch_norm_after_conv_and_dense_has_the_gradient_of_finite_differences():
    network = small_network(
        layers=[
            Conv(type="conv", filters=3, kernel_size=3, padding="same"),
            BatchNorm(type="batch_norm"),
            ReLU(type="relu"),
            Conv(type="conv", filters=4, kernel_size=3, stride=2),
            BatchNorm(type="batch_norm", momentum=0.5),
            Flatten(type="flatten"),
            Dense(type="dense", units=6, activation="tanh"),
            BatchNorm(type="batch_norm", epsilon=1e-5),
            Dense(type="dense", units=3),
        ]
    )
    assert_gradients_match_finite_differences(network)


def test_the_parameter_table_counts_batch_norm_as_keras_s_summary_does(tmp_path):
    import os

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Flatten(),
            keras.layers.Dense(16),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(10),
        ]
    )
    non_trainable = sum(int(np.prod(v.shape)) for v in model.non_trainable_weights)
    spec = {
        **TINY_DIGITS,
        "layers": [
            {"type": "conv", "filters": 4, "kernel_size": 3},
            {"type": "batch_norm"},
            {"type": "relu"},
            {"type": "flatten"},
            {"type": "dense", "units": 16},
            {"type": "batch_norm"},
            {"type": "dense", "units": 10},
        ],
    }
    result = run_cli("validate", str(write_experiments(tmp_path / "e.yaml", {"bn": spec})))
    assert result.returncode == 0, result.stderr
    total = next(line.split() for line in result.stdout.splitlines() if line.strip().startswith("total"))
    assert int(total[-1]) == model.count_params() and int(total[-2]) == non_trainable
    assert f"trainable: {model.count_params() - non_trainable}, non-trainable: {non_trainable}" in result.stdout
    row = next(line.split() for line in result.stdout.splitlines() if line.strip().startswith("batch_norm1"))
    assert row[-4:] == ["4", "4", "8", "16"]  # gamma, beta, running mean and variance: 4 channels each


def test_a_run_records_batch_norm_and_the_analysis_replays_it_as_at_test_time(tmp_path):
    import torch
    import torch.nn.functional as F

    spec = {
        **TINY_DIGITS,
        "layers": [
            {"type": "conv", "filters": 4, "kernel_size": 3},
            {"type": "batch_norm", "momentum": 0.5},
            {"type": "relu"},
            {"type": "conv", "filters": 6, "kernel_size": 3},
            {"type": "flatten"},
            {"type": "dense", "units": 10},
        ],
        "max_steps": 6,
        "snapshots": {"every": 3},
    }
    db = tmp_path / "r.db"
    ran = run_cli("run", str(write_experiments(tmp_path / "e.yaml", {"bn": spec})), "--db", str(db))
    assert ran.returncode == 0, ran.stderr
    patches = run_cli("filters", "1", "--patches", "--layer", "conv2", "--top", "1", "--format", "json", "--db", str(db))
    assert patches.returncode == 0, patches.stderr
    # the same response recomputed with torch's own ops from the stored rows (kernels read with the documented recipe)
    from convexp.store import Store

    read_kernel = readme_read_kernel()
    kernels = {layer: read_kernel(str(db), 1, layer, 6) for layer in ("conv1", "batch_norm1", "conv2")}
    with Store(str(db)) as store:
        biases = {layer: store.snapshot(1, layer, 6).bias_array for layer in ("conv1", "conv2")}
        assert store.snapshot(1, "batch_norm1", 6).bias_array is None
        assert store.snapshot_layers(1) == ["conv1", "conv2"]  # the filters; batch_norm1's rows are not filters
    assert kernels["batch_norm1"].shape == (4, 4)
    gamma, beta, mean, var = (torch.tensor(row, dtype=torch.float64) for row in kernels["batch_norm1"])
    assert not np.allclose(kernels["batch_norm1"][2], 0) and not np.allclose(kernels["batch_norm1"][3], 1)  # moved
    conv1 = (kernels["conv1"], biases["conv1"])
    conv2 = (kernels["conv2"], biases["conv2"])
    from convexp.datasets import load_dataset

    images = torch.tensor(load_dataset("digits").test_images, dtype=torch.float64)
    for found in json.loads(patches.stdout)["filters"]:
        patch = found["patches"][0]
        x = images[patch["image"] : patch["image"] + 1]
        x = F.conv2d(x, torch.tensor(conv1[0], dtype=torch.float64), torch.tensor(conv1[1], dtype=torch.float64))
        x = F.relu(F.batch_norm(x, mean, var, gamma, beta, training=False, eps=1e-3))
        out = F.conv2d(x, torch.tensor(conv2[0], dtype=torch.float64), torch.tensor(conv2[1], dtype=torch.float64))
        assert patch["response"] == pytest.approx(float(out[0, found["filter"], patch["row"], patch["col"]]), rel=1e-5)
    listed = run_cli("filters", "1", "--layer", "batch_norm1", "--db", str(db))
    assert listed.returncode != 0
