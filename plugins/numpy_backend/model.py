"""A sequential network of numpy layers built from convexp's planned layers.

Activations flow channels-last (N, H, W, C); conv kernels are kept as (kh, kw, C, O)
so that im2col needs one matmul, and are handed out in convexp's canonical
(O, C, kh, kw) layout.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from convexp.plugin_api import (
    ActivationLayer,
    AvgPool,
    BatchNorm,
    Conv,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    KernelSnapshot,
    MaxPool,
    PlannedLayer,
    ReLU,
    Residual,
    activations,
)

from . import ops


class _Layer:
    name: str
    params: list[np.ndarray] = []
    #: Whether weight decay applies to ``params[0]`` (conv and dense kernels; nothing else is decayed).
    decays_first = False
    #: Arrays the layer keeps that are not trained (a checkpoint saves them with the parameters).
    buffers: list[np.ndarray] = []

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    @property
    def grads(self) -> list[np.ndarray]:
        return []

    def snapshot(self) -> KernelSnapshot:
        """What a snapshot records of this layer (conv and batch_norm layers are recorded)."""
        raise TypeError(f"{self.name} is not recorded in snapshots")


class ConvLayer(_Layer):
    decays_first = True

    def __init__(self, planned: PlannedLayer, kernel_oihw: np.ndarray, bias: np.ndarray, is_first: bool):
        layer: Conv = planned.layer  # type: ignore[assignment]
        self.name = planned.name
        self.stride, self.padding = layer.stride, layer.padding
        self.dilation, self.groups = layer.dilation, layer.groups
        self.activation = layer.activation
        self.relu = layer.activation == "relu"
        self.kernel = np.ascontiguousarray(kernel_oihw.transpose(2, 3, 1, 0), dtype=np.float32)
        self.bias = np.array(bias, dtype=np.float32)
        self.params = [self.kernel, self.bias]
        self.need_input_grad = not is_first

    def forward(self, x, training):
        out, self.cache = ops.conv_forward(x, self.kernel, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.relu:
            np.maximum(out, 0, out=out)
            self.out = out
        elif self.activation != "none":
            self.pre, self.out = out, activations.apply(self.activation, out)
            return self.out
        return out

    def backward(self, grad):
        if self.relu:  # the layers above hand down a fresh gradient array: masking it in place is safe
            np.multiply(grad, self.out > 0, out=grad)
        elif self.activation != "none":
            grad = activations.gradient(self.activation, self.pre, self.out, grad)
        grad_x, self.grad_kernel, self.grad_bias = ops.conv_backward(
            grad, self.kernel, self.cache, self.stride, self.need_input_grad
        )
        return grad_x

    @property
    def grads(self):
        return [self.grad_kernel, self.grad_bias]

    def snapshot(self) -> KernelSnapshot:
        return KernelSnapshot(np.ascontiguousarray(self.kernel.transpose(3, 2, 0, 1)), self.bias.copy())


class BatchNormLayer(_Layer):
    """convexp's batch_norm (see :class:`convexp.model.layers.BatchNorm`) over the last axis of (N, H, W, C) or (N, C).

    Training: the batch's mean and (biased, 1/n) variance per channel from float64 sums of x and of x * x, one
    pass each (in float64, E[x^2] - mean^2 keeps what a float32 value can show, even for a channel far from
    zero), then ``(x - mean) / sqrt(var + epsilon) * gamma + beta`` (subtracting the mean first: scaling x before
    would cancel float32's digits). The gradient takes two float64 sums, of the incoming gradient and of it
    times the normalised input; the parameters' gradients are those sums, and the input's mean terms are
    them over n, so no further pass over the batch sums anything."""

    def __init__(self, planned: PlannedLayer, state: np.ndarray | None):
        layer: BatchNorm = planned.layer  # type: ignore[assignment]
        self.name, self.momentum, self.epsilon = planned.name, layer.momentum, layer.epsilon
        channels = planned.input_shape[0]
        rows = (
            state
            if state is not None
            else np.array([np.ones(channels), np.zeros(channels), np.zeros(channels), np.ones(channels)])
        )
        self.gamma, self.beta, self.running_mean, self.running_var = (np.array(row, dtype=np.float32) for row in rows)
        self.params = [self.gamma, self.beta]
        self.buffers = [self.running_mean, self.running_var]

    #: Whether a relu layer that followed this one in the plan is applied here, on the output in place (as a conv
    #: layer applies its own relu): a pass and an array fewer each way. Set by :func:`build_layers`.
    relu = False

    def forward(self, x, training):
        if training:
            count = x.size // x.shape[-1]
            mean64 = ops.channel_sums(x) / count
            var64 = np.maximum(ops.channel_sums(x, x) / count - mean64 * mean64, 0.0)  # biased, 1/n
            mean, var = mean64.astype(x.dtype), var64.astype(x.dtype)
            keep = self.running_mean.dtype.type(self.momentum)
            self.running_mean[...] = keep * self.running_mean + (1 - keep) * mean
            self.running_var[...] = keep * self.running_var + (1 - keep) * var
        else:
            mean, var = self.running_mean.astype(x.dtype), self.running_var.astype(x.dtype)
        inv_std = 1 / np.sqrt(var + x.dtype.type(self.epsilon))
        if training:  # the normalised input is kept for the gradient
            self.inv_std, self.normalised = inv_std, x - mean
            self.normalised *= inv_std
            out = self.normalised * self.gamma.astype(x.dtype)
        else:  # no gradient follows: one array, scaled once by gamma / std
            out = x - mean
            out *= self.gamma.astype(x.dtype) * inv_std
        out += self.beta.astype(x.dtype)
        if self.relu:
            np.maximum(out, 0, out=out)
            self.out = out
        return out

    def backward(self, grad):
        if self.relu:  # a layer may change the gradient it is handed in place (see ResidualLayer.backward)
            np.multiply(grad, self.out > 0, out=grad)
        count = grad.size // grad.shape[-1]
        sum_grad, sum_grad_normalised = ops.channel_sums(grad), ops.channel_sums(grad, self.normalised)
        self.grad_gamma, self.grad_beta = sum_grad_normalised.astype(grad.dtype), sum_grad.astype(grad.dtype)
        # d/dx of (x - mean) / std with the batch's own mean and std (both depend on every x of the channel):
        # gamma * inv_std * (grad - mean(grad) - normalised * mean(grad * normalised))
        mean_grad, mean_grad_normalised = (sum_grad / count).astype(grad.dtype), (sum_grad_normalised / count).astype(grad.dtype)
        out = self.normalised * -mean_grad_normalised
        out += grad
        out -= mean_grad
        out *= self.gamma.astype(grad.dtype) * self.inv_std
        return out

    @property
    def grads(self):
        return [self.grad_gamma, self.grad_beta]

    def snapshot(self) -> KernelSnapshot:
        return KernelSnapshot(np.stack([self.gamma, self.beta, self.running_mean, self.running_var]), None)


class MaxPoolLayer(_Layer):
    def __init__(self, planned: PlannedLayer):
        self.name, self.pool = planned.name, planned.layer.pool_size  # type: ignore[union-attr]

    def forward(self, x, training):
        self.x = x
        self.out = ops.maxpool_forward(x, self.pool)
        return self.out

    def backward(self, grad):
        return ops.maxpool_backward(grad, self.x, self.out, self.pool)


class AvgPoolLayer(_Layer):
    def __init__(self, planned: PlannedLayer):
        self.name, self.pool = planned.name, planned.layer.pool_size  # type: ignore[union-attr]

    def forward(self, x, training):
        self.shape = x.shape
        return ops.avgpool_forward(x, self.pool)

    def backward(self, grad):
        return ops.avgpool_backward(grad, self.shape, self.pool)


class GlobalAvgPoolLayer(_Layer):
    """Each channel's mean over (H, W): (N, H, W, C) to (N, C)."""

    def __init__(self, planned: PlannedLayer):
        self.name = planned.name

    def forward(self, x, training):
        self.shape = x.shape
        return x.mean(axis=(1, 2), dtype=np.float64).astype(x.dtype)  # summed in float64, as batch_norm's means

    def backward(self, grad):
        _, height, width, _ = self.shape
        share = grad / grad.dtype.type(height * width)
        return np.broadcast_to(share[:, None, None, :], self.shape).copy()


class ActivationFunctionLayer(_Layer):
    def __init__(self, planned: PlannedLayer):
        self.name, self.activation = planned.name, planned.layer.activation  # type: ignore[union-attr]

    def forward(self, x, training):
        self.x, self.out = x, activations.apply(self.activation, x)
        return self.out

    def backward(self, grad):
        return activations.gradient(self.activation, self.x, self.out, grad)


class ReLULayer(_Layer):
    def __init__(self, planned: PlannedLayer):
        self.name = planned.name

    def forward(self, x, training):
        self.out = np.maximum(x, 0)
        return self.out

    def backward(self, grad):
        return grad * (self.out > 0)


class FlattenLayer(_Layer):
    def __init__(self, planned: PlannedLayer):
        self.name = planned.name

    def forward(self, x, training):
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, grad):
        return grad.reshape(self.shape)


