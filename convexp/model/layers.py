"""The layers of a small sequential CNN, and what shape each one produces.

Layers are data (validated pydantic models) that every backend builds its own way.
Images cross the backend interface as ``(N, C, H, W)``; conv kernels as
``(out_channels, in_channels, kh, kw)``; dense kernels as ``(in_features, units)``
where a flattened feature vector lists values in (H, W, C) order, as Keras flattens.

Convolution here, as in every framework, is cross-correlation: the kernel slides over
the input unflipped. ``valid`` padding uses only full windows (a 3x3 kernel shrinks a
5x5 image to 3x3); ``same`` pads so the output is ceil(H / stride) wide, with the
extra row/column of padding at the bottom/right, as TensorFlow does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal, Union, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from convexp.errors import ShapeError
from convexp.model.names import layer_name_problem

Padding = Literal["valid", "same"]
"""A conv layer's padding: ``valid`` (none: a 3x3 conv shrinks a 5x5 image to 3x3) or ``same`` (zeros around the
image, so that at stride 1 the output keeps the input's size)."""
ActivationName = Literal["none", "relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid"]
#: Every activation function an experiment may name (``linear`` is read as ``none``); their formulas are
#: in :mod:`convexp.model.activations`.
ACTIVATION_NAMES: tuple[str, ...] = get_args(ActivationName)
ACTIVATION_HELP = "applied to the output: " + ", ".join(ACTIVATION_NAMES) + " (linear = none)"
Activation = Annotated[ActivationName, BeforeValidator(lambda value: "none" if value == "linear" else value)]


class _Layer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = Field(default=None, description="the layer's name (default: its type and number, conv1, conv2, ...)")

    @field_validator("name")
    @classmethod
    def _printable_name(cls, value: str | None) -> str | None:
        if value is not None and (problem := layer_name_problem(value)):
            raise ValueError(problem)
        return value


class Conv(_Layer):
    """2-D convolution (cross-correlation) with bias."""

    type: Literal["conv"]
    filters: int = Field(gt=0, description="how many filters: the output channels")
    kernel_size: int | tuple[int, int] = Field(default=3, description="k (k x k) or [kh, kw]")
    stride: int = Field(default=1, ge=1, description="step between windows, in both directions")
    padding: Padding = Field(default="valid", description="valid: full windows only; same: zeros around, output ceil(H / stride)")
    activation: Activation = Field(default="none", description=ACTIVATION_HELP)
    dilation: int = Field(
        default=1, ge=1, description="spacing of the kernel's taps: a k x k kernel spans (k - 1) * dilation + 1 pixels"
    )
    groups: int = Field(
        default=1,
        ge=1,
        description="split the input and output channels into this many groups, each convolved on its own; "
        "groups = input channels is a depthwise convolution",
    )

    @property
    def kernel_hw(self) -> tuple[int, int]:
        """(kh, kw)."""
        k = self.kernel_size
        return (k, k) if isinstance(k, int) else tuple(k)  # type: ignore[return-value]

    @property
    def span_hw(self) -> tuple[int, int]:
        """How many input rows and columns one output sees: the kernel size, spread by the dilation."""
        return tuple((k - 1) * self.dilation + 1 for k in self.kernel_hw)  # type: ignore[return-value]


class MaxPool(_Layer):
    """Max pooling over pool_size x pool_size windows with stride pool_size (remainders dropped)."""

    type: Literal["maxpool"]
    pool_size: int = Field(default=2, ge=1, description="window size and stride")


class AvgPool(_Layer):
    """Average pooling over pool_size x pool_size windows with stride pool_size (remainders dropped)."""

    type: Literal["avgpool"]
    pool_size: int = Field(default=2, ge=1, description="window size and stride")


class GlobalAvgPool(_Layer):
    """Each feature map's mean: (C, H, W) to (C,)."""

    type: Literal["global_avgpool"]


class ReLU(_Layer):
    """max(x, 0)."""

    type: Literal["relu"]


class ActivationLayer(_Layer):
    """An activation function as a layer of its own (see :mod:`convexp.model.activations` for the formulas)."""

    type: Literal["activation"]
    activation: Activation = Field(description=ACTIVATION_HELP.replace("applied to the output", "the function"))


