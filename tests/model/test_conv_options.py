"""Conv dilation and groups (grouped and depthwise): shapes, the numpy backend's forward against scipy, its gradients
against finite differences, and the analysis replay against the same reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import correlate2d

from convexp.errors import ShapeError
from convexp.model.layers import Conv, Dense, Flatten, plan
from tests.backends.test_numpy_backend import assert_gradients_match_finite_differences, numeric_grad, small_network


def reference_conv(x_nchw: np.ndarray, kernel_oihw: np.ndarray, bias, stride: int, pads, dilation: int, groups: int):
    """Written from the definition with scipy: each filter correlates (unflipped) its group's channels with its
    kernel spread out by dilation - 1 zeros between taps, summed over those channels, plus its bias."""
    out_channels, per_group, kh, kw = kernel_oihw.shape
    spread = np.zeros((out_channels, per_group, (kh - 1) * dilation + 1, (kw - 1) * dilation + 1))
    spread[:, :, ::dilation, ::dilation] = kernel_oihw
    x = np.pad(x_nchw, ((0, 0), (0, 0), *pads))
    filters_per_group = out_channels // groups
    out = []
    for image in x:
        maps = []
        for o in range(out_channels):
            first = (o // filters_per_group) * per_group
            total = sum(correlate2d(image[first + c], spread[o, c], mode="valid") for c in range(per_group))
            maps.append(total[::stride, ::stride] + bias[o])
        out.append(maps)
    return np.array(out)


CASES = [  # (stride, padding, dilation, groups, in channels, filters)
    (1, "valid", 2, 1, 3, 4),
    (1, "same", 3, 1, 2, 2),
    (1, "valid", 1, 2, 4, 6),
    (2, "same", 1, 3, 3, 6),  # depthwise, two filters per channel
    (1, "same", 2, 2, 4, 4),
]


@pytest.mark.parametrize("stride, padding, dilation, groups, channels, filters", CASES)
def test_numpy_conv_with_dilation_and_groups_is_the_definition(stride, padding, dilation, groups, channels, filters):
    from convexp_plugins.numpy_backend import ops

    from convexp.model.layers import same_padding

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, channels, 9, 8))
    kernel = rng.standard_normal((filters, channels // groups, 3, 3))
    bias = rng.standard_normal(filters)
    out, _ = ops.conv_forward(x.transpose(0, 2, 3, 1), kernel.transpose(2, 3, 1, 0), bias, stride, padding, dilation, groups)
    span = 2 * dilation + 1
    pads = [same_padding(size, span, stride) for size in (9, 8)] if padding == "same" else [(0, 0), (0, 0)]
    expected = reference_conv(x, kernel, bias, stride, pads, dilation, groups)
    np.testing.assert_allclose(out.transpose(0, 3, 1, 2), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride, padding, dilation, groups, channels, filters", CASES)
def test_numpy_conv_gradients_with_dilation_and_groups_match_finite_differences(
    stride, padding, dilation, groups, channels, filters
):
    from convexp_plugins.numpy_backend import ops

    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 9, 8, channels))
    kernel = rng.standard_normal((3, 3, channels // groups, filters))
    bias = rng.standard_normal(filters)
    out, cache = ops.conv_forward(x, kernel, bias, stride, padding, dilation, groups)
    upstream = rng.standard_normal(out.shape)

    def loss():
        return float((ops.conv_forward(x, kernel, bias, stride, padding, dilation, groups)[0] * upstream).sum())

    grad_x, grad_kernel, grad_bias = ops.conv_backward(upstream, kernel, cache, stride, need_input_grad=True)
    # central differences of a loss of size ~100 carry ~1e-8 of rounding: atol 1e-6 leaves room, a wrong tap does not
    np.testing.assert_allclose(grad_x, numeric_grad(loss, x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad_kernel, numeric_grad(loss, kernel), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad_bias, numeric_grad(loss, bias), rtol=1e-6, atol=1e-6)


def test_a_network_with_dilated_grouped_and_depthwise_convs_has_the_gradient_of_finite_differences():
    network = small_network(
        layers=[
            Conv(type="conv", filters=4, kernel_size=3, padding="same", dilation=2, activation="tanh"),
            Conv(type="conv", filters=4, kernel_size=3, groups=2, activation="relu"),
            Conv(type="conv", filters=8, kernel_size=3, groups=4, stride=2),
            Flatten(type="flatten"),
            Dense(type="dense", units=3),
        ]
    )
    assert_gradients_match_finite_differences(network)


def test_the_plan_gives_dilated_and_grouped_shapes_and_refuses_what_cannot_apply():
    planned = plan(
        [
            Conv(type="conv", filters=6, kernel_size=3, dilation=2),  # a 3x3 kernel spanning 5x5: 5x5 -> 1x1
            Conv(type="conv", filters=6, kernel_size=1, groups=3),
            Flatten(type="flatten"),
            Dense(type="dense", units=2),
        ],
        (2, 5, 5),
        2,
    )
    assert planned[0].output_shape == (6, 1, 1) and planned[0].kernel_shape == (6, 2, 3, 3)
    assert planned[1].kernel_shape == (6, 2, 1, 1)  # 6 channels in 3 groups: each filter sees 2
    with pytest.raises(ShapeError, match=r"layer 1 \(conv1\): groups = 4 must divide both its 2 input channels and its 8"):
        plan([Conv(type="conv", filters=8, groups=4), Flatten(type="flatten"), Dense(type="dense", units=2)], (2, 5, 5), 2)
    with pytest.raises(ShapeError, match="stride 2 with dilation 2"):
        plan(
            [Conv(type="conv", filters=2, stride=2, dilation=2), Flatten(type="flatten"), Dense(type="dense", units=2)],
            (1, 9, 9),
            2,
        )
    with pytest.raises(ShapeError, match="kernel 3x3 dilated by 3 \\(spanning 7x7\\) is larger than its 5x5 input"):
        plan([Conv(type="conv", filters=2, dilation=3), Flatten(type="flatten"), Dense(type="dense", units=2)], (1, 5, 5), 2)


def test_the_analysis_replay_and_its_gradient_follow_dilation_and_groups():
    from convexp.analysis.network import RecordedNetwork, conv2d, receptive_field, window_responses

    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 4, 9, 9))
    kernel = rng.standard_normal((4, 2, 3, 3))
    bias = rng.standard_normal(4)
    out = conv2d(x, kernel, bias, 1, ((1, 1), (2, 2)), dilation=2, groups=2)
    np.testing.assert_allclose(out, reference_conv(x, kernel, bias, 1, [(1, 1), (2, 2)], 2, 2), rtol=1e-12, atol=1e-12)

    layers = tuple(
        plan(
            [
                Conv(type="conv", filters=4, kernel_size=3, dilation=2, activation="tanh"),
                Conv(type="conv", filters=4, kernel_size=2, groups=4),
                Flatten(type="flatten"),
                Dense(type="dense", units=2),
            ],
            (1, 12, 12),
            2,
        )
    )[:2]
    field = receptive_field(layers)
    assert field.size == (6, 6)  # 5 (3 taps, 2 apart) + 1 more for the 2x2 conv above
    weights = {
        "conv1": (rng.standard_normal((4, 1, 3, 3)), rng.standard_normal(4)),
        "conv2": (rng.standard_normal((4, 1, 2, 2)), rng.standard_normal(4)),
    }
    network = RecordedNetwork(1, 0, layers, weights)
    windows = rng.standard_normal((3, 1, 6, 6))
    values, grads = window_responses(network, windows, [0, 2, 3])
    below = np.tanh(reference_conv(windows, *weights["conv1"], 1, [(0, 0), (0, 0)], 2, 1))
    expected = reference_conv(below, *weights["conv2"], 1, [(0, 0), (0, 0)], 1, 4)[:, :, 0, 0]
    np.testing.assert_allclose(values, expected[np.arange(3), [0, 2, 3]], rtol=1e-12)
    window = windows[1:2].copy()

    def response():
        return float(window_responses(network, window, [2])[0][0])

    np.testing.assert_allclose(grads[1:2], numeric_grad(response, window), rtol=1e-6, atol=1e-9)


def test_the_conv_command_computes_dilated_and_grouped_convs_as_torch_does(tmp_path):
    import torch

    from tests.conftest import run_cli

    out = tmp_path / "out.npy"
    args = ["conv", "--random-image", "2,4,9,8", "--random-kernel", "6,2,3,3", "--seed", "3", "--out", str(out)]
    result = run_cli(*args, "--groups", "2", "--dilation", "2", "--padding", "valid")
    assert result.returncode == 0, result.stderr
    rng = np.random.default_rng(3)  # the command draws the image, then the kernel
    image = rng.standard_normal((2, 4, 9, 8)).astype(np.float32)
    kernel = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    expected = torch.nn.functional.conv2d(torch.from_numpy(image), torch.from_numpy(kernel), dilation=2, groups=2).numpy()
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-5, atol=1e-5)
    refused = run_cli("conv", "--random-image", "1,3,9,9", "--random-kernel", "4,1,3,3", "--groups", "2")
    assert refused.returncode != 0 and "groups = 2 must divide both the image's 3 channel(s)" in refused.stderr


def test_conv_explain_walks_through_stride_dilation_same_padding_and_groups():
    import torch

    from convexp.model.convolution import EXAMPLE_IMAGE, EXAMPLE_KERNEL
    from tests.conftest import run_cli

    result = run_cli("conv", "--explain", "--stride", "2")
    assert result.returncode == 0, result.stderr
    assert "the output is (floor((5 - 3) / 2) + 1) x (floor((5 - 3) / 2) + 1) = 2x2" in result.stdout
    result = run_cli("conv", "--explain", "--dilation", "2", "--padding", "same", "--groups", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "spans (3 - 1) * 2 + 1 = 5 rows and 5 columns" in out
    assert "the image gets 2 row(s) of zeros above and 2 below" in out
    image = torch.from_numpy(EXAMPLE_IMAGE)[None, None]
    kernel = torch.from_numpy(EXAMPLE_KERNEL)[None, None]
    expected = torch.nn.functional.conv2d(image, kernel, padding=2, dilation=2)[0, 0].numpy()
    printed = out.split("computed by backend 'numpy':\n")[1].split("True (mathematical)")[0]
    np.testing.assert_array_equal(np.array([row.split() for row in printed.strip().splitlines()], float), expected)
    taps = np.pad(EXAMPLE_IMAGE, 2)[:5:2, :5:2]
    assert f"= {float((taps * EXAMPLE_KERNEL).sum()):g}\n" in out
    second = out.split("Output of filter 1 (channel 1 only):\n")[1].strip().splitlines()
    np.testing.assert_array_equal(np.array([row.split() for row in second], float), 2 * expected)
    assert "kernel (2, 1, 3, 3), 18 weights instead of 36" in out