class DropoutLayer(_Layer):
    def __init__(self, planned: PlannedLayer, rng: np.random.Generator):
        self.name, self.rate, self.rng = planned.name, planned.layer.rate, rng  # type: ignore[union-attr]

    def forward(self, x, training):
        if not training or self.rate == 0:
            self.mask = None
            return x
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.rate
        self.mask = keep.astype(np.float32) / np.float32(1.0 - self.rate)
        return x * self.mask

    def backward(self, grad):
        return grad if self.mask is None else grad * self.mask


class DenseLayer(_Layer):
    decays_first = True

    def __init__(self, planned: PlannedLayer, kernel: np.ndarray, bias: np.ndarray, is_first: bool):
        self.name = planned.name
        self.activation = planned.layer.activation  # type: ignore[union-attr]
        self.relu = self.activation == "relu"
        self.kernel = np.array(kernel, dtype=np.float32)
        self.bias = np.array(bias, dtype=np.float32)
        self.params = [self.kernel, self.bias]
        self.need_input_grad = not is_first

    def forward(self, x, training):
        self.x = x
        out = x @ self.kernel
        out += self.bias
        if self.relu:
            np.maximum(out, 0, out=out)
            self.out = out
        elif self.activation != "none":
            self.pre, self.out = out, activations.apply(self.activation, out)
            return self.out
        return out

    def backward(self, grad):
        if self.relu:
            grad = grad * (self.out > 0)
        elif self.activation != "none":
            grad = activations.gradient(self.activation, self.pre, self.out, grad)
        self.grad_kernel = self.x.T @ grad
        self.grad_bias = grad.sum(axis=0)
        return grad @ self.kernel.T if self.need_input_grad else None

    @property
    def grads(self):
        return [self.grad_kernel, self.grad_bias]