class Flatten(_Layer):
    """(C, H, W) feature maps to one vector, in (H, W, C) order."""

    type: Literal["flatten"]


class Dropout(_Layer):
    """Inverted dropout: zero a share ``rate`` of activations in training, scale the rest."""

    type: Literal["dropout"]
    rate: float = Field(ge=0.0, lt=1.0, description="the share of activations zeroed in training")


class BatchNorm(_Layer):
    """Batch normalisation of each channel (after a conv) or feature (after a dense layer):
    y = gamma * (x - mean) / sqrt(var + epsilon) + beta.

    In training, mean and var are the batch's (var the biased 1/n variance, over the batch and, for maps, every
    position), and the running statistics move towards them: running = momentum * running + (1 - momentum) *
    batch, Keras's convention (torch's ``momentum`` is 1 minus this one, and torch updates the running variance
    with the unbiased variance: the torch backend does not). In evaluation the running statistics are used.
    gamma starts at 1 and beta at 0 (both trained, never weight-decayed), the running mean at 0 and the running
    variance at 1. Its snapshots are (4, C): gamma, beta, running mean, running variance."""

    type: Literal["batch_norm"]
    momentum: float = Field(
        default=0.99, ge=0, lt=1, description="running = momentum * running + (1 - momentum) * batch (Keras's default)"
    )
    epsilon: float = Field(default=1e-3, gt=0, description="added to the variance before its square root (Keras's default)")


class Dense(_Layer):
    """Fully connected layer with bias. The last dense layer's outputs are the logits."""

    type: Literal["dense"]
    units: int = Field(gt=0, description="outputs (the last dense layer: one per class)")
    activation: Activation = Field(default="none", description=ACTIVATION_HELP)


class Residual(_Layer):
    """A residual block: ``activation(body(x) + shortcut(x))``, the body being ``layers`` in order.

    The ``identity`` shortcut is x itself, so the body must give x's shape back; the ``conv`` shortcut is a
    1x1 conv with a bias (named after the block: ``residual1_shortcut``) that gives the body's channels, with
    the stride that gives its height and width. The body's layers are named as if they stood outside it
    (conv2, conv3, ...); a block holds no other block."""

    type: Literal["residual"]
    layers: list[Layer] = Field(min_length=1, description="the body, in order")  # type: ignore[valid-type]  # Layer is below
    shortcut: Literal["identity", "conv"] = Field(
        default="identity", description="identity: x itself; conv: a 1x1 conv to the body's channels and size"
    )
    activation: Activation = Field(default="none", description="applied to the sum: " + ", ".join(ACTIVATION_NAMES))


Layer = Annotated[
    Union[Conv, MaxPool, AvgPool, GlobalAvgPool, ReLU, ActivationLayer, BatchNorm, Flatten, Dropout, Dense, Residual],
    Field(discriminator="type"),
]
Residual.model_rebuild()
#: Every layer model, for those that list them (did-you-mean, the backends' features).
LAYER_TYPES = (Conv, MaxPool, AvgPool, GlobalAvgPool, ReLU, ActivationLayer, BatchNorm, Flatten, Dropout, Dense, Residual)
#: What the rows of a batch_norm layer's (4, C) snapshot are.
BATCH_NORM_ROWS = ("gamma", "beta", "running_mean", "running_variance")
#: Every layer type's name (``type:`` in an experiment).
LAYER_TYPE_NAMES: tuple[str, ...] = tuple(get_args(t.model_fields["type"].annotation)[0] for t in LAYER_TYPES)


