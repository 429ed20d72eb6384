"""A complete small trainer: a sequential CNN in numpy (NCHW), SGD/momentum/Nesterov and Adam, checkpoints.

Everything convexp asks of a trainer, in one file, using only the plugin API:

- the network is built from ``job.layers`` (convexp.layers: Conv, MaxPool, ReLU, Flatten, Dropout, Dense);
- initial weights are ``job.initial_weights`` when given, else drawn with ``convexp.seeding.initial_weights``;
- ``convexp.training.run_epochs`` runs the epochs and reports to the observer;
- ``kernels()`` hands out float32 copies of the conv kernels in (out, in, kh, kw) layout;
- ``state()`` saves weights, optimizer state and the dropout generator, and ``job.resume_from`` restores them.
"""

from __future__ import annotations

import io
import json

import numpy as np

from convexp.layers import Conv, Dense, Dropout, Flatten, MaxPool, PlannedLayer, ReLU, same_padding
from convexp.seeding import backend_rng, initial_weights
from convexp.training import SGD, KernelSnapshot, TrainingJob, TrainingObserver, run_epochs


class Network:
    """The layers of a planned network with their parameters; forward and backward on NCHW batches."""

    def __init__(self, layers: tuple[PlannedLayer, ...], weights, rng: np.random.Generator):
        self.layers = layers
        self.rng = rng
        self.params: dict[str, list[np.ndarray]] = {
            name: [np.array(w.kernel, dtype=np.float32), np.array(w.bias, dtype=np.float32)] for name, w in weights.items()
        }
        self.grads: dict[str, list[np.ndarray]] = {}

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        self.cache = []
        for p in self.layers:
            layer, before = p.layer, x
            if isinstance(layer, Conv):
                kernel, bias = self.params[p.name]
                pads = [
                    same_padding(p.input_shape[1 + a], layer.kernel_hw[a], layer.stride) if layer.padding == "same" else (0, 0)
                    for a in (0, 1)
                ]
                padded = np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]))
                windows = np.lib.stride_tricks.sliding_window_view(padded, layer.kernel_hw, axis=(2, 3))
                windows = windows[:, :, :: layer.stride, :: layer.stride]
                x = np.tensordot(windows, kernel, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2) + bias[:, None, None]
                extra = (padded.shape, pads, windows)
            elif isinstance(layer, MaxPool):
                k = layer.pool_size
                n, c, h, w = x.shape
                blocks = x[:, :, : h // k * k, : w // k * k].reshape(n, c, h // k, k, w // k, k)
                x = blocks.max(axis=(3, 5))
                extra = blocks
            elif isinstance(layer, Flatten):
                x = x.transpose(0, 2, 3, 1).reshape(len(x), -1)  # (H, W, C) order, as Keras flattens
                extra = before.shape
            elif isinstance(layer, Dropout):
                keep = (self.rng.random(x.shape) >= layer.rate) if training else None
                x = x * keep / (1.0 - layer.rate) if keep is not None else x  # inverted dropout
                extra = keep
            elif isinstance(layer, Dense):
                kernel, bias = self.params[p.name]
                x = x @ kernel + bias
                extra = None
            elif isinstance(layer, ReLU):
                extra = None
            else:
                raise TypeError(f"unknown layer {layer!r}")
            if isinstance(layer, ReLU) or getattr(layer, "activation", "none") == "relu":
                x = np.maximum(x, 0)
            self.cache.append((before, x, extra))
        return x

    def backward(self, grad: np.ndarray) -> None:
        for p, (before, after, extra) in zip(reversed(self.layers), reversed(self.cache)):
            layer = p.layer
            if isinstance(layer, ReLU) or getattr(layer, "activation", "none") == "relu":
                grad = grad * (after > 0)
            if isinstance(layer, Conv):
                kernel = self.params[p.name][0]
                padded_shape, pads, windows = extra
                self.grads[p.name] = [np.tensordot(grad, windows, axes=([0, 2, 3], [0, 2, 3])), grad.sum(axis=(0, 2, 3))]
                columns = np.tensordot(grad, kernel, axes=([1], [0]))  # (N, H', W', C, kh, kw)
                d_padded = np.zeros(padded_shape, dtype=grad.dtype)
                ho, wo, s = grad.shape[2], grad.shape[3], layer.stride
                for i in range(kernel.shape[2]):
                    for j in range(kernel.shape[3]):
                        d_padded[:, :, i : i + s * (ho - 1) + 1 : s, j : j + s * (wo - 1) + 1 : s] += columns[
                            ..., i, j
                        ].transpose(0, 3, 1, 2)
                grad = d_padded[:, :, pads[0][0] : padded_shape[2] - pads[0][1], pads[1][0] : padded_shape[3] - pads[1][1]]
            elif isinstance(layer, MaxPool):
                k, blocks = layer.pool_size, extra
                n, c, ho, _, wo, _ = blocks.shape
                flat = blocks.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, ho, wo, k * k)
                first = np.zeros_like(flat)
                np.put_along_axis(first, flat.argmax(axis=-1)[..., None], 1.0, axis=-1)  # the first maximum takes it
                routed = (first * grad[..., None]).reshape(n, c, ho, wo, k, k).transpose(0, 1, 2, 4, 3, 5)
                d_before = np.zeros_like(before)
                d_before[:, :, : ho * k, : wo * k] = routed.reshape(n, c, ho * k, wo * k)
                grad = d_before
            elif isinstance(layer, Flatten):
                n, c, h, w = extra
                grad = grad.reshape(n, h, w, c).transpose(0, 3, 1, 2)
            elif isinstance(layer, Dropout) and extra is not None:
                grad = grad * extra / (1.0 - layer.rate)
            elif isinstance(layer, Dense):
                kernel = self.params[p.name][0]
                self.grads[p.name] = [before.T @ grad, grad.sum(axis=0)]
                grad = grad @ kernel.T

    def kernels(self, names) -> dict[str, KernelSnapshot]:
        return {name: KernelSnapshot(self.params[name][0].copy(), self.params[name][1].copy()) for name in names}


