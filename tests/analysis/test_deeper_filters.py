"""What deeper filters respond to, and filters of any odd size.

Checked against independent references: scipy's correlation for the replayed network and the
top patches, finite differences for the gradient of activation maximization, and synthetic
Gabor and Sobel kernels whose parameters are known.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from math import comb
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from convexp.analysis.filters import analyse_layer, best_operator, operator_bank
from convexp.analysis.gabor import fit_gabor, gabor
from convexp.analysis.network import RecordedNetwork, conv_layers_up_to, receptive_field, responses, window_response
from convexp.errors import ConvexpError
from convexp.model.layers import Conv, Dense, Flatten, MaxPool, plan
from tests.analysis.test_analysis import assert_real_picture
from tests.conftest import mnist_folder, run_cli, stored_kernel

# --- filters of any odd size ----------------------------------------------------------------------


def sobel(size: int) -> np.ndarray:
    """The size x size Sobel operator for a left-to-right edge: binomial smoothing down, the binomial
    derivative across (5x5: rows of [-1, -2, 0, 2, 1] weighted 1, 4, 6, 4, 1)."""
    smooth = np.array([comb(size - 1, i) for i in range(size)], dtype=np.float64)
    derivative = np.convolve([1, 0, -1], [comb(size - 3, i) for i in range(size - 2)])[::-1]
    return np.outer(smooth, derivative)


def test_sobel_helper_is_the_textbook_operator():
    np.testing.assert_array_equal(sobel(3), [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    np.testing.assert_array_equal(sobel(5)[2], [-6, -12, 0, 12, 6])


@pytest.mark.parametrize("size", [5, 7, 9])
def test_sobel_of_any_size_is_recognised_as_an_edge_with_its_direction(size):
    k = sobel(size)
    # edge_<angle>: brighter towards <angle> (0 = right, 90 = up); k.T is brighter downwards
    cases = [(k, "edge_0", 0.0), (-k, "-edge_0", 0.0), (k.T, "-edge_90", 90.0), (k.T[::-1], "edge_90", 90.0)]
    layer = analyse_layer(np.stack([c[0] for c in cases])[:, None], step=0)
    for (_, operator, angle), info in zip(cases, layer.filters):
        assert info.best_operator == operator and info.correlation > 0.9 and info.edge_like
        assert abs(info.orientation - angle) < 1.0
        assert info.gabor is not None and info.gabor.r2 > 0.99
        assert min(abs(info.gabor.orientation - angle), 180 - abs(info.gabor.orientation - angle)) < 2.0
        # an edge is an odd Gabor: phase 90 or 270 degrees
        assert min(abs(info.gabor.phase - 90), abs(info.gabor.phase - 270)) < 10
    assert layer.edge_share == 1.0


def _angle_error(a: float, b: float) -> float:
    return min(abs(a - b) % 180, 180 - abs(a - b) % 180)


@pytest.mark.parametrize("size", [5, 7, 9])
@pytest.mark.parametrize("orientation", [10.0, 45.0, 75.0, 120.0, 160.0])
@pytest.mark.parametrize("wavelength_share", [0.45, 0.9])
def test_gabor_fit_recovers_the_parameters_of_a_synthetic_gabor(size, orientation, wavelength_share):
    wavelength, phase = max(2.5, wavelength_share * size), 60.0
    kernel = gabor((size, size), orientation, wavelength, phase, sigma=size / 4, aspect=1.0, amplitude=2.0)
    fit = fit_gabor(kernel)
    assert fit.r2 > 0.999
    assert _angle_error(fit.orientation, orientation) < 1.0
    assert fit.wavelength == pytest.approx(wavelength, rel=0.02)
    assert abs((fit.phase - phase + 180) % 360 - 180) < 3.0
    assert fit.sigma == pytest.approx(size / 4, rel=0.05) and fit.amplitude == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize("size", [(5, 5), (7, 7), (5, 9)])
def test_the_gabor_fits_jacobian_is_the_models_slope(size):
    """The fit's analytic Jacobian against scipy's central differences of the model, at random parameters."""
    from scipy.optimize._numdiff import approx_derivative

    from convexp.analysis.gabor import _jacobian, _model

    rng = np.random.default_rng(7)
    for _ in range(30):
        params = rng.normal(size=9)
        params[4] = rng.uniform(-1.0, 1.5)  # log sigma: envelopes from a third of a pixel to 4.5 pixels
        numeric = approx_derivative(lambda p: _model(p, size).ravel(), params, method="3-point")
        assert np.allclose(_jacobian(params, size), numeric, rtol=1e-6, atol=1e-7 * max(1.0, np.abs(numeric).max()))


def test_gabor_fit_with_noise_and_on_noise():
    rng = np.random.default_rng(1)
    kernel = gabor((7, 7), 30.0, 4.0, 0.0, sigma=1.8)
    noisy = kernel + 0.05 * np.abs(kernel).max() * rng.standard_normal(kernel.shape)
    fit = fit_gabor(noisy)
    assert fit.r2 > 0.95 and _angle_error(fit.orientation, 30.0) < 5.0 and fit.wavelength == pytest.approx(4.0, rel=0.1)
    assert np.median([fit_gabor(rng.standard_normal((5, 5))).r2 for _ in range(6)]) < 0.8


@pytest.mark.parametrize("size", [5, 7, 11])
def test_every_generated_operator_matches_itself_and_random_filters_rarely_are_edges(size):
    bank = operator_bank(size)
    assert len(bank) == 20 and all(k.shape == (size, size) for k in bank.values())
    for name, kernel in bank.items():
        assert best_operator(kernel) == (name, pytest.approx(1.0))
    noise = np.random.default_rng(0).uniform(-1, 1, size=(300, 1, size, size))
    assert analyse_layer(noise, 0, gabor=False).edge_share < 0.05


def test_filters_of_even_or_non_square_size_are_refused():
    for shape in [(2, 1, 4, 4), (2, 1, 3, 5), (2, 1, 1, 1)]:
        with pytest.raises(ConvexpError, match="odd size"):
            analyse_layer(np.zeros(shape), 0)


def test_3x3_analysis_has_no_gabor_fit():
    assert all(f.gabor is None for f in analyse_layer(np.random.default_rng(0).standard_normal((4, 2, 3, 3)), 0).filters)


# --- the recorded network replayed in numpy -----------------------------------------------------------


def small_network(seed: int = 0) -> RecordedNetwork:
    """conv1 5x5 'same' stride 2 + ReLU, maxpool 2, conv2 3x3 valid (2 input channels): random weights."""
    layers = [
        Conv(type="conv", filters=4, kernel_size=5, stride=2, padding="same", activation="relu"),
        MaxPool(type="maxpool", pool_size=2),
        Conv(type="conv", filters=3, kernel_size=3, activation="relu"),
        Flatten(type="flatten"),
        Dense(type="dense", units=10),
    ]
    planned = plan(layers, (2, 21, 21), 10)
    rng = np.random.default_rng(seed)
    weights = {
        "conv1": (rng.standard_normal((4, 2, 5, 5)), rng.standard_normal(4) * 0.1),
        "conv2": (rng.standard_normal((3, 4, 3, 3)), rng.standard_normal(3) * 0.1),
    }
    return RecordedNetwork(0, 0, conv_layers_up_to(planned, "conv2"), weights)


def scipy_responses(network: RecordedNetwork, images: np.ndarray) -> np.ndarray:
    """conv2's responses computed independently: scipy.signal.correlate per channel, numpy pooling."""
    from scipy.signal import correlate

    k1, b1 = network.weights["conv1"]
    k2, b2 = network.weights["conv2"]
    # 'same' with stride 2 on 21 pixels: 11 outputs, total padding (11 - 1) * 2 + 5 - 21 = 4, split 2 / 2
    x = np.pad(images.astype(np.float64), ((0, 0), (0, 0), (2, 2), (2, 2)))
    conv1 = np.stack([sum(correlate(x[:, c], k[c][None], mode="valid") for c in range(2)) for k in k1], axis=1)
    conv1 = np.maximum(conv1[:, :, ::2, ::2] + b1[None, :, None, None], 0)  # (N, 4, 11, 11)
    pooled = conv1[:, :, :10, :10].reshape(len(x), 4, 5, 2, 5, 2).max(axis=(3, 5))
    return np.stack(
        [sum(correlate(pooled[:, c], k[c][None], mode="valid") for c in range(4)) + b for k, b in zip(k2, b2)], axis=1
    )