def conv_output_size(size: int, kernel: int, stride: int, padding: Padding) -> int:
    """Output length along one axis of a conv or pool with this kernel, stride and padding."""
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) zero padding for ``same``: the odd extra goes after, as in TensorFlow."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class PlannedLayer:
    """A layer with its resolved name and its input and output shapes (without the batch axis)."""

    index: int
    name: str
    layer: Conv | MaxPool | AvgPool | GlobalAvgPool | ReLU | ActivationLayer | BatchNorm | Flatten | Dropout | Dense | Residual
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    #: A residual block's body, planned (its layers' indices follow the block's).
    body: tuple[PlannedLayer, ...] = ()
    #: A residual block's 1x1 conv shortcut, planned; None for the identity (and for every other layer).
    shortcut: PlannedLayer | None = None

    @property
    def inner(self) -> tuple[PlannedLayer, ...]:
        """A residual block's layers: its body, then its conv shortcut; () for every other layer."""
        return (*self.body, *((self.shortcut,) if self.shortcut else ()))

    @property
    def snapshot_values(self) -> int:
        """How many float32 values a snapshot row of this layer holds: a conv's kernel and a bias per filter, a
        batch_norm's (4, C) rows; 0 for layers that are not recorded."""
        if self.snapshot_shape is None:
            return 0
        return math.prod(self.snapshot_shape) + (self.output_shape[0] if self.kernel_shape else 0)

    @property
    def snapshot_shape(self) -> tuple[int, ...] | None:
        """What a snapshot of this layer holds: a conv's kernel (out, in, kh, kw), a batch_norm's (4, C) rows of
        :data:`BATCH_NORM_ROWS`; None for layers that are not recorded."""
        if isinstance(self.layer, Conv):
            return self.kernel_shape
        if isinstance(self.layer, BatchNorm):
            return (len(BATCH_NORM_ROWS), self.input_shape[0])
        return None

    @property
    def kernel_shape(self) -> tuple[int, ...] | None:
        """Canonical kernel shape: conv (out, in, kh, kw), dense (in, units); None for no weights."""
        if isinstance(self.layer, Conv):
            kh, kw = self.layer.kernel_hw
            return (self.layer.filters, self.input_shape[0] // self.layer.groups, kh, kw)
        if isinstance(self.layer, Dense):
            return (self.input_shape[0], self.layer.units)
        return None


def flat(planned: Sequence[PlannedLayer]) -> list[PlannedLayer]:
    """Every planned layer, those inside residual blocks too: each block followed by its body and its shortcut.
    What holds weights or is recorded is found here (a conv inside a block is a conv layer like any other)."""
    return [q for p in planned for q in (p, *p.inner)]


def plan(layers: list, input_shape: tuple[int, int, int], num_classes: int) -> list[PlannedLayer]:
    """Name every layer and infer every shape; raise :class:`ShapeError` naming the layer that cannot apply.

    ``input_shape`` is (C, H, W). Conv layers are named conv1, conv2, ...; dense layers
    dense1, ...; others by their type and position, unless a layer sets ``name``.
    """
    counters: dict[str, int] = {}
    planned, _ = _plan_sequence(layers, tuple(input_shape), counters, 1, "layer ")
    names = [p.name for p in flat(planned)]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ShapeError(f"layer names must be unique: {', '.join(duplicates)} appears more than once")
    if not planned or not isinstance(planned[-1].layer, Dense):
        raise ShapeError(f"the last layer must be dense with units = {num_classes} (the number of classes)")
    if planned[-1].layer.units != num_classes:
        raise ShapeError(
            f"the last layer ({planned[-1].name}) has {planned[-1].layer.units} units but the dataset has {num_classes} classes"
        )
    return planned


def _plan_sequence(
    layers: Sequence, shape: tuple[int, ...], counters: dict[str, int], index: int, where_prefix: str
) -> tuple[list[PlannedLayer], int]:
    """Plan ``layers`` from input ``shape``, numbering from ``index`` (every layer, nested ones too, gets the next
    number): (the planned layers, the next free index)."""
    planned: list[PlannedLayer] = []
    for position, layer in enumerate(layers, start=1):
        counters[layer.type] = counters.get(layer.type, 0) + 1
        name = layer.name or f"{layer.type}{counters[layer.type]}"
        where = f"{where_prefix}{position} ({name})"
        if isinstance(layer, Residual):
            block, index = _plan_residual(layer, name, shape, counters, index, where)
            planned.append(block)
            shape = block.output_shape
            continue
        out = _output_shape(layer, shape, where)
        planned.append(PlannedLayer(index, name, layer, shape, out))
        index += 1
        shape = out
    return planned, index


def _plan_residual(
    layer: Residual, name: str, shape: tuple[int, ...], counters: dict[str, int], index: int, where: str
) -> tuple[PlannedLayer, int]:
    """A residual block planned with its body and shortcut; raises :class:`ShapeError` where they cannot add up."""
    if any(isinstance(inner, Residual) for inner in layer.layers):
        raise ShapeError(f"{where}: a residual block's layers cannot hold another residual block")
    prefix = where.split(" (")[0] + "."  # layer 3 -> layer 3.1, 3.2, ... inside it
    body, next_index = _plan_sequence(layer.layers, shape, counters, index + 1, prefix)
    out = body[-1].output_shape
    shortcut = None
    if layer.shortcut == "identity":
        if out != shape:
            raise ShapeError(
                f"{where}: its layers turn {list(shape)} into {list(out)}, so the identity shortcut cannot be added; "
                "use shortcut: conv, or layers that keep the shape (padding: same, no stride or pooling)"
            )
    else:
        if len(shape) != 3 or len(out) != 3:
            raise ShapeError(f"{where}: a conv shortcut needs (channels, height, width) maps in and out, not {shape} -> {out}")
        stride = _shortcut_stride(shape[1:], out[1:])
        if stride is None:
            raise ShapeError(
                f"{where}: no 1x1 conv stride turns {shape[1]}x{shape[2]} into its layers' {out[1]}x{out[2]}; "
                "use padding: same in the block so the size only changes by a stride"
            )
        conv = Conv(type="conv", filters=out[0], kernel_size=1, stride=stride)
        shortcut = PlannedLayer(next_index, f"{name}_shortcut", conv, shape, out)
        next_index += 1
    return PlannedLayer(index, name, layer, shape, out, tuple(body), shortcut), next_index


def _shortcut_stride(size_in: tuple[int, ...], size_out: tuple[int, ...]) -> int | None:
    """The stride s at which a 1x1 'valid' conv turns size_in into size_out ((H - 1) // s + 1 on each axis)."""
    for stride in range(1, max(size_in) + 1):
        if all((i - 1) // stride + 1 == o for i, o in zip(size_in, size_out)):
            return stride
    return None


def _check_conv(layer: Conv, channels: int, where: str) -> None:
    """Raise :class:`ShapeError` when a conv's groups do not divide its channels, or when it asks for both a stride
    and a dilation (Keras's Conv2D and TensorFlow's convolution refuse that pair, so no backend is asked for it)."""
    if channels % layer.groups or layer.filters % layer.groups:
        raise ShapeError(
            f"{where}: groups = {layer.groups} must divide both its {channels} input channels and its {layer.filters} filters"
        )
    if layer.stride > 1 and layer.dilation > 1:
        raise ShapeError(
            f"{where}: stride {layer.stride} with dilation {layer.dilation}: a conv may have one of them above 1, "
            "not both (TensorFlow's convolution does not compute that pair)"
        )


def _output_shape(layer, shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    if isinstance(layer, GlobalAvgPool):
        if len(shape) != 3:
            raise ShapeError(f"{where}: needs (channels, height, width) input, got a flat vector of {shape[0]}")
        return (shape[0],)
    if isinstance(layer, (Conv, MaxPool, AvgPool)):
        if len(shape) != 3:
            raise ShapeError(f"{where}: needs (channels, height, width) input, got a flat vector of {shape[0]}")
        channels, height, width = shape
        if isinstance(layer, Conv):
            _check_conv(layer, channels, where)
            (kh, kw), stride, padding = layer.span_hw, layer.stride, layer.padding
            what = (
                f"kernel {kh}x{kw}"
                if layer.dilation == 1
                else f"kernel {layer.kernel_hw[0]}x{layer.kernel_hw[1]} dilated by {layer.dilation} (spanning {kh}x{kw})"
            )
        else:
            kh = kw = stride = layer.pool_size
            padding = "valid"
            what = f"pool {kh}x{kw}"
        if padding == "valid" and (kh > height or kw > width):
            raise ShapeError(f"{where}: {what} is larger than its {height}x{width} input with padding 'valid'")
        out_h = conv_output_size(height, kh, stride, padding)
        out_w = conv_output_size(width, kw, stride, padding)
        return (layer.filters if isinstance(layer, Conv) else channels, out_h, out_w)
    if isinstance(layer, Flatten):
        return (math.prod(shape),)
    if isinstance(layer, Dense):
        if len(shape) != 1:
            raise ShapeError(f"{where}: dense needs a flat input; add a flatten layer before it (input is {shape})")
        return (layer.units,)
    return shape
