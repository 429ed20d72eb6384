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

from convexp.layers import Padding, conv_output_size, same_padding


@dataclass
class ConvCache:
    """What the backward pass of a conv needs from its forward pass."""

    columns: np.ndarray  # (N*H'*W', kh*kw*C)
    input_shape: tuple[int, int, int, int]  # (N, H, W, C) before padding
    pads: tuple[tuple[int, int], tuple[int, int]]
    out_hw: tuple[int, int]


def _pads(height: int, width: int, kh: int, kw: int, stride: int, padding: Padding):
    if padding == "valid":
        return (0, 0), (0, 0)
    return same_padding(height, kh, stride), same_padding(width, kw, stride)


def conv_forward(
    x: np.ndarray, kernel_hwio: np.ndarray, bias: np.ndarray | None, stride: int, padding: Padding
) -> tuple[np.ndarray, ConvCache]:
    """Cross-correlate x (N, H, W, C) with kernel (kh, kw, C, O): returns (N, H', W', O) and a cache."""
    n, height, width, channels = x.shape
    kh, kw, _, out_channels = kernel_hwio.shape
    pads = _pads(height, width, kh, kw, stride, padding)
    if pads != ((0, 0), (0, 0)):
        x = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    out_h = conv_output_size(height, kh, stride, padding)
    out_w = conv_output_size(width, kw, stride, padding)
    windows = sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::stride, ::stride][:, :out_h, :out_w]
    # windows: (N, H', W', C, kh, kw) -> columns ordered (kh, kw, C) like the HWIO kernel
    columns = windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * out_h * out_w, kh * kw * channels)
    out = columns @ kernel_hwio.reshape(kh * kw * channels, out_channels)
    if bias is not None:
        out += bias
    cache = ConvCache(columns, (n, height, width, channels), pads, (out_h, out_w))
    return out.reshape(n, out_h, out_w, out_channels), cache


def conv_backward(
    grad_out: np.ndarray, kernel_hwio: np.ndarray, cache: ConvCache, stride: int, need_input_grad: bool
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of a conv: (d input or None, d kernel (kh, kw, C, O), d bias (O,))."""
    kh, kw, channels, out_channels = kernel_hwio.shape
    grad_2d = grad_out.reshape(-1, out_channels)
    grad_kernel = (cache.columns.T @ grad_2d).reshape(kernel_hwio.shape)
    grad_bias = grad_2d.sum(axis=0)
    if not need_input_grad:
        return None, grad_kernel, grad_bias
    n, height, width, _ = cache.input_shape
    out_h, out_w = cache.out_hw
    (top, bottom), (left, right) = cache.pads
    grad_columns = (grad_2d @ kernel_hwio.reshape(-1, out_channels).T).reshape(n, out_h, out_w, kh, kw, channels)
    grad_padded = np.zeros((n, height + top + bottom, width + left + right, channels), dtype=grad_out.dtype)
    for i in range(kh):
        for j in range(kw):
            grad_padded[:, i : i + stride * out_h : stride, j : j + stride * out_w : stride, :] += grad_columns[
                :, :, :, i, j, :
            ]
    return grad_padded[:, top : top + height, left : left + width, :], grad_kernel, grad_bias


def maxpool_forward(x: np.ndarray, pool: int) -> np.ndarray:
    """Max over pool x pool windows with stride pool; rows/columns that do not fill a window are dropped."""
    n, height, width, channels = x.shape
    out_h, out_w = height // pool, width // pool
    windows = x[:, : out_h * pool, : out_w * pool, :].reshape(n, out_h, pool, out_w, pool, channels)
    return windows.max(axis=(2, 4))


def maxpool_backward(grad_out: np.ndarray, x: np.ndarray, out: np.ndarray, pool: int) -> np.ndarray:
    """Route each window's gradient to its maximum (the first one, in row-major order, on ties)."""
    n, height, width, channels = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    windows = x[:, : out_h * pool, : out_w * pool, :].reshape(n, out_h, pool, out_w, pool, channels)
    grad = np.zeros((n, out_h, pool, out_w, pool, channels), dtype=grad_out.dtype)
    taken = np.zeros(out.shape, dtype=bool)
    for i in range(pool):
        for j in range(pool):
            is_max = windows[:, :, i, :, j, :] == out
            is_max &= ~taken
            taken |= is_max
            grad[:, :, i, :, j, :] = np.where(is_max, grad_out, 0)
    grad_x = np.zeros_like(x, dtype=grad_out.dtype)
    grad_x[:, : out_h * pool, : out_w * pool, :] = grad.reshape(n, out_h * pool, out_w * pool, channels)
    return grad_x


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Mean softmax cross-entropy, accuracy, and the gradient of the mean loss w.r.t. the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sums = exp.sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    log_probs_true = shifted[rows, labels] - np.log(sums[:, 0])
    loss = float(-log_probs_true.mean())
    accuracy = float((logits.argmax(axis=1) == labels).mean())
    grad = exp / sums
    grad[rows, labels] -= 1.0
    grad /= len(labels)
    return loss, accuracy, grad


def loss_and_accuracy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """Summed softmax cross-entropy and the count of correct predictions (for evaluation in batches)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs_true = shifted[np.arange(len(labels)), labels] - np.log(np.exp(shifted).sum(axis=1))
    return float(-log_probs_true.astype(np.float64).sum()), int((logits.argmax(axis=1) == labels).sum())