def test_replayed_network_agrees_with_scipy():
    network = small_network()
    images = np.random.default_rng(3).uniform(0, 1, size=(7, 2, 21, 21)).astype(np.float32)
    ours = responses(network, images, batch=3)
    assert ours.shape == (7, 3, 3, 3)
    np.testing.assert_allclose(ours, scipy_responses(network, images), rtol=1e-4, atol=1e-4)


def test_receptive_field_geometry():
    # conv 5x5 stride 2 'same' (padding 2 before): size 5, jump 2, offset -2; pool 2: size 7, jump 4;
    # conv 3x3: size 7 + 2 * 4 = 15, jump 4
    field = receptive_field(small_network().layers)
    assert (field.size, field.jump, field.offset) == ((15, 15), (4, 4), (-2, -2))
    keras = plan(
        [
            Conv(type="conv", filters=32),
            MaxPool(type="maxpool"),
            Conv(type="conv", filters=64),
            Flatten(type="flatten"),
            Dense(type="dense", units=10),
        ],
        (1, 28, 28),
        10,
    )
    assert receptive_field(conv_layers_up_to(keras, "conv1")).size == (3, 3)
    assert receptive_field(conv_layers_up_to(keras, "conv2")) == receptive_field(keras[:3])
    assert receptive_field(keras[:3]).size == (8, 8) and receptive_field(keras[:3]).jump == (2, 2)


