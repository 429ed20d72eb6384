"""A recorded network rebuilt in numpy from its snapshots, up to one conv layer: what a deeper filter responds to.

A filter of conv2 acts on conv1's feature maps, not on pixels, so what it "is" shows only through
the layers below it. This module replays the recorded network from the input to a chosen conv
layer with the recorded kernels and biases of one step and the layer plan's padding, stride,
activations and pooling (dropout is the identity at test time; batch_norm applies its recorded running
statistics, as at test time), using nothing but numpy: no backend is loaded, so a run can be analysed after its framework is gone.

A filter's *response* is its conv layer's output before that layer's activation function
(w·x + b over the input window). ReLU, tanh, sigmoid, ELU and leaky ReLU are monotone, so ranking
by response ranks by the activated output too (GELU's dip below zero aside), and the response
still orders inputs the ReLU would clip to zero. Activations, average pooling and global average
pooling below the layer are replayed with :mod:`convexp.model.activations`' definitions.

Every unit of a layer sees a square window of the input, its *receptive field*: with the window
of each layer below (kernel or pool size k, stride s), the field grows by (k - 1) times the
product of the strides below it. :func:`receptive_field` gives its size and where it starts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from convexp.analysis.recorded_plan import plan_recorded
from convexp.analysis.selection import step_index
from convexp.errors import ConvexpError
from convexp.model import activations
from convexp.model.layers import (
    ActivationLayer,
    AvgPool,
    BatchNorm,
    Conv,
    Dense,
    Flatten,
    GlobalAvgPool,
    MaxPool,
    PlannedLayer,
    ReLU,
    Residual,
    flat,
    same_padding,
)


@dataclass(frozen=True)
class ReceptiveField:
    """Where a unit's window of the input lies: unit (i, j) of the layer sees input rows
    ``offset[0] + i * jump[0]`` to that plus ``size[0] - 1``, and columns likewise."""

    size: tuple[int, int]
    jump: tuple[int, int]
    offset: tuple[int, int]

    def window(self, row: int, col: int) -> tuple[int, int]:
        """(top, left) input pixel of unit (row, col)'s window; negative or past the edge where padding was seen."""
        return self.offset[0] + row * self.jump[0], self.offset[1] + col * self.jump[1]


@dataclass(frozen=True)
class RecordedNetwork:
    """The layers from the input up to ``target`` (a conv layer) with the weights of one recorded step."""

    run_id: int
    step: int
    layers: tuple[PlannedLayer, ...]
    #: conv layer name -> (kernel, bias); batch_norm layer name -> ((4, C) rows, None); float64
    weights: dict[str, tuple[np.ndarray, np.ndarray | None]]

    @property
    def target(self) -> PlannedLayer:
        """The conv layer whose filters are studied (the last of :attr:`layers`)."""
        return self.layers[-1]

    @property
    def filters(self) -> int:
        """How many filters the target layer has."""
        return self.weights[self.target.name][0].shape[0]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) of the network's input."""
        return self.layers[0].input_shape


def conv_layers_up_to(planned: Sequence[PlannedLayer], layer: str) -> tuple[PlannedLayer, ...]:
    """The planned layers on the way from the input to conv layer ``layer``: those before it, and for a conv inside a
    residual block, the layers before the block and the block's own layers (or its shortcut) up to it. Raises naming
    the conv layers there are."""
    convs = [p.name for p in flat(planned) if isinstance(p.layer, Conv)]
    for index, p in enumerate(planned):
        inside = [q.name for q in p.inner]
        if p.name != layer and layer not in inside:
            continue
        if p.name == layer:
            path = tuple(planned[: index + 1])
        elif p.shortcut is not None and layer == p.shortcut.name:
            path = (*planned[:index], p.shortcut)
        else:
            path = (*planned[:index], *p.body[: inside.index(layer) + 1])
        target = path[-1]
        if not isinstance(target.layer, Conv):
            raise ConvexpError(f"'{layer}' is a {target.layer.type} layer; filters belong to conv layers ({', '.join(convs)})")
        if any(isinstance(q.layer, (Dense, Flatten, GlobalAvgPool)) for q in flat(path[:-1])):
            raise ConvexpError(f"'{layer}' comes after a flatten, dense or global pooling layer; its inputs are not images")
        return path
    raise ConvexpError(f"the network has no layer '{layer}' (its conv layers: {', '.join(convs) or 'none'})")


