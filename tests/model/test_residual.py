"""Residual blocks: planning, the numpy backend's forward against torch's functional ops and its gradients against
finite differences, and the analysis replaying a network through them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convexp.analysis.plan_text import format_parameter_table
from convexp.errors import ShapeError
from convexp.model.layers import BatchNorm, Conv, Dense, Flatten, GlobalAvgPool, Residual, flat, plan
from tests.backends.test_numpy_backend import assert_gradients_match_finite_differences, numeric_grad, small_network
from tests.conftest import TINY_DIGITS, run_cli, write_experiments


def block(*layers, shortcut="identity", activation="none"):
    return Residual(type="residual", layers=list(layers), shortcut=shortcut, activation=activation)


def conv(filters, **options):
    return Conv(type="conv", filters=filters, kernel_size=options.pop("kernel_size", 3), padding="same", **options)


def test_blocks_are_planned_with_their_layers_named_in_sequence_and_a_shortcut_that_fits():
    planned = plan(
        [
            conv(4),
            block(conv(8, stride=2), conv(8), shortcut="conv", activation="relu"),
            block(conv(8), BatchNorm(type="batch_norm")),
            GlobalAvgPool(type="global_avgpool"),
            Dense(type="dense", units=3),
        ],
        (1, 9, 9),
        3,
    )
    assert [p.name for p in flat(planned)] == [
        "conv1",
        "residual1",
        "conv2",
        "conv3",
        "residual1_shortcut",
        "residual2",
        "conv4",
        "batch_norm1",
        "global_avgpool1",
        "dense1",
    ]
    assert [p.index for p in flat(planned)] == list(range(1, 11))  # every layer its own seed stream
    first = planned[1]
    assert first.output_shape == (8, 5, 5) and first.shortcut.kernel_shape == (8, 4, 1, 1)
    assert first.shortcut.layer.stride == 2  # (9 - 1) // 2 + 1 = 5
    table = "\n".join(format_parameter_table(planned))
    assert "\n  conv2 " in table and "\n  residual1_shortcut  8x5x5   8x4x1x1       32       8" in table


@pytest.mark.parametrize(
    "layers, message",
    [
        ([block(conv(8))], r"layer 1 \(residual1\): its layers turn \[4, 9, 9\] into \[8, 9, 9\], so the identity"),
        (
            [block(Conv(type="conv", filters=4, kernel_size=3), shortcut="conv")],
            "no 1x1 conv stride turns 9x9 into its layers' 7x7",
        ),
        ([block(block(conv(4)))], "a residual block's layers cannot hold another residual block"),
        ([block(conv(4, groups=3))], r"layer 1\.1 \(conv1\): groups = 3 must divide"),
    ],
)
def test_blocks_that_cannot_add_up_are_refused_naming_the_layer(layers, message):
    with pytest.raises(ShapeError, match=message):
        plan([*layers, Flatten(type="flatten"), Dense(type="dense", units=2)], (4, 9, 9), 2)


RESIDUAL_NETWORK = [
    conv(3, activation="tanh"),
    block(conv(4, stride=2, activation="relu"), conv(4), shortcut="conv", activation="relu"),
    block(conv(4), BatchNorm(type="batch_norm"), activation="tanh"),
    Flatten(type="flatten"),
    Dense(type="dense", units=3),
]


def test_a_network_of_residual_blocks_has_the_gradient_of_finite_differences():
    assert_gradients_match_finite_differences(small_network(layers=RESIDUAL_NETWORK))


def test_the_numpy_forward_is_torch_s_functional_ops_on_the_same_weights():
    import torch
    import torch.nn.functional as F

    network = small_network(layers=RESIDUAL_NETWORK)
    x = np.random.default_rng(2).standard_normal((3, 9, 9, 2))
    logits = network.forward(x, training=False)
    layers = {layer.name: layer for layer in network.all_layers}

    def conv2d(name, t, stride=1, padding=1):
        layer = layers[name]
        kernel = torch.tensor(layer.kernel.transpose(3, 2, 0, 1))
        return F.conv2d(t, kernel, torch.tensor(layer.bias), stride=stride, padding=padding)

    bn = layers["batch_norm1"]
    t = torch.tensor(x.transpose(0, 3, 1, 2))
    t = torch.tanh(conv2d("conv1", t))  # (3, 9, 9)
    # stride 2, same padding on 9: TensorFlow pads 1 before and 1 after, as torch's padding=1 does here
    body = conv2d("conv3", F.relu(conv2d("conv2", t, stride=2)))
    t = F.relu(body + conv2d("residual1_shortcut", t, stride=2, padding=0))
    normalised = F.batch_norm(
        conv2d("conv4", t),
        *(torch.tensor(a) for a in (bn.running_mean, bn.running_var, bn.gamma, bn.beta)),
        training=False,
        eps=1e-3,
    )
    t = torch.tanh(normalised + t)
    dense = layers["dense1"]
    expected = t.permute(0, 2, 3, 1).reshape(3, -1) @ torch.tensor(dense.kernel) + torch.tensor(dense.bias)
    np.testing.assert_allclose(logits, expected.numpy(), rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def residual_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("residual")
    spec = {
        **TINY_DIGITS,
        "layers": [
            {"type": "conv", "filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"},
            {
                "type": "residual",
                "layers": [
                    {"type": "conv", "filters": 6, "kernel_size": 3, "padding": "same", "activation": "relu"},
                    {"type": "conv", "filters": 6, "kernel_size": 3, "padding": "same"},
                ],
                "shortcut": "conv",
                "activation": "relu",
            },
            {"type": "conv", "filters": 5, "kernel_size": 3},
            {"type": "flatten"},
            {"type": "dense", "units": 10},
        ],
        "max_steps": 8,
        "snapshots": {"every": 4},
    }
    db = folder / "r.db"
    ran = run_cli("run", str(write_experiments(folder / "e.yaml", {"res": spec})), "--db", str(db))
    assert ran.returncode == 0, ran.stderr
    return db


@pytest.mark.parametrize("layer", ["conv3", "conv4", "residual1_shortcut"])
def test_patches_through_a_residual_block_are_torch_s_responses_from_the_stored_weights(residual_run, layer):
    import torch
    import torch.nn.functional as F

    from convexp.datasets import load_dataset
    from convexp.store import Store

    found = run_cli("filters", "1", "--patches", "--layer", layer, "--top", "2", "--format", "json", "--db", str(residual_run))
    assert found.returncode == 0, found.stderr
    with Store(str(residual_run)) as store:
        weights = {
            name: tuple(torch.tensor(a, dtype=torch.float64) for a in (snap.kernel_array, snap.bias_array))
            for name in store.snapshot_layers(1)
            for snap in [store.snapshot(1, name, 8)]
        }
    images = torch.tensor(load_dataset("digits").test_images, dtype=torch.float64)
    conv1 = F.relu(F.conv2d(images, *weights["conv1"], padding=1))
    conv2 = F.relu(F.conv2d(conv1, *weights["conv2"], padding=1))
    conv3 = F.conv2d(conv2, *weights["conv3"], padding=1)
    shortcut = F.conv2d(conv1, *weights["residual1_shortcut"])
    conv4 = F.conv2d(F.relu(conv3 + shortcut), *weights["conv4"])
    maps = {"conv3": conv3, "conv4": conv4, "residual1_shortcut": shortcut}[layer]
    for entry in json.loads(found.stdout)["filters"]:
        for patch in entry["patches"]:
            expected = float(maps[patch["image"], entry["filter"], patch["row"], patch["col"]])
            assert patch["response"] == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("stride", [1, 2])
def test_a_window_replayed_through_residual_blocks_is_the_full_image_s_unit_and_has_its_gradient(stride):
    from convexp.analysis.network import RecordedNetwork, receptive_field, responses, window_responses

    layers = plan(
        [
            conv(3, activation="relu"),
            block(conv(4, stride=stride, activation="relu"), conv(4), shortcut="conv", activation="relu"),
            block(conv(4), activation="tanh"),
            Conv(type="conv", filters=2, kernel_size=3),
            Flatten(type="flatten"),
            Dense(type="dense", units=2),
        ],
        (2, 20, 20),
        2,
    )[:4]
    rng = np.random.default_rng(8)
    weights = {
        p.name: (rng.standard_normal(p.kernel_shape) * 0.5, rng.standard_normal(p.kernel_shape[0]) * 0.1)
        for p in flat(layers)
        if p.kernel_shape
    }
    network = RecordedNetwork(1, 0, tuple(layers), weights)
    field = receptive_field(network.layers)
    images = rng.standard_normal((2, 2, 20, 20))
    full = responses(network, images.astype(np.float32)).astype(np.float64)
    inside = [  # units whose field lies inside the image: the padding never reaches them
        (row, col)
        for row in range(full.shape[2])
        for col in range(full.shape[3])
        if min(field.window(row, col)) >= 0 and max(field.window(row, col)) + field.size[0] <= 20
    ]
    assert inside
    for row, col in inside[:: max(1, len(inside) // 5)]:
        top, left = field.window(row, col)
        windows = images[:, :, top : top + field.size[0], left : left + field.size[1]]
        values, grads = window_responses(network, windows, [0, 1])
        np.testing.assert_allclose(values, full[[0, 1], [0, 1], row, col], rtol=1e-4, atol=1e-4)
    single = windows[1:2].copy()

    def response():
        return float(window_responses(network, single, [1])[0][0])

    np.testing.assert_allclose(grads[1:2], numeric_grad(response, single), rtol=1e-6, atol=1e-8)