def test_a_unit_sees_exactly_its_window():
    """The window alone gives the unit's response, and nothing outside the window changes it."""
    network = small_network(1)
    field = receptive_field(network.layers)
    rng = np.random.default_rng(4)
    image = rng.uniform(0, 1, size=(2, 21, 21))
    full = responses(network, image[None].astype(np.float32))[0]
    row, col = 1, 1  # an interior unit: window rows 2..16
    top, left = field.window(row, col)
    assert (top, left) == (2, 2)
    window = image[:, top : top + 15, left : left + 15]
    for f in range(3):
        value, _ = window_response(network, window, f)
        assert value == pytest.approx(full[f, row, col], rel=1e-4, abs=1e-4)
    changed = rng.uniform(0, 1, size=image.shape)
    changed[:, top : top + 15, left : left + 15] = window
    np.testing.assert_allclose(responses(network, changed[None].astype(np.float32))[0][:, row, col], full[:, row, col], rtol=1e-5)


@pytest.mark.parametrize("filter_index", [0, 1, 2])
def test_window_gradient_matches_finite_differences(filter_index):
    network = small_network(2)
    window = np.random.default_rng(5).uniform(0, 1, size=(2, 15, 15))
    _, grad = window_response(network, window, filter_index)
    numeric = np.zeros_like(window)
    eps = 1e-6
    for index in np.ndindex(window.shape):
        up, down = window.copy(), window.copy()
        up[index] += eps
        down[index] -= eps
        numeric[index] = (window_response(network, up, filter_index)[0] - window_response(network, down, filter_index)[0]) / (
            2 * eps
        )
    assert np.abs(grad).max() > 0
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


# --- on a real one-epoch MNIST run -----------------------------------------------------------------


def _conv_weights(db: Path, layer: str, step: int) -> tuple[np.ndarray, np.ndarray]:
    """A layer's kernel and bias read straight from the database file (not through convexp's store)."""
    with sqlite3.connect(db) as connection:
        (bias,) = connection.execute(
            "SELECT bias FROM kernel_snapshots WHERE run_id = 1 AND layer = ? AND step = ?", (layer, step)
        ).fetchone()
    return stored_kernel(db, 1, layer, step).astype(np.float64), np.frombuffer(bias, "<f4").astype(np.float64)


