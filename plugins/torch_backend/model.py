"""Build the experiment's network as an nn.Module, and initialise it from convexp's initializer definitions."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from convexp.plugin_api import (
    LEAKY_SLOPE,
    ActivationLayer,
    AvgPool,
    BatchNorm,
    Conv,
    Dense,
    Dropout,
    Fans,
    Flatten,
    GlobalAvgPool,
    KernelSnapshot,
    MaxPool,
    Padding,
    PlannedLayer,
    ReLU,
    Residual,
    fans_of,
    flat,
    framework_seed,
    get_initializer,
    same_padding,
)


def conv_padding(size_hw, kernel_hw, stride: int, padding: Padding) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding for F.pad: none for valid, TensorFlow's split for same."""
    if padding == "valid":
        return (0, 0, 0, 0)
    top, bottom = same_padding(size_hw[0], kernel_hw[0], stride)
    left, right = same_padding(size_hw[1], kernel_hw[1], stride)
    return (left, right, top, bottom)


def hwc_order(shape_chw: tuple[int, ...]) -> np.ndarray:
    """For each feature of a (C, H, W) map flattened as torch does (C, H, W order), its index in
    convexp's canonical (H, W, C) order: ``canonical_dense_kernel[hwc_order(shape)].T`` is nn.Linear's weight."""
    channels, height, width = shape_chw
    return np.arange(channels * height * width).reshape(height, width, channels).transpose(2, 0, 1).ravel()


def activation_module(name: str) -> nn.Module:
    """The module computing convexp activation ``name`` (see :mod:`convexp.model.activations`)."""
    modules: dict[str, Callable[[], nn.Module]] = {
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(LEAKY_SLOPE),
        "elu": lambda: nn.ELU(alpha=1.0),
        "gelu": lambda: nn.GELU(approximate="none"),
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "none": nn.Identity,
    }
    return modules[name]()


class ConvexpBatchNorm(nn.Module):
    """convexp's batch_norm (:class:`convexp.model.layers.BatchNorm`) over dim 1 of (N, C, H, W) or (N, C).

    nn.BatchNorm2d normalises the same way, but moves its running variance towards the batch's unbiased
    variance, where convexp (as Keras) uses the biased one the batch was normalised with; so the running
    statistics are kept here: ``running = momentum * running + (1 - momentum) * batch``."""

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, channels: int, momentum: float, epsilon: float):
        super().__init__()
        self.momentum, self.epsilon = momentum, epsilon
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                dims = [0, *range(2, x.dim())]
                var, mean = torch.var_mean(x, dim=dims, correction=0)
                self.running_mean.mul_(self.momentum).add_(mean * (1 - self.momentum))
                self.running_var.mul_(self.momentum).add_(var * (1 - self.momentum))
            return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.epsilon)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.epsilon)

    def snapshot(self) -> np.ndarray:
        """gamma, beta, running mean and running variance as convexp's (4, C) batch_norm snapshot."""
        rows = (self.weight, self.bias, self.running_mean, self.running_var)
        return torch.stack([row.detach() for row in rows]).cpu().numpy()


def _activated(modules: OrderedDict[str, nn.Module], name: str, activation: str) -> None:
    """The activation after a conv or dense layer, as a module of its own (none: nothing)."""
    if activation != "none":
        modules[f"{name}_relu" if activation == "relu" else f"{name}_{activation}"] = activation_module(activation)


class ResidualBlock(nn.Module):
    """activation(body(x) + shortcut(x)), the shortcut the identity or a 1x1 conv registered under its own name."""

    def __init__(self, p: PlannedLayer):
        super().__init__()
        self.body = nn.Sequential(_modules(p.body))
        self.shortcut_name = None if p.shortcut is None else p.shortcut.name
        if p.shortcut is not None:
            conv: Conv = p.shortcut.layer  # type: ignore[assignment]
            self.add_module(p.shortcut.name, nn.Conv2d(p.input_shape[0], conv.filters, 1, stride=conv.stride))
        self.activation = activation_module(p.layer.activation)  # type: ignore[union-attr]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.shortcut_name is None else getattr(self, self.shortcut_name)(x)
        return self.activation(self.body(x) + shortcut)


