"""Forward and backward passes of each layer, in float32 numpy, channels-last (N, H, W, C).

Convolution is im2col: the input's kh x kw windows are copied once into a
(N*H'*W', kh*kw*C) matrix and multiplied by the (kh*kw*C, O) kernel in one BLAS call;
the kernel gradient is one more matmul. Python loops run only over the kh*kw kernel
offsets (col2im) and pool window offsets, never over samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from convexp.plugin_api import Padding, conv_output_size, same_padding


@dataclass
class ConvCache:
    """What the backward pass of a conv needs from its forward pass."""

    columns: np.ndarray  # (N*H'*W', kh*kw*C) plus a ones column for the bias; grouped: (G, N*H'*W', kh*kw*C/G)
    input_shape: tuple[int, int, int, int]  # (N, H, W, C) before padding
    pads: tuple[tuple[int, int], tuple[int, int]]
    out_hw: tuple[int, int]
    dilation: int = 1
    groups: int = 1


def _pads(height: int, width: int, kh: int, kw: int, stride: int, padding: Padding):
    if padding == "valid":
        return (0, 0), (0, 0)
    return same_padding(height, kh, stride), same_padding(width, kw, stride)


def conv_forward(
    x: np.ndarray,
    kernel_hwio: np.ndarray,
    bias: np.ndarray | None,
    stride: int,
    padding: Padding,
    dilation: int = 1,
    groups: int = 1,
) -> tuple[np.ndarray, ConvCache]:
    """Cross-correlate x (N, H, W, C) with kernel (kh, kw, C / groups, O): returns (N, H', W', O) and a cache.

    The bias rides in the matmul as one more row of weights against a column of ones, so that
    adding it (and, backwards, summing its gradient) costs no extra pass over the output. With groups,
    output channel o sees only the input channels of its group (o // (O / groups)): one matmul per group.
    """
    n, height, width, channels = x.shape
    kh, kw, _, out_channels = kernel_hwio.shape
    span_h, span_w = (kh - 1) * dilation + 1, (kw - 1) * dilation + 1
    pads = _pads(height, width, span_h, span_w, stride, padding)
    if pads != ((0, 0), (0, 0)):
        x = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    out_h = conv_output_size(height, span_h, stride, padding)
    out_w = conv_output_size(width, span_w, stride, padding)
    grouped = groups > 1
    columns = _im2col(x, kh, kw, stride, dilation, out_h, out_w, ones_column=bias is not None and not grouped)
    if grouped:
        rows, per_group = n * out_h * out_w, channels // groups
        columns = np.ascontiguousarray(
            columns.reshape(rows, kh * kw, groups, per_group).transpose(2, 0, 1, 3).reshape(groups, rows, kh * kw * per_group)
        )
        out = (columns @ _grouped_weights(kernel_hwio, groups)).transpose(1, 0, 2).reshape(rows, out_channels)
        if bias is not None:
            out += bias.astype(out.dtype)
    else:
        weights = kernel_hwio.reshape(kh * kw * channels, out_channels)
        if bias is not None:
            weights = np.concatenate([weights, bias.reshape(1, out_channels).astype(weights.dtype)])
        out = columns @ weights
    cache = ConvCache(columns, (n, height, width, channels), pads, (out_h, out_w), dilation, groups)
    return out.reshape(n, out_h, out_w, out_channels), cache


def _grouped_weights(kernel_hwio: np.ndarray, groups: int) -> np.ndarray:
    """(kh, kw, C/G, O) as (G, kh*kw*C/G, O/G): group g's kernel is output channels g*O/G to (g+1)*O/G."""
    kh, kw, per_group, out_channels = kernel_hwio.shape
    return kernel_hwio.reshape(kh * kw * per_group, groups, out_channels // groups).transpose(1, 0, 2)


def _im2col(x: np.ndarray, kh: int, kw: int, stride: int, dilation: int, out_h: int, out_w: int, ones_column: bool) -> np.ndarray:
    """The (N*H'*W', kh*kw*C [+ 1]) matrix of every window, columns ordered (kh, kw, C) like the HWIO kernel."""
    n, _, _, channels = x.shape
    size = kh * kw * channels
    columns = np.empty((n, out_h, out_w, size + ones_column), dtype=x.dtype)
    windows = columns[..., :size].reshape(n, out_h, out_w, kh, kw, channels)  # a view into columns
    if channels < 8 or dilation > 1:  # few channels: kh*kw strided slice copies beat a transposed window view
        for i in range(kh):
            for j in range(kw):
                top, left = i * dilation, j * dilation
                windows[:, :, :, i, j, :] = x[:, top : top + stride * out_h : stride, left : left + stride * out_w : stride, :]
    else:
        view = sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::stride, ::stride][:, :out_h, :out_w]
        windows[...] = view.transpose(0, 1, 2, 4, 5, 3)  # (N, H', W', C, kh, kw) -> (N, H', W', kh, kw, C)
    if ones_column:
        columns[..., size] = 1
    return columns.reshape(n * out_h * out_w, size + ones_column)


def conv_backward(
    grad_out: np.ndarray, kernel_hwio: np.ndarray, cache: ConvCache, stride: int, need_input_grad: bool
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients of a conv: (d input or None, d kernel (kh, kw, C/G, O), d bias (O,) or None without bias)."""
    kh, kw, per_group, out_channels = kernel_hwio.shape
    groups, dilation = cache.groups, cache.dilation
    channels = per_group * groups
    size = kh * kw * per_group
    grad_2d = grad_out.reshape(-1, out_channels)
    if groups > 1:
        grad_groups = grad_2d.reshape(len(grad_2d), groups, out_channels // groups).transpose(1, 0, 2)  # (G, M, O/G)
        grad_weights = cache.columns.transpose(0, 2, 1) @ grad_groups  # (G, kh*kw*C/G, O/G)
        grad_kernel = np.ascontiguousarray(grad_weights.transpose(1, 0, 2)).reshape(kernel_hwio.shape)
        grad_bias = grad_2d.sum(axis=0)
    else:
        grad_weights = cache.columns.T @ grad_2d  # its last row, against the ones column, is the bias gradient
        grad_kernel = grad_weights[:size].reshape(kernel_hwio.shape)
        grad_bias = grad_weights[size] if cache.columns.shape[1] > size else None
    if not need_input_grad:
        return None, grad_kernel, grad_bias
    n, height, width, _ = cache.input_shape
    out_h, out_w = cache.out_hw
    (top, bottom), (left, right) = cache.pads
    grad_padded = np.zeros((n, height + top + bottom, width + left + right, channels), dtype=grad_out.dtype)
    for i in range(kh):  # col2im, one kernel offset at a time: each product lands contiguous, ready to add
        for j in range(kw):
            if groups > 1:  # (G, M, O/G) @ (G, O/G, C/G) -> (G, M, C/G) -> (M, C)
                tap = kernel_hwio[i, j].reshape(per_group, groups, out_channels // groups).transpose(1, 2, 0)
                contribution = (grad_groups @ tap).transpose(1, 0, 2).reshape(n, out_h, out_w, channels)
            else:
                contribution = (grad_2d @ kernel_hwio[i, j].T).reshape(n, out_h, out_w, channels)
            row, col = i * dilation, j * dilation
            grad_padded[:, row : row + stride * out_h : stride, col : col + stride * out_w : stride, :] += contribution
    return grad_padded[:, top : top + height, left : left + width, :], grad_kernel, grad_bias


def _window_slices(pool: int, out_h: int, out_w: int):
    """For each offset (i, j) inside a pool x pool window, the strided slices that pick it from every window."""
    for i in range(pool):
        for j in range(pool):
            yield (slice(None), slice(i, i + pool * out_h, pool), slice(j, j + pool * out_w, pool), slice(None))


def maxpool_forward(x: np.ndarray, pool: int) -> np.ndarray:
    """Max over pool x pool windows with stride pool; rows/columns that do not fill a window are dropped."""
    out_h, out_w = x.shape[1] // pool, x.shape[2] // pool
    slices = _window_slices(pool, out_h, out_w)
    out = x[next(slices)].copy()
    for window_offset in slices:  # elementwise maxima of strided views: no reduction over scattered axes
        np.maximum(out, x[window_offset], out=out)
    return out


def maxpool_backward(grad_out: np.ndarray, x: np.ndarray, out: np.ndarray, pool: int) -> np.ndarray:
    """Route each window's gradient to its maximum (the first one, in row-major order, on ties)."""
    out_h, out_w = out.shape[1], out.shape[2]
    grad_x = np.empty_like(x, dtype=grad_out.dtype)  # every pooled position is written below
    grad_x[:, pool * out_h :] = 0  # rows and columns left out of every window get no gradient
    grad_x[:, :, pool * out_w :] = 0
    unclaimed = np.ones(out.shape, dtype=bool)  # windows whose maximum has not been found yet
    is_max = np.empty(out.shape, dtype=bool)
    for window_offset in _window_slices(pool, out_h, out_w):
        np.equal(x[window_offset], out, out=is_max)
        np.logical_and(is_max, unclaimed, out=is_max)
        np.logical_xor(unclaimed, is_max, out=unclaimed)  # is_max lies within unclaimed: this removes it
        np.multiply(grad_out, is_max, out=grad_x[window_offset])
    return grad_x


def avgpool_forward(x: np.ndarray, pool: int) -> np.ndarray:
    """Mean over pool x pool windows with stride pool of (N, H, W, C) activations; remainders dropped."""
    n, height, width, channels = x.shape
    out_h, out_w = height // pool, width // pool
    windows = x[:, : out_h * pool, : out_w * pool].reshape(n, out_h, pool, out_w, pool, channels)
    return windows.mean(axis=(2, 4), dtype=x.dtype)


def avgpool_backward(grad_out: np.ndarray, x_shape: tuple[int, ...], pool: int) -> np.ndarray:
    """Each window's gradient shared equally among its pool * pool inputs; the dropped rows and columns get 0."""
    n, out_h, out_w, channels = grad_out.shape
    grad_x = np.zeros(x_shape, dtype=grad_out.dtype)
    share = np.repeat(np.repeat(grad_out / grad_out.dtype.type(pool * pool), pool, axis=1), pool, axis=2)
    grad_x[:, : out_h * pool, : out_w * pool] = share
    return grad_x


def _softmax_parts(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """exp(logits - max), their row sums, and the log-probability of each true label (stable for large logits)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sums = exp.sum(axis=1, keepdims=True)
    log_probs_true = shifted[np.arange(len(labels)), labels] - np.log(sums[:, 0])
    return exp, sums, log_probs_true


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray, smoothing: float = 0.0) -> tuple[float, float, np.ndarray]:
    """Mean softmax cross-entropy, accuracy, and the gradient of the mean loss w.r.t. the logits. With
    ``smoothing`` s the targets are (1 - s) one-hot + s / classes: loss -(1 - s) log p_y - s / K sum_k log p_k."""
    exp, sums, log_probs_true = _softmax_parts(logits, labels)
    accuracy = float((logits.argmax(axis=1) == labels).mean())
    grad = exp / sums
    if smoothing:
        classes = logits.shape[1]
        log_probs = logits - logits.max(axis=1, keepdims=True) - np.log(sums)
        loss = float(-((1 - smoothing) * log_probs_true + smoothing / classes * log_probs.sum(axis=1)).mean())
        grad -= np.float32(smoothing / classes)
        grad[np.arange(len(labels)), labels] -= np.float32(1.0 - smoothing)
    else:
        loss = float(-log_probs_true.mean())
        grad[np.arange(len(labels)), labels] -= 1.0
    grad /= len(labels)
    return loss, accuracy, grad


def loss_and_accuracy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """Summed softmax cross-entropy and the count of correct predictions (for evaluation in batches)."""
    _, _, log_probs_true = _softmax_parts(logits, labels)
    return float(-log_probs_true.astype(np.float64).sum()), int((logits.argmax(axis=1) == labels).sum())


def channel_sums(values: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
    """The float64 sums over every axis but the last (channels) of ``values``, or of ``values * times``.

    A float32 sum over the batch and every position (tens of thousands of values, along strided axes that numpy
    adds one by one) loses about 1e-3 of its value; batch normalisation's gradient then loses as much, where
    torch's and TensorFlow's reductions stay near float32's 1e-7. ``einsum`` sums in float64 without a float64
    copy of the values, and takes a product in the same pass."""
    flat = values.reshape(-1, values.shape[-1])
    if times is None:
        return np.einsum("ij->j", flat, dtype=np.float64)
    return np.einsum("ij,ij->j", flat, times.reshape(flat.shape), dtype=np.float64)