def _bias(weights: Mapping[str, KernelSnapshot], p: PlannedLayer) -> np.ndarray:
    bias = weights[p.name].bias
    if bias is None:
        raise ValueError(f"{p.name}: the numpy backend's layers all have a bias; none was given")
    return bias


class ResidualLayer(_Layer):
    """activation(body(x) + shortcut(x)): the body's layers in order, the shortcut the identity or a 1x1 conv."""

    def __init__(self, planned: PlannedLayer, weights: Mapping[str, KernelSnapshot], rng: np.random.Generator):
        self.name = planned.name
        self.activation = planned.layer.activation  # type: ignore[union-attr]
        self.body = build_layers(planned.body, weights, rng, first=False)
        self.shortcut = (
            None
            if planned.shortcut is None
            else ConvLayer(planned.shortcut, weights[planned.shortcut.name].kernel, _bias(weights, planned.shortcut), False)
        )

    @property
    def inner(self) -> list[_Layer]:
        """The body's layers, then the shortcut conv: those that hold parameters and snapshots."""
        return [*self.body, *([self.shortcut] if self.shortcut else [])]

    def forward(self, x, training):
        out = x
        for layer in self.body:
            out = layer.forward(out, training)
        out = out + (x if self.shortcut is None else self.shortcut.forward(x, training))
        if self.activation != "none":
            self.pre, out = out, activations.apply(self.activation, out)
        self.out = out
        return out

    def backward(self, grad):
        if self.activation != "none":
            grad = activations.gradient(self.activation, self.pre, self.out, grad)
        # the body's layers may change the gradient they are handed in place: the shortcut gets its own copy
        through_shortcut = grad.copy() if self.shortcut is None else self.shortcut.backward(grad.copy())
        for layer in reversed(self.body):
            grad = layer.backward(grad)
        return grad + through_shortcut