def _modules(layers: tuple[PlannedLayer, ...]) -> OrderedDict[str, nn.Module]:
    """One named module per layer (plus padding and activation modules where needed)."""
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    for p in layers:
        layer = p.layer
        if isinstance(layer, Conv):
            pad = conv_padding(p.input_shape[1:], layer.span_hw, layer.stride, layer.padding)
            if any(pad):
                modules[f"{p.name}_pad"] = nn.ZeroPad2d(pad)
            modules[p.name] = nn.Conv2d(
                p.input_shape[0],
                layer.filters,
                layer.kernel_hw,
                stride=layer.stride,
                dilation=layer.dilation,
                groups=layer.groups,
            )
            _activated(modules, p.name, layer.activation)
        elif isinstance(layer, Dense):
            modules[p.name] = nn.Linear(p.input_shape[0], layer.units)
            _activated(modules, p.name, layer.activation)
        elif isinstance(layer, MaxPool):
            modules[p.name] = nn.MaxPool2d(layer.pool_size)
        elif isinstance(layer, AvgPool):
            modules[p.name] = nn.AvgPool2d(layer.pool_size)  # stride = size; the remainder dropped (ceil_mode off)
        elif isinstance(layer, GlobalAvgPool):
            modules[p.name] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        elif isinstance(layer, ActivationLayer):
            modules[p.name] = activation_module(layer.activation)
        elif isinstance(layer, ReLU):
            modules[p.name] = nn.ReLU()
        elif isinstance(layer, BatchNorm):
            modules[p.name] = ConvexpBatchNorm(p.input_shape[0], layer.momentum, layer.epsilon)
        elif isinstance(layer, Flatten):
            modules[p.name] = nn.Flatten()
        elif isinstance(layer, Dropout):
            modules[p.name] = nn.Dropout(layer.rate)
        elif isinstance(layer, Residual):
            modules[p.name] = ResidualBlock(p)
    return modules


def build(layers: tuple[PlannedLayer, ...]) -> nn.Sequential:
    """An nn.Sequential with one named module per layer (plus padding and activation modules where needed); a
    residual block's layers are inside its module."""
    return nn.Sequential(_modules(layers))


def layer_modules(model: nn.Module, layers: tuple[PlannedLayer, ...]) -> dict[str, nn.Module]:
    """Each convexp layer's module by the layer's name, those inside residual blocks too."""
    paths = {}
    for p in layers:
        paths[p.name] = p.name
        paths.update({q.name: f"{p.name}.body.{q.name}" for q in p.body})
        if p.shortcut is not None:
            paths[p.shortcut.name] = f"{p.name}.{p.shortcut.name}"
    return {name: model.get_submodule(path) for name, path in paths.items()}


def fill_(
    tensor: torch.Tensor, initializer: str, canonical_shape: tuple[int, ...], generator: torch.Generator, fans: Fans | None = None
) -> None:
    """Fill ``tensor`` in place from a convexp initializer, with torch's own random functions."""
    init = get_initializer(initializer)
    scale = init.scale(fans or fans_of(canonical_shape))
    with torch.no_grad():
        if init.distribution == "uniform":
            nn.init.uniform_(tensor, -scale, scale, generator=generator)
        elif init.distribution == "truncated_normal":
            nn.init.trunc_normal_(tensor, 0.0, scale, -2 * scale, 2 * scale, generator=generator)
        elif init.distribution == "orthogonal":
            nn.init.orthogonal_(tensor, gain=scale, generator=generator)
        else:
            nn.init.constant_(tensor, scale)


def initialise(
    model: nn.Sequential,
    layers: tuple[PlannedLayer, ...],
    kernel_initializer: str,
    bias_initializer: str,
    seed: int,
    weights=None,
) -> None:
    """Set every conv and dense layer's weights: from ``weights`` (canonical arrays) if given, else drawn
    from the named initializers with a generator seeded from ``seed``. ``torch_default`` for both keeps
    the modules' own reset_parameters, which is exactly PyTorch's default."""
    generator = torch.Generator().manual_seed(framework_seed(seed))
    keep_module_defaults = (kernel_initializer, bias_initializer) == ("torch_default", "torch_default")
    flattened_from = None  # the (C, H, W) shape the features of a dense layer were flattened from
    modules = layer_modules(model, layers)
    for p in flat(layers):
        if isinstance(p.layer, Flatten):
            flattened_from = p.input_shape if len(p.input_shape) == 3 else None
        shape = p.kernel_shape
        if shape is None:
            continue
        module: Any = modules[p.name]
        if weights is not None:
            kernel = weights[p.name].kernel
            if len(shape) == 2:
                # nn.Linear stores (units, in_features), its features in torch's (C, H, W) flatten order
                kernel = (kernel[hwc_order(flattened_from)] if flattened_from else kernel).T
            with torch.no_grad():
                module.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
                module.bias.copy_(torch.from_numpy(np.ascontiguousarray(weights[p.name].bias)))
        elif not keep_module_defaults:
            fill_(module.weight, kernel_initializer, shape, generator)
            fill_(module.bias, bias_initializer, (module.bias.shape[0],), generator, fans_of(shape))
        if isinstance(p.layer, Dense):
            flattened_from = None  # a later dense layer's features are this layer's units


def conv_snapshots(modules: dict[str, nn.Module], names: tuple[str, ...]) -> dict[str, KernelSnapshot]:
    """Copies of the named layers (``modules``: :func:`layer_modules`): conv kernels (out, in, kh, kw) and biases,
    batch_norm's (4, C) rows."""
    snapshots = {}
    for name in names:
        module: Any = modules[name]
        if isinstance(module, ConvexpBatchNorm):
            snapshots[name] = KernelSnapshot(module.snapshot(), None)
        else:
            snapshots[name] = KernelSnapshot(
                module.weight.detach().cpu().numpy().copy(), module.bias.detach().cpu().numpy().copy()
            )
    return snapshots