def valid_correlation(images: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """Cross-correlation by its definition, out[n, y, x, f] = sum over (c, i, j) of images[n, y + i, x + j, c] *
    kernels[f, c, i, j] ('valid': no padding, stride 1; images channels last): every window laid out as a row
    and multiplied by the kernels as columns, a block of images at a time (all windows at once would be GBs)."""
    columns = kernels.reshape(len(kernels), -1).T  # (C * kh * kw, F), in the windows' (c, i, j) order
    blocks = []
    for start in range(0, len(images), 250):
        windows = sliding_window_view(images[start : start + 250], kernels.shape[2:], axis=(1, 2))  # (n, rows, cols, C, kh, kw)
        n, rows, cols = windows.shape[:3]
        blocks.append((windows.reshape(n * rows * cols, -1) @ columns).reshape(n, rows, cols, -1))
    return np.concatenate(blocks)


def max_pool_2x2(images: np.ndarray) -> np.ndarray:
    """2x2 max pooling with stride 2, channels last: the largest of each window's four pixels."""
    return np.maximum.reduce([images[:, i::2, j::2] for i in (0, 1) for j in (0, 1)])


def test_top_patches_agree_with_an_independent_recomputation(mnist_keras_run):
    from scipy.signal import correlate

    from convexp.datasets import load_dataset

    result = run_cli(
        "filters",
        "1",
        "--layer",
        "conv2",
        "--patches",
        "--top",
        "5",
        "--format",
        "json",
        "--db",
        str(mnist_keras_run),
        "--data-dir",
        str(mnist_folder()),
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["images_searched"] == 10000 and found["receptive_field"]["size"] == [8, 8] and len(found["filters"]) == 64
    step = found["step"]
    test = load_dataset("mnist", mnist_folder()).test_images[:, 0].astype(np.float64)  # (10000, 28, 28)
    k1, b1 = _conv_weights(mnist_keras_run, "conv1", step)
    k2, b2 = _conv_weights(mnist_keras_run, "conv2", step)
    chosen = [0, 31, 63]
    # conv1, its ReLU and the pooling a block of images at a time: conv1's whole output would be 1.7 GB
    blocks = [test[start : start + 500, :, :, None] for start in range(0, len(test), 500)]
    pooled = np.concatenate([max_pool_2x2(np.maximum(valid_correlation(x, k1) + b1, 0)) for x in blocks])  # (N, 13, 13, 32)
    responses = valid_correlation(pooled, k2[chosen]) + b2[chosen]  # (N, 11, 11, 3)
    # The reference is itself held to scipy.signal.correlate, channel by channel, on a slice of the images.
    few = test[:50]
    by_scipy = np.stack([correlate(few, k[0][None], mode="valid") + b for k, b in zip(k1, b1)], axis=-1)
    assert np.allclose(valid_correlation(few[..., None], k1) + b1, by_scipy, rtol=1e-12, atol=1e-12)
    for n, f in enumerate(chosen):
        by_scipy = sum(correlate(pooled[:50, :, :, c], k2[f, c][None], mode="valid") for c in range(32)) + b2[f]
        assert np.allclose(responses[:50, :, :, n], by_scipy, rtol=1e-12, atol=1e-12)
    for n, f in enumerate(chosen):
        response = responses[..., n]  # (N, 11, 11)
        best = response.reshape(len(test), -1).max(axis=1)
        expected = np.argsort(-best, kind="stable")[:5]
        patches = found["filters"][f]["patches"]
        assert [p["image"] for p in patches] == expected.tolist()
        for p in patches:
            assert p["response"] == pytest.approx(best[p["image"]], rel=1e-4)
            assert p["response"] == pytest.approx(response[p["image"], p["row"], p["col"]], rel=1e-4)
            assert p["activation"] == max(p["response"], 0.0)  # conv2 has a ReLU
            assert (p["top"], p["left"]) == (2 * p["row"], 2 * p["col"])  # jump 2, no padding


@pytest.mark.parametrize("kind", ["patches", "maximize"])
@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_pictures_of_what_filters_respond_to(mnist_keras_run, tmp_path, kind, layer):
    out = tmp_path / f"{kind}-{layer}.png"
    result = run_cli(
        "plot", kind, "1", "--layer", layer, "--out", str(out), "--db", str(mnist_keras_run), "--data-dir", str(mnist_folder())
    )
    assert result.returncode == 0, result.stderr
    assert_real_picture(out)


def test_maximized_input_beats_every_test_patch(mnist_keras_run):
    from convexp.analysis.maximize import maximize_layer
    from convexp.analysis.network import load_network
    from convexp.analysis.patches import top_patches
    from convexp.datasets import load_dataset
    from convexp.store import Store

    data = load_dataset("mnist", mnist_folder())
    with Store(str(mnist_keras_run), must_exist=True, read_only=True) as store:
        run = store.get_run(1)
        networks = [load_network(store, run, layer) for layer in ("conv1", "conv2")]
    for network in networks:
        best_patch = [patches[0].response for patches in top_patches(network, data.test_images, data.test_labels, 1).filters]
        found = maximize_layer(network)
        for preferred, patch in zip(found, best_patch):
            assert preferred.pixels.min() >= 0 and preferred.pixels.max() <= 1
            assert preferred.response >= patch - 1e-4 * max(1.0, abs(patch)), (network.target.name, preferred.filter)
        if network.target.name == "conv2":  # beyond the data: most conv2 filters like a window no digit has
            assert sum(p.response > b + 1e-3 for p, b in zip(found, best_patch)) >= len(found) // 2


def test_a_run_is_analysed_and_drawn_after_its_backend_is_gone(mnist_keras_run, tmp_path):
    db = tmp_path / "orphan.db"
    shutil.copy(mnist_keras_run, db)
    with sqlite3.connect(db) as connection:
        spec = json.loads(connection.execute("SELECT spec FROM runs WHERE id = 1").fetchone()[0])
        spec["backend"] = "uninstalled"
        connection.execute("UPDATE runs SET backend = 'uninstalled', spec = ? WHERE id = 1", (json.dumps(spec),))
    data = ["--data-dir", str(mnist_folder())]
    no_plugins = {"CONVEXP_LOAD_PLUGINS": ""}  # not one backend plugin is loaded
    for args in [["show", "1"], ["filters", "1"], ["compare", "1", "1"]]:
        result = run_cli(*args, "--db", str(db), env=no_plugins)
        assert result.returncode == 0, (args, result.stderr)
    out = tmp_path / "maximize.png"
    result = run_cli("plot", "maximize", "1", "--layer", "conv1", "--out", str(out), "--db", str(db), *data, env=no_plugins)
    assert result.returncode == 0, result.stderr
    # the report draws the filters, their evolution, histogram and feature maps of conv1 and conv2's top patches
    # (replaying the network): each picture drawn, none "not drawn"
    report = run_cli("report", "1", "--out", str(tmp_path / "r.html"), "--db", str(db), *data, env=no_plugins)
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "r.html").read_text()
    assert "conv2: each filter" in text and "a test image through conv1" in text and "not drawn" not in text


def test_patches_need_every_layer_below_recorded(tmp_path):
    """A run that recorded only conv2 cannot replay conv1: the error says what to record."""
    from tests.conftest import TINY_DIGITS, write_experiments

    body = {
        **TINY_DIGITS,
        "layers": [
            {"type": "conv", "filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"},
            {"type": "conv", "filters": 4, "kernel_size": 3, "activation": "relu"},
            {"type": "flatten"},
            {"type": "dense", "units": 10},
        ],
        "snapshots": {"every": 5, "layers": ["conv2"]},
    }
    path = write_experiments(tmp_path / "e.yaml", {"only2": body})
    db = tmp_path / "r.db"
    assert run_cli("run", str(path), "--db", str(db)).returncode == 0
    result = run_cli("plot", "patches", "1", "--layer", "conv2", "--out", str(tmp_path / "p.png"), "--db", str(db))
    assert result.returncode != 0
    assert "not conv1, which feeds it" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    bad = run_cli("plot", "patches", "1", "--layer", "dense1", "--out", str(tmp_path / "p.png"), "--db", str(db))
    assert bad.returncode != 0 and "filters belong to conv layers (conv1, conv2)" in bad.stderr
    assert not (tmp_path / "p.png").exists()
