"""The numpy training loop: batches in the shared seeded order, one update per batch."""

from __future__ import annotations

import time

import numpy as np

from convexp.seeding import backend_rng, batch_order, initial_weights
from convexp.training import TrainingJob, TrainingObserver

from . import ops
from .network import Network
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


def train(job: TrainingJob, observer: TrainingObserver) -> None:
    """Train ``job``'s network from its seeded initial weights, reporting to ``observer``."""
    weights = job.initial_weights or initial_weights(job.layers, job.kernel_initializer, job.bias_initializer, job.seed)
    network = Network(job.layers, weights, backend_rng(job.seed))
    params = network.params
    updater = make_updater(job.optimizer, params)
    train_x, train_y = _channels_last(job.train_images), job.train_labels
    test_x, test_y = _channels_last(job.test_images), job.test_labels

    def kernels():
        return network.conv_snapshots(job.snapshot_layers)

    observer.on_train_start(kernels)
    step, total_steps = 0, job.total_steps
    for epoch in range(1, job.epochs + 1):
        started = time.perf_counter()
        order = batch_order(len(train_y), epoch, job.seed, job.shuffle)
        for start in range(0, len(order), job.batch_size):
            if step >= total_steps:
                break
            batch = order[start : start + job.batch_size]
            logits = network.forward(train_x[batch], training=True)
            loss, accuracy, grad = ops.softmax_cross_entropy(logits, train_y[batch])
            network.backward(grad)
            updater.step(params, network.grads)
            step += 1
            observer.on_step(step, epoch, {"train_loss": loss, "train_accuracy": accuracy}, kernels)
        seconds = time.perf_counter() - started
        test_loss, test_accuracy = evaluate(network, test_x, test_y)
        observer.on_epoch_end(
            epoch, step, {"test_loss": test_loss, "test_accuracy": test_accuracy, "epoch_seconds": seconds}, kernels
        )
        if step >= total_steps:
            break