def receptive_field(layers: Sequence[PlannedLayer]) -> ReceptiveField:
    """The receptive field of a unit of the last of ``layers`` (a prefix of a network, from the input)."""
    size, jump, offset = [1, 1], [1, 1], [0, 0]
    for p in _through_bodies(layers):
        for axis in (0, 1):
            kernel, stride, before = _window(p, axis)
            offset[axis] -= before * jump[axis]
            size[axis] += (kernel - 1) * jump[axis]
            jump[axis] *= stride
    return ReceptiveField(tuple(size), tuple(jump), tuple(offset))  # type: ignore[arg-type]


def _through_bodies(layers: Sequence[PlannedLayer]) -> list[PlannedLayer]:
    """``layers`` with each residual block replaced by its body: the path a unit's field grows along (the shortcut, a
    1x1 conv with the body's stride or the identity, sees a part of what the body sees)."""
    return [q for p in layers for q in (p.body if p.body else (p,))]


def _window(p: PlannedLayer, axis: int) -> tuple[int, int, int]:
    """(kernel, stride, padding before) of a layer along one spatial axis; (1, 1, 0) for element-wise layers."""
    if isinstance(p.layer, Conv):
        kernel, stride = p.layer.span_hw[axis], p.layer.stride
        before = same_padding(p.input_shape[1 + axis], kernel, stride)[0] if p.layer.padding == "same" else 0
        return kernel, stride, before
    if isinstance(p.layer, (MaxPool, AvgPool)):
        return p.layer.pool_size, p.layer.pool_size, 0
    return 1, 1, 0


