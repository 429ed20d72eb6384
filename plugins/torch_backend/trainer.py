"""The PyTorch training step, written as PyTorch's own examples write it, inside convexp's shared epoch loop."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from convexp.plugin_api import SGD, AdamW, TrainingJob, TrainingObserver, framework_seed, run_epochs

from .model import build, conv_snapshots, initialise, layer_modules

EVAL_BATCH = 1000


def make_optimizer(config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """torch.optim's SGD, Adam or AdamW with the experiment's settings. With weight decay the kernels and the
    other parameters (biases, batch_norm's gamma and beta) are two parameter groups, the others' without decay (as
    convexp defines weight decay); without, one group, as before (so that a checkpoint of an older run loads)."""
    params: Any = list(model.parameters())
    decay = config.weight_decay
    if decay:
        kernels = {id(m.weight) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
        params = [
            {"params": [p for p in model.parameters() if id(p) in kernels], "weight_decay": decay},
            {"params": [p for p in model.parameters() if id(p) not in kernels], "weight_decay": 0.0},
        ]
    if isinstance(config, SGD):
        return torch.optim.SGD(params, lr=config.learning_rate, momentum=config.momentum, nesterov=config.nesterov)
    betas = (config.beta_1, config.beta_2)
    if isinstance(config, AdamW):
        return torch.optim.AdamW(params, lr=config.learning_rate, betas=betas, eps=config.epsilon, weight_decay=decay)
    return torch.optim.Adam(params, lr=config.learning_rate, betas=betas, eps=config.epsilon)


@torch.no_grad()
def _clip(model: torch.nn.Module, clip_norm: float) -> None:
    """Scale every gradient by min(1, clip_norm / ||g||), ||g|| their norm all together: convexp's
    :func:`~convexp.backends.trainer.clip_factor` (torch's clip_grad_norm_ divides by ||g|| + 1e-6 instead)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dtype=torch.float64) for g in grads]))
    if norm > clip_norm:
        factor = (clip_norm / norm).to(grads[0].dtype)
        for g in grads:
            g.mul_(factor)


def _set_learning_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    """The rate the next update uses, in every parameter group (a schedule's, as convexp defines it)."""
    for group in optimizer.param_groups:
        group["lr"] = rate


@torch.no_grad()
def evaluate(model, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy, in eval mode (no dropout)."""
    model.eval()
    total, correct = 0.0, 0
    for start in range(0, len(labels), EVAL_BATCH):
        logits = model(images[start : start + EVAL_BATCH])
        y = labels[start : start + EVAL_BATCH]
        total += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    model.train()
    return total / len(labels), correct / len(labels)


def save_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> bytes:
    """The model's and optimizer's state_dict and torch's RNG state (dropout masks), as torch.save bytes."""
    buffer = io.BytesIO()
    rng = {"rng": torch.get_rng_state()}
    if next(model.parameters()).is_cuda:  # dropout masks on a GPU come from its own generator
        rng["cuda_rng"] = torch.cuda.get_rng_state()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), **rng}, buffer)
    return buffer.getvalue()


def load_state(state: bytes, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Restore what :func:`save_state` saved (tensors only: weights_only loading)."""
    device = next(model.parameters()).device
    saved = torch.load(io.BytesIO(state), weights_only=True, map_location=device)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    torch.set_rng_state(saved["rng"].cpu())
    if device.type == "cuda" and "cuda_rng" in saved:
        torch.cuda.set_rng_state(saved["cuda_rng"].cpu())


@contextlib.contextmanager
def _full_float32(device: torch.device) -> Iterator[None]:
    """On a GPU, convolutions and matmuls in full float32, not TensorFloat-32 (10-bit mantissas), which
    cuDNN uses for convolutions by default on Ampere and later: convexp's numbers must be the float32 ones."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def train(job: TrainingJob, observer: TrainingObserver) -> None:
    """Train ``job``'s network on ``job.device``, reporting to ``observer``. Torch's global RNGs are forked, not disturbed.

    On a GPU the whole dataset is moved there once (MNIST is 0.2 GB as float32), so that a step
    copies nothing but its batch's indices."""
    device = torch.device(job.device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), _full_float32(device):
        torch.manual_seed(framework_seed(job.seed))  # dropout masks (CPU and GPU generators alike)
        model = build(job.layers)
        initialise(model, job.layers, job.kernel_initializer, job.bias_initializer, job.seed, job.initial_weights)
        model.to(device)
        optimizer = make_optimizer(job.optimizer, model)
        if job.resume_from is not None:
            load_state(job.resume_from.state, model, optimizer)
        train_x, train_y = torch.from_numpy(job.train_images).to(device), torch.from_numpy(job.train_labels).to(device)
        test_x, test_y = torch.from_numpy(job.test_images).to(device), torch.from_numpy(job.test_labels).to(device)

        def train_batch(indices, images=None):  # images: the batch augmented (N, C, H, W), when the run augments
            batch = torch.from_numpy(indices).to(device)
            x = train_x[batch] if images is None else torch.from_numpy(images).to(device)
            y = train_y[batch]
            optimizer.zero_grad()
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=job.label_smoothing)
            loss.backward()
            if job.gradient_clip_norm is not None:
                _clip(model, job.gradient_clip_norm)
            optimizer.step()
            return loss.item(), (logits.argmax(1) == y).float().mean().item()

        model.train()
        modules = layer_modules(model, job.layers)
        run_epochs(
            job,
            observer,
            train_batch,
            lambda: evaluate(model, test_x, test_y),
            lambda: conv_snapshots(modules, job.snapshot_layers),
            lambda: save_state(model, optimizer),
            lambda rate: _set_learning_rate(optimizer, rate),
        )