class Optimizer:
    """SGD (momentum, Nesterov, as torch.optim writes them) and Adam (as Keras 3 computes it)."""

    def __init__(self, config, params: dict[str, list[np.ndarray]]):
        self.config = config
        self.state = {
            f"{name}.{i}.{slot}": np.zeros_like(param)
            for name, pair in params.items()
            for i, param in enumerate(pair)
            for slot in ("m", "v")
        }
        self.step_count = 0

    def update(self, params: dict[str, list[np.ndarray]], grads: dict[str, list[np.ndarray]]) -> None:
        c = self.config
        self.step_count += 1
        for name, pair in params.items():
            for i, param in enumerate(pair):
                g = grads[name][i].astype(np.float32)
                m, v = self.state[f"{name}.{i}.m"], self.state[f"{name}.{i}.v"]
                if isinstance(c, SGD):
                    if c.momentum:
                        m *= c.momentum
                        m += g
                        g = g + c.momentum * m if c.nesterov else m
                    param -= np.float32(c.learning_rate) * g
                else:
                    t = self.step_count
                    m += (1 - c.beta_1) * (g - m)
                    v += (1 - c.beta_2) * (g * g - v)
                    rate = c.learning_rate * np.sqrt(1 - c.beta_2**t) / (1 - c.beta_1**t)
                    param -= np.float32(rate) * m / (np.sqrt(v) + np.float32(c.epsilon))


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Mean loss, accuracy, and the gradient of the mean loss with respect to the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    loss = float(-np.log(probabilities[rows, labels] + 1e-30).mean())
    grad = probabilities.copy()
    grad[rows, labels] -= 1
    return loss, float((logits.argmax(axis=1) == labels).mean()), (grad / len(labels)).astype(np.float32)


def save_state(network: Network, optimizer: Optimizer) -> bytes:
    arrays = {f"param.{name}.{i}": param for name, pair in network.params.items() for i, param in enumerate(pair)}
    arrays.update({f"opt.{key}": value for key, value in optimizer.state.items()})
    arrays["meta"] = np.array(json.dumps({"step": optimizer.step_count, "rng": network.rng.bit_generator.state}))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def load_state(state: bytes, network: Network, optimizer: Optimizer) -> None:
    with np.load(io.BytesIO(state), allow_pickle=False) as saved:
        for name, pair in network.params.items():
            for i, param in enumerate(pair):
                param[...] = saved[f"param.{name}.{i}"]
        for key, value in optimizer.state.items():
            value[...] = saved[f"opt.{key}"]
        meta = json.loads(str(saved["meta"]))
    optimizer.step_count = meta["step"]
    network.rng.bit_generator.state = meta["rng"]


def train(job: TrainingJob, observer: TrainingObserver) -> None:
    """Train ``job`` from its initial weights (or its checkpoint), reporting to ``observer``."""
    weights = job.initial_weights or initial_weights(job.layers, job.kernel_initializer, job.bias_initializer, job.seed)
    network = Network(job.layers, weights, backend_rng(job.seed))
    optimizer = Optimizer(job.optimizer, network.params)
    if job.resume_from is not None:
        load_state(job.resume_from.state, network, optimizer)

    def train_batch(indices):
        logits = network.forward(job.train_images[indices], training=True)
        loss, accuracy, grad = softmax_cross_entropy(logits, job.train_labels[indices])
        network.backward(grad)
        optimizer.update(network.params, network.grads)
        return loss, accuracy

    def evaluate():
        logits = np.concatenate(
            [network.forward(job.test_images[i : i + 1000], training=False) for i in range(0, len(job.test_labels), 1000)]
        )
        loss, accuracy, _ = softmax_cross_entropy(logits, job.test_labels)
        return loss, accuracy

    run_epochs(
        job, observer, train_batch, evaluate, lambda: network.kernels(job.snapshot_layers), lambda: save_state(network, optimizer)
    )