def conv2d(
    x: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None,
    stride: int,
    pads: tuple[tuple[int, int], tuple[int, int]],
    dilation: int = 1,
    groups: int = 1,
) -> np.ndarray:
    """Cross-correlation of (N, C, H, W) inputs with (O, C / groups, kh, kw) kernels: (N, O, H', W') plus the bias.
    The kernel's taps are ``dilation`` pixels apart; output channel o sees the input channels of group
    o // (O / groups) only."""
    if any(any(p) for p in pads):
        x = np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]))
    out_channels, per_group, kh, kw = kernel.shape
    span = ((kh - 1) * dilation + 1, (kw - 1) * dilation + 1)
    windows = np.lib.stride_tricks.sliding_window_view(x, span, axis=(2, 3))[:, :, ::stride, ::stride, ::dilation, ::dilation]
    if groups == 1:
        out = np.tensordot(windows, kernel, axes=([1, 4, 5], [1, 2, 3]))  # (N, H', W', O)
    else:
        n, _, ho, wo = windows.shape[:4]
        grouped = windows.reshape(n, groups, per_group, ho, wo, kh, kw)
        out = np.einsum("ngchwij,gocij->nhwgo", grouped, kernel.reshape(groups, out_channels // groups, per_group, kh, kw))
        out = out.reshape(n, ho, wo, out_channels)
    if bias is not None:
        out = out + bias
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _pool_offsets(x: np.ndarray, size: int):
    """The size * size strided views of x whose element (h, w) is one element of pooling window (h, w), row by row."""
    ho, wo = x.shape[2] // size, x.shape[3] // size
    for i in range(size):
        for j in range(size):
            yield i, j, x[:, :, i : i + size * ho : size, j : j + size * wo : size]


def max_pool(x: np.ndarray, size: int) -> np.ndarray:
    """Max over size x size windows with stride size; the remainder rows and columns are dropped."""
    views = _pool_offsets(x, size)
    _, _, first = next(views)
    out = first.copy()
    for _, _, view in views:
        np.maximum(out, view, out=out)
    return out


def avg_pool(x: np.ndarray, size: int) -> np.ndarray:
    """Mean over size x size windows with stride size; the remainder rows and columns are dropped."""
    total = None
    for _, _, view in _pool_offsets(x, size):
        total = view.copy() if total is None else total + view
    return total / x.dtype.type(size * size)


def _pads(p: PlannedLayer) -> tuple[tuple[int, int], tuple[int, int]]:
    layer = p.layer
    if not isinstance(layer, Conv) or layer.padding != "same":
        return (0, 0), (0, 0)
    return (
        same_padding(p.input_shape[1], layer.span_hw[0], layer.stride),
        same_padding(p.input_shape[2], layer.span_hw[1], layer.stride),
    )


def response_batches(network: RecordedNetwork, images: np.ndarray, batch: int = 500) -> Iterator[np.ndarray]:
    """The target layer's responses to (N, C, H, W) images, ``batch`` images at a time, in order: (n, filters, H',
    W') float32 each, so that a search over a whole test set need not hold every response map at once."""
    for start in range(0, len(images), batch):
        x = np.asarray(images[start : start + batch], dtype=np.float32)
        yield _forward(network, network.layers, x, windows=False)[0]


def responses(network: RecordedNetwork, images: np.ndarray, batch: int = 500) -> np.ndarray:
    """The target layer's responses (N, filters, H', W') to (N, C, H, W) images, in float32, a batch at a time."""
    out = list(response_batches(network, images, batch))
    if not out:
        return np.zeros((0, network.filters, *network.target.output_shape[1:]), dtype=np.float32)
    return np.concatenate(out)


def _forward(network: RecordedNetwork, layers: Sequence[PlannedLayer], x: np.ndarray, windows: bool) -> tuple[np.ndarray, list]:
    """``x`` through ``layers`` (the target's activation left off), and the trace :func:`_backward_trace` goes back
    along: (layer, input, output, what a residual block needs) per layer. ``windows``: every conv 'valid', for
    inputs that are receptive-field windows (see :func:`window_responses`)."""
    trace = []
    for p in layers:
        before, extra = x, None
        if isinstance(p.layer, Residual):
            x, extra = _residual(network, p, x, windows)
        else:
            pads = ((0, 0), (0, 0)) if windows or not isinstance(p.layer, Conv) else _pads(p)
            x = _apply(network, p, x, pads=pads, last=p is network.target)
        trace.append((p, before, x, extra))
    return x, trace


def _residual(network: RecordedNetwork, p: PlannedLayer, x: np.ndarray, windows: bool) -> tuple[np.ndarray, tuple]:
    """A residual block's output, and (body trace, shortcut trace, crop, sum before the activation) for going back.

    On windows, the body's 'valid' convs leave fewer units than the shortcut: body unit v is the block's unit
    v + P / J, P the rows of 'same' padding the body adds before and J its stride, so the shortcut's units are
    cropped from there."""
    body, body_trace = _forward(network, p.body, x, windows)
    shortcut, shortcut_trace = (x, []) if p.shortcut is None else _forward(network, (p.shortcut,), x, windows)
    crop = (0, 0)
    if windows:
        field = receptive_field(p.body)
        if any(-offset % jump for offset, jump in zip(field.offset, field.jump)):
            raise ConvexpError(
                f"{p.name}: its layers pad by rows that are not a multiple of their stride, so a window of the input "
                "cannot be replayed through it; see these filters with --patches instead"
            )
        crop = (-field.offset[0] // field.jump[0], -field.offset[1] // field.jump[1])
        shortcut = shortcut[:, :, crop[0] : crop[0] + body.shape[2], crop[1] : crop[1] + body.shape[3]]
    total = body + shortcut
    activation = p.layer.activation  # type: ignore[union-attr]
    out = total if activation == "none" else activations.apply(activation, total)
    return out, (body_trace, shortcut_trace, crop, total)


def _apply(network: RecordedNetwork, p: PlannedLayer, x: np.ndarray, pads, last: bool) -> np.ndarray:
    """``x`` through one layer that is not a residual block."""
    layer = p.layer
    if isinstance(layer, Conv):
        kernel, bias = network.weights[p.name]
        bias = None if bias is None else bias.astype(x.dtype)
        x = conv2d(x, kernel.astype(x.dtype), bias, layer.stride, pads, layer.dilation, layer.groups)
        return x if last or layer.activation == "none" else activations.apply(layer.activation, x)
    if isinstance(layer, MaxPool):
        return max_pool(x, layer.pool_size)
    if isinstance(layer, AvgPool):
        return avg_pool(x, layer.pool_size)
    if isinstance(layer, ReLU):
        return np.maximum(x, 0)
    if isinstance(layer, ActivationLayer):
        return activations.apply(layer.activation, x)
    if isinstance(layer, BatchNorm):
        scale, shift = _batch_norm_affine(network, p, x.dtype)
        return x * scale + shift
    return x  # dropout: the identity at test time


def _batch_norm_affine(network: RecordedNetwork, p: PlannedLayer, dtype) -> tuple[np.ndarray, np.ndarray]:
    """A batch_norm layer at test time, as (scale, shift) per channel shaped to broadcast over (N, C, H, W):
    y = gamma * (x - running mean) / sqrt(running variance + epsilon) + beta = scale * x + shift."""
    gamma, beta, mean, variance = network.weights[p.name][0].astype(np.float64)
    scale = gamma / np.sqrt(variance + p.layer.epsilon)  # type: ignore[union-attr]
    shift = beta - mean * scale
    return scale.astype(dtype)[:, None, None], shift.astype(dtype)[:, None, None]


def window_responses(
    network: RecordedNetwork, windows: np.ndarray, filter_indices: Sequence[int] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Filter ``filter_indices[n]``'s response to input window ``windows[n]`` (N, C, size, size), and its gradient
    with respect to that window: (responses (N,), gradients (N, C, size, size)).

    Each window is run through the layers with 'valid' windows, which for a receptive-field-sized
    input ends in a single unit: the response of a unit whose field lies inside the image. Computed
    in float64, so the gradient can be checked against finite differences.
    """
    x, trace = _forward(network, network.layers, np.asarray(windows, dtype=np.float64), windows=True)
    if x.shape[2:] != (1, 1):
        raise ConvexpError(f"a {windows.shape[2]}x{windows.shape[3]} window does not end in one unit of {network.target.name}")
    rows = np.arange(len(x))
    chosen = np.asarray(filter_indices)
    values = x[rows, chosen, 0, 0]
    grad = np.zeros_like(x)
    grad[rows, chosen, 0, 0] = 1.0
    return values, _backward_trace(network, trace, grad)


def _backward_trace(network: RecordedNetwork, trace: list, grad: np.ndarray) -> np.ndarray:
    """The gradient with respect to the input of the layers :func:`_forward` traced, given the output's."""
    for p, before, after, extra in reversed(trace):
        if extra is None:
            grad = _backward(network, p, before, after, grad, last=p is network.target)
            continue
        body_trace, shortcut_trace, crop, total = extra
        activation = p.layer.activation
        if activation != "none":
            grad = activations.gradient(activation, total, after, grad)
        height, width = grad.shape[2:]
        shortcut_out = shortcut_trace[0][2] if shortcut_trace else before
        full = np.zeros((*grad.shape[:2], *shortcut_out.shape[2:]), dtype=grad.dtype)
        full[:, :, crop[0] : crop[0] + height, crop[1] : crop[1] + width] = grad
        through_shortcut = _backward_trace(network, shortcut_trace, full) if shortcut_trace else full
        grad = _backward_trace(network, body_trace, grad) + through_shortcut
    return grad


def window_response(network: RecordedNetwork, window: np.ndarray, filter_index: int) -> tuple[float, np.ndarray]:
    """One filter's response to one (C, size, size) input window, and the gradient (see :func:`window_responses`)."""
    values, grads = window_responses(network, np.asarray(window)[None], [filter_index])
    return float(values[0]), grads[0]


def _backward(network: RecordedNetwork, p: PlannedLayer, x: np.ndarray, y: np.ndarray, dy: np.ndarray, last: bool) -> np.ndarray:
    layer = p.layer
    if isinstance(layer, Conv):
        kernel = network.weights[p.name][0].astype(np.float64)
        if not last and layer.activation == "relu":
            dy = dy * (y > 0)
        elif not last and layer.activation != "none":
            pre = conv2d(x, kernel, _bias64(network, p), layer.stride, ((0, 0), (0, 0)), layer.dilation, layer.groups)
            dy = activations.gradient(layer.activation, pre, y, dy)
        stride, dilation, groups = layer.stride, layer.dilation, layer.groups
        out_channels, per_group, kh, kw = kernel.shape
        n, _, ho, wo = dy.shape
        if groups == 1:
            columns = np.tensordot(dy, kernel, axes=([1], [0]))  # (N, H', W', C, kh, kw): what each window receives
        else:
            grouped_kernel = kernel.reshape(groups, out_channels // groups, per_group, kh, kw)
            grouped_dy = dy.reshape(n, groups, out_channels // groups, ho, wo)
            columns = np.einsum("ngohw,gocij->nhwgcij", grouped_dy, grouped_kernel).reshape(n, ho, wo, -1, kh, kw)
        dx = np.zeros_like(x)
        for i in range(kh):
            for j in range(kw):
                top, left = i * dilation, j * dilation
                dx[:, :, top : top + stride * (ho - 1) + 1 : stride, left : left + stride * (wo - 1) + 1 : stride] += columns[
                    :, :, :, :, i, j
                ].transpose(0, 3, 1, 2)
        return dx
    if isinstance(layer, MaxPool):
        # each window's gradient goes to its maximum (the first one, row by row, when several tie)
        dx = np.zeros_like(x)
        unclaimed = np.ones(y.shape, dtype=bool)
        size = layer.pool_size
        for i, j, view in _pool_offsets(x, size):
            winner = unclaimed & (view == y)
            dx[:, :, i : i + size * y.shape[2] : size, j : j + size * y.shape[3] : size] = np.where(winner, dy, 0.0)
            unclaimed &= ~winner
        return dx
    if isinstance(layer, AvgPool):
        size = layer.pool_size
        dx = np.zeros_like(x)
        for i, j, _ in _pool_offsets(x, size):
            dx[:, :, i : i + size * y.shape[2] : size, j : j + size * y.shape[3] : size] = dy / (size * size)
        return dx
    if isinstance(layer, ReLU):
        return dy * (x > 0)
    if isinstance(layer, ActivationLayer):
        return activations.gradient(layer.activation, x, y, dy)
    if isinstance(layer, BatchNorm):
        return dy * _batch_norm_affine(network, p, dy.dtype)[0]
    return dy


def _bias64(network: RecordedNetwork, p: PlannedLayer) -> np.ndarray | None:
    bias = network.weights[p.name][1]
    return None if bias is None else bias.astype(np.float64)


def load_network(store, run, layer: str, step: int | str = "last") -> RecordedNetwork:
    """The recorded network of ``run`` up to conv layer ``layer`` with the weights recorded at ``step``
    (a step number, ``first`` or ``last`` of that layer's snapshots); every conv layer below it must
    have been recorded at that step too."""

    try:
        planned = plan_recorded(run.spec)
    except ValueError as exc:
        raise ConvexpError(f"run {run.id}: {exc}") from None
    layers = conv_layers_up_to(planned, layer)
    steps = store.snapshot_steps(run.id, layer)
    chosen = steps[step_index(steps, step, run.id, layer)]
    weights = {}
    for p in flat(layers):
        if isinstance(p.layer, (Conv, BatchNorm)):
            recorded = store.snapshot_steps(run.id, p.name)
            if chosen not in recorded:
                raise ConvexpError(
                    f"run {run.id} recorded {layer} at step {chosen} but not {p.name}, which feeds it; "
                    f"record every conv layer (snapshots: layers) to see what {layer} responds to"
                )
            snap = store.snapshot(run.id, p.name, chosen)
            bias = snap.bias_array
            weights[p.name] = (snap.kernel_array.astype(np.float64), None if bias is None else bias.astype(np.float64))
    return RecordedNetwork(run.id, int(chosen), layers, weights)