def build_layers(
    planned: tuple[PlannedLayer, ...], weights: Mapping[str, KernelSnapshot], rng: np.random.Generator, first: bool = True
) -> list[_Layer]:
    """The numpy layers of ``planned``; ``first``: whether they start the network (its first layer needs no input gradient)."""
    layers: list[_Layer] = []
    for position, p in enumerate(planned):
        is_first = first and position == 0
        if isinstance(p.layer, Conv):
            layers.append(ConvLayer(p, weights[p.name].kernel, _bias(weights, p), is_first))
        elif isinstance(p.layer, Dense):
            layers.append(DenseLayer(p, weights[p.name].kernel, _bias(weights, p), is_first))
        elif isinstance(p.layer, MaxPool):
            layers.append(MaxPoolLayer(p))
        elif isinstance(p.layer, AvgPool):
            layers.append(AvgPoolLayer(p))
        elif isinstance(p.layer, GlobalAvgPool):
            layers.append(GlobalAvgPoolLayer(p))
        elif isinstance(p.layer, ActivationLayer):
            layers.append(ActivationFunctionLayer(p))
        elif isinstance(p.layer, ReLU) and layers and isinstance(layers[-1], BatchNormLayer) and not layers[-1].relu:
            layers[-1].relu = True  # batch_norm then relu, the usual pair: applied by the batch_norm layer
        elif isinstance(p.layer, ReLU):
            layers.append(ReLULayer(p))
        elif isinstance(p.layer, BatchNorm):
            given = weights.get(p.name)
            layers.append(BatchNormLayer(p, None if given is None else given.kernel))
        elif isinstance(p.layer, Flatten):
            layers.append(FlattenLayer(p))
        elif isinstance(p.layer, Dropout):
            layers.append(DropoutLayer(p, rng))
        elif isinstance(p.layer, Residual):
            layers.append(ResidualLayer(p, weights, rng))
        else:  # pragma: no cover - layers.py defines no other type
            raise TypeError(f"numpy backend cannot build {p.layer!r}")
    return layers


class Network:
    """The layers in order, with forward, backward and access to parameters and kernels."""

    def __init__(self, planned: tuple[PlannedLayer, ...], weights: Mapping[str, KernelSnapshot], rng: np.random.Generator):
        self.layers = build_layers(planned, weights, rng)

    @property
    def all_layers(self) -> list[_Layer]:
        """Every layer, those inside residual blocks too, in the plan's order (:func:`convexp.model.layers.flat`)."""
        out: list[_Layer] = []
        for layer in self.layers:
            out.append(layer)
            if isinstance(layer, ResidualLayer):
                out += layer.inner
        return out

    def forward(self, x_nhwc: np.ndarray, training: bool) -> np.ndarray:
        """Logits (N, classes) for a channels-last batch."""
        for layer in self.layers:
            x_nhwc = layer.forward(x_nhwc, training)
        return x_nhwc

    def backward(self, grad_logits: np.ndarray) -> None:
        """Fill every layer's parameter gradients from the gradient of the loss w.r.t. the logits."""
        grad = grad_logits
        for layer in reversed(self.layers):
            below = layer.backward(grad)
            if below is None:
                break
            grad = below

    @property
    def params(self) -> list[np.ndarray]:
        return [p for layer in self.all_layers for p in layer.params]

    @property
    def grads(self) -> list[np.ndarray]:
        return [g for layer in self.all_layers for g in layer.grads]

    @property
    def buffers(self) -> list[np.ndarray]:
        """What the layers keep but do not train (batch_norm's running statistics), for checkpoints."""
        return [b for layer in self.all_layers for b in layer.buffers]

    @property
    def decayed(self) -> list[bool]:
        """For each of :attr:`params`, whether weight decay applies to it: the kernels, not the biases."""
        return [index == 0 and layer.decays_first for layer in self.all_layers for index, _ in enumerate(layer.params)]

    def conv_snapshots(self, names: tuple[str, ...] | None = None) -> dict[str, KernelSnapshot]:
        """Copies of the recorded layers in canonical layout: conv kernels and biases, batch_norm's (4, C) rows,
        for the layers in ``names`` (every conv layer if None)."""
        return {
            layer.name: layer.snapshot()
            for layer in self.all_layers
            if (isinstance(layer, ConvLayer) and not names) or (names and layer.name in names)
        }
