"""The numpy backend's layers: conv forward against scipy, every backward pass against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from convexp_plugins.numpy_backend import ops
from convexp_plugins.numpy_backend.model import Network

from convexp.backends.registry import get_backend
from convexp.model.layers import Conv, Dense, Dropout, Flatten, MaxPool, ReLU, flat, plan
from convexp.model.weights import KernelSnapshot
from tests.reference import CONV_CASES, scipy_conv


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("image_shape, kernel_shape", CONV_CASES)
def test_conv_forward_matches_scipy_correlate2d(padding, stride, image_shape, kernel_shape):
    rng = np.random.default_rng(0)
    images = rng.standard_normal(image_shape).astype(np.float32)
    kernel = rng.standard_normal(kernel_shape).astype(np.float32)
    bias = rng.standard_normal(kernel_shape[0]).astype(np.float32)
    out = get_backend("numpy").conv2d(images, kernel, bias, stride=stride, padding=padding)
    expected = scipy_conv(images, kernel, stride, padding) + bias[:, None, None]
    assert out.shape == expected.shape
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=1e-5)


def test_valid_3x3_on_5x5_is_3x3_cross_correlation_not_convolution():
    image = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    kernel = np.array([[1, 2, 0], [0, 1, 0], [0, 0, -1]], dtype=np.float32).reshape(1, 1, 3, 3)
    out = get_backend("numpy").conv2d(image, kernel)
    assert out.shape == (1, 1, 3, 3)
    # top-left output by hand: sum of the top-left 3x3 window times the unflipped kernel
    window = image[0, 0, :3, :3]
    assert out[0, 0, 0, 0] == pytest.approx(float((window * kernel[0, 0]).sum()))
    flipped = get_backend("numpy").conv2d(image, kernel[:, :, ::-1, ::-1].copy())
    assert not np.allclose(out, flipped)


def numeric_grad(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        up = f()
        x[i] = old - eps
        down = f()
        x[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("padding, stride", [("valid", 1), ("same", 1), ("valid", 2), ("same", 2)])
def test_conv_backward_matches_finite_differences(padding, stride):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 5, 3))  # NHWC, float64 for exact differences
    kernel = rng.standard_normal((3, 3, 3, 4))
    bias = rng.standard_normal(4)
    weights_out = None

    def loss():
        out, _ = ops.conv_forward(x, kernel, bias, stride, padding)
        return float((out * weights_out).sum())

    out, cache = ops.conv_forward(x, kernel, bias, stride, padding)
    weights_out = rng.standard_normal(out.shape)
    grad_x, grad_kernel, grad_bias = ops.conv_backward(weights_out, kernel, cache, stride, need_input_grad=True)
    np.testing.assert_allclose(grad_x, numeric_grad(loss, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad_kernel, numeric_grad(loss, kernel), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad_bias, numeric_grad(loss, bias), rtol=1e-6, atol=1e-7)


def test_maxpool_forward_and_backward():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 7, 3))  # odd sizes: the last row/column is dropped
    out = ops.maxpool_forward(x, 2)
    assert out.shape == (2, 2, 3, 3)
    assert out[1, 1, 2, 0] == x[1, 2:4, 4:6, 0].max()
    weights_out = rng.standard_normal(out.shape)
    grad = ops.maxpool_backward(weights_out, x, out, 2)
    np.testing.assert_allclose(grad, numeric_grad(lambda: float((ops.maxpool_forward(x, 2) * weights_out).sum()), x), atol=1e-7)


def test_maxpool_ties_send_the_gradient_to_one_element():
    x = np.zeros((1, 2, 2, 1))
    out = ops.maxpool_forward(x, 2)
    grad = ops.maxpool_backward(np.ones_like(out), x, out, 2)
    assert grad.sum() == 1.0 and grad[0, 0, 0, 0] == 1.0


def test_softmax_cross_entropy_gradient_and_value():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((5, 4))
    labels = np.array([0, 3, 1, 1, 2])
    loss, accuracy, grad = ops.softmax_cross_entropy(logits, labels)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-np.log(probs[np.arange(5), labels]).mean())
    assert accuracy == pytest.approx((logits.argmax(1) == labels).mean())
    np.testing.assert_allclose(grad, numeric_grad(lambda: ops.softmax_cross_entropy(logits, labels)[0], logits), atol=1e-7)
    total, correct = ops.loss_and_accuracy(logits, labels)
    assert total == pytest.approx(loss * 5) and correct == round(accuracy * 5)


def small_network(dtype=np.float64, layers=None):
    """A numpy network on (2, 9, 9) inputs with 3 classes (``layers``, or a conv/pool/dense mix), its weights drawn
    at random, its parameters in ``dtype``."""
    layers = layers or [
        Conv(type="conv", filters=3, kernel_size=3, activation="relu", padding="same"),
        Conv(type="conv", filters=4, kernel_size=3, stride=2),
        ReLU(type="relu"),
        MaxPool(type="maxpool", pool_size=2),
        Flatten(type="flatten"),
        Dropout(type="dropout", rate=0.0),
        Dense(type="dense", units=6, activation="relu"),
        Dense(type="dense", units=3),
    ]
    planned = tuple(plan(layers, (2, 9, 9), 3))
    rng = np.random.default_rng(4)
    weights = {
        p.name: KernelSnapshot(
            rng.standard_normal(p.kernel_shape) * 0.5,
            rng.standard_normal(p.kernel_shape[0] if len(p.kernel_shape) == 4 else p.kernel_shape[1]) * 0.1,
        )
        for p in flat(planned)
        if p.kernel_shape
    }
    network = Network(planned, weights, np.random.default_rng(0))
    for layer in network.all_layers:  # float64 copies of the parameters, for exact finite differences
        if hasattr(layer, "gamma"):  # batch_norm: gamma and beta away from 1 and 0, so that they matter
            layer.gamma = (1 + 0.3 * rng.standard_normal(layer.gamma.shape)).astype(dtype)
            layer.beta = (0.2 * rng.standard_normal(layer.beta.shape)).astype(dtype)
            layer.running_mean, layer.running_var = layer.running_mean.astype(dtype), layer.running_var.astype(dtype)
            layer.params, layer.buffers = [layer.gamma, layer.beta], [layer.running_mean, layer.running_var]
        elif layer.params:
            layer.kernel, layer.bias = layer.kernel.astype(dtype), layer.bias.astype(dtype)
            layer.params = [layer.kernel, layer.bias]
    return network


def test_whole_network_gradient_matches_finite_differences():
    assert_gradients_match_finite_differences(small_network())


def assert_gradients_match_finite_differences(network) -> None:
    """Every parameter gradient of a network on (2, 9, 9) inputs, 3 classes, against central differences."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 9, 9, 2))
    labels = np.array([0, 2, 1, 2])

    def loss():
        return ops.softmax_cross_entropy(network.forward(x, training=True), labels)[0]

    _, _, grad_logits = ops.softmax_cross_entropy(network.forward(x, training=True), labels)
    network.backward(grad_logits)
    for param, grad in zip(network.params, network.grads):
        np.testing.assert_allclose(grad, numeric_grad(loss, param), rtol=1e-5, atol=1e-8)


