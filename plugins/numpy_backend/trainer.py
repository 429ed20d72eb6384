"""The numpy training step (forward, backward, update) inside convexp's shared epoch loop."""

from __future__ import annotations

import io
import json
import math

import numpy as np

from convexp.plugin_api import TrainingJob, TrainingObserver, backend_rng, clip_factor, initial_weights, run_epochs

from . import ops
from .model import Network
from .optimizers import make_updater

EVAL_BATCH = 1000


def _channels_last(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1), dtype=np.float32)


def evaluate(network: Network, images_nhwc: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean loss and accuracy over a dataset, without dropout."""
    total_loss, correct = 0.0, 0
    for start in range(0, len(labels), EVAL_BATCH):
        logits = network.forward(images_nhwc[start : start + EVAL_BATCH], training=False)
        loss, hits = ops.loss_and_accuracy(logits, labels[start : start + EVAL_BATCH])
        total_loss, correct = total_loss + loss, correct + hits
    return total_loss / len(labels), correct / len(labels)


def save_state(params: list[np.ndarray], buffers: list[np.ndarray], updater, rng: np.random.Generator) -> bytes:
    """Weights, optimizer state, the layers' statistics (batch_norm) and the dropout generator's state, as an .npz
    file's bytes."""
    arrays = {f"param{i}": p for i, p in enumerate(params)}
    arrays.update({f"buffer{i}": b for i, b in enumerate(buffers)})
    arrays.update({f"optimizer_{k}": v for k, v in updater.state().items()})
    arrays["rng"] = np.array(json.dumps(rng.bit_generator.state))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy stubs type **kwds as allow_pickle
    return buffer.getvalue()


def load_state(state: bytes, params: list[np.ndarray], buffers: list[np.ndarray], updater, rng: np.random.Generator) -> None:
    """Restore what :func:`save_state` saved, in place."""
    with np.load(io.BytesIO(state), allow_pickle=False) as arrays:
        for i, param in enumerate(params):
            param[...] = arrays[f"param{i}"]
        for i, buffer in enumerate(buffers):
            buffer[...] = arrays[f"buffer{i}"]
        prefix = "optimizer_"
        updater.load_state({k[len(prefix) :]: arrays[k] for k in arrays.files if k.startswith(prefix)})
        rng.bit_generator.state = json.loads(str(arrays["rng"]))


def train(job: TrainingJob, observer: TrainingObserver) -> None:
    """Train ``job``'s network from its seeded initial weights (or its checkpoint), reporting to ``observer``."""
    weights = job.initial_weights or initial_weights(job.layers, job.kernel_initializer, job.bias_initializer, job.seed)
    rng = backend_rng(job.seed)
    network = Network(job.layers, weights, rng)
    params = network.params
    updater = make_updater(job.optimizer, params, network.decayed)
    if job.resume_from is not None:
        load_state(job.resume_from.state, params, network.buffers, updater, rng)
    train_x, train_y = _channels_last(job.train_images), job.train_labels
    test_x, test_y = _channels_last(job.test_images), job.test_labels

    def train_batch(indices, images=None):  # images: the batch augmented (N, C, H, W), when the run augments
        x = train_x[indices] if images is None else _channels_last(images)
        logits = network.forward(x, training=True)
        loss, accuracy, grad = ops.softmax_cross_entropy(logits, train_y[indices], job.label_smoothing)
        network.backward(grad)
        grads = network.grads
        if job.gradient_clip_norm is not None:
            norm = math.sqrt(sum(float(np.square(g, dtype=np.float64).sum()) for g in grads))
            factor = clip_factor(norm, job.gradient_clip_norm)
            if factor < 1.0:
                grads = [g * np.float32(factor) for g in grads]
        updater.step(params, grads)
        return loss, accuracy

    run_epochs(
        job,
        observer,
        train_batch,
        lambda: evaluate(network, test_x, test_y),
        lambda: network.conv_snapshots(job.snapshot_layers),
        lambda: save_state(params, network.buffers, updater, rng),
        lambda rate: setattr(updater, "learning_rate", rate),
    )