def test_dropout_scales_kept_activations_and_is_off_in_evaluation():
    layer_spec = tuple(
        plan([Flatten(type="flatten"), Dropout(type="dropout", rate=0.25), Dense(type="dense", units=2)], (1, 40, 50), 2)
    )
    weights = {"dense1": KernelSnapshot(np.eye(2000, 2, dtype=np.float32), np.zeros(2, np.float32))}
    network = Network(layer_spec, weights, np.random.default_rng(0))
    x = np.ones((1, 40, 50, 1), dtype=np.float32)
    dropped = network.layers[1].forward(x.reshape(1, -1), training=True)
    kept = dropped[dropped != 0]
    assert kept == pytest.approx(np.full(kept.shape, 1 / 0.75))
    assert abs((dropped == 0).mean() - 0.25) < 0.03
    np.testing.assert_array_equal(network.layers[1].forward(x.reshape(1, -1), training=False), x.reshape(1, -1))


def test_sgd_and_adam_follow_their_update_rules():
    from convexp_plugins.numpy_backend.optimizers import make_updater

    from convexp.model.optimizers import SGD, Adam

    grad = np.array([0.5, -1.0], dtype=np.float32)
    param = np.array([1.0, 2.0], dtype=np.float32)
    sgd = make_updater(SGD(name="sgd", learning_rate=0.1, momentum=0.9), [param])
    sgd.step([param], [grad])
    sgd.step([param], [grad])
    # v1 = g, v2 = 0.9 g + g = 1.9 g; p = p0 - 0.1 (g + 1.9 g)
    np.testing.assert_allclose(param, np.array([1.0, 2.0]) - 0.1 * 2.9 * grad, rtol=1e-6)
    param = np.array([1.0, 2.0], dtype=np.float32)
    adam = make_updater(Adam(name="adam", learning_rate=0.01), [param])
    adam.step([param], [grad])
    # first Adam step moves each weight by lr * g / (|g| + eps * sqrt(1 - b2)) ~ lr * sign(g)
    np.testing.assert_allclose(param, np.array([1.0, 2.0]) - 0.01 * np.sign(grad), rtol=1e-5)
    assert param.dtype == np.float32
