"""The optimizers an experiment may name, and what their settings mean: plain SGD (with momentum), Adam and AdamW,
a learning-rate schedule, gradient clipping. These pydantic models are both the YAML schema and the one definition
every backend is held to (:func:`learning_rate_at`, :func:`clip_factor`)."""

from __future__ import annotations

import math
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["WEIGHT_DECAY", "SGD", "Adam", "AdamW", "Schedule", "Optimizer", "learning_rate_at", "clip_factor"]


#: What ``weight_decay`` means on sgd and adam: the one definition, for the spec's docs and every backend.
WEIGHT_DECAY = (
    "L2 regularisation: weight_decay * w added to each kernel's gradient (conv and dense kernels; biases are not "
    "decayed), i.e. weight_decay / 2 * ||w||^2 added to the loss, as torch.optim's weight_decay does for the kernels"
)


class Schedule(BaseModel):
    """How the learning rate changes over the run's updates: a linear warmup, then constant, step or cosine
    decay. The rate of update k (1, 2, ...) is ``learning_rate`` times :meth:`factor` of k - 1, the updates
    made before it (see :func:`learning_rate_at`); every backend is given it before each update."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["constant", "step", "cosine"] = "constant"
    warmup_steps: int = Field(
        default=0, ge=0, description="updates whose rate rises linearly: update k of them uses k / warmup_steps"
    )
    step_size: int | None = Field(default=None, ge=1, description="step: the rate is multiplied by gamma every step_size updates")
    gamma: float = Field(default=0.1, gt=0, le=1, description="step: the factor at each step")
    min_factor: float = Field(default=0.0, ge=0, le=1, description="cosine: the share of learning_rate it decays to")

    @model_validator(mode="after")
    def _complete(self) -> Schedule:
        if self.type == "step" and self.step_size is None:
            raise ValueError("a step schedule needs step_size (the updates between two steps down)")
        return self

    def factor(self, done: int, total: int) -> float:
        """The learning rate's multiplier for the update made after ``done`` updates, of ``total`` in the run."""
        if done < self.warmup_steps:
            return (done + 1) / self.warmup_steps
        after = done - self.warmup_steps
        if self.type == "step":
            return self.gamma ** (after // (self.step_size or 1))
        if self.type == "cosine":
            span = max(1, total - self.warmup_steps)
            return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * min(after, span) / span))
        return 1.0


class SGD(BaseModel):
    """Stochastic gradient descent, with optional (Nesterov) momentum, as Keras and torch define it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["sgd"]
    learning_rate: float = Field(default=0.01, gt=0, description="the step size (a schedule's base)")
    momentum: float = Field(default=0.0, ge=0, lt=1, description="v = momentum * v + g; the step is learning_rate * v")
    nesterov: bool = Field(default=False, description="step by learning_rate * (g + momentum * v) instead")
    weight_decay: float = Field(default=0.0, ge=0, description=WEIGHT_DECAY)
    schedule: Schedule | None = Field(default=None, description="how the learning rate changes over the updates")


class Adam(BaseModel):
    """Adam (Kingma & Ba), bias-corrected. epsilon defaults to Keras's 1e-7 (torch uses 1e-8)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["adam"]
    learning_rate: float = Field(default=0.001, gt=0, description="the step size (a schedule's base)")
    beta_1: float = Field(default=0.9, ge=0, lt=1, description="decay of the mean of the gradients")
    beta_2: float = Field(default=0.999, ge=0, lt=1, description="decay of the mean of their squares")
    epsilon: float = Field(
        default=1e-7, gt=0, description="added to the root of the second moment (Keras's 1e-7; torch's is 1e-8)"
    )
    weight_decay: float = Field(default=0.0, ge=0, description=WEIGHT_DECAY)
    schedule: Schedule | None = Field(default=None, description="how the learning rate changes over the updates")


class AdamW(BaseModel):
    """Adam with decoupled weight decay (Loshchilov & Hutter): before each Adam step, every kernel shrinks by
    learning_rate * weight_decay of itself (w -= lr * wd * w; biases are not decayed), as torch.optim.AdamW and
    keras.optimizers.AdamW do it; the Adam step is Adam's above."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["adamw"]
    learning_rate: float = Field(default=0.001, gt=0, description="the step size (a schedule's base)")
    beta_1: float = Field(default=0.9, ge=0, lt=1, description="decay of the mean of the gradients")
    beta_2: float = Field(default=0.999, ge=0, lt=1, description="decay of the mean of their squares")
    epsilon: float = Field(
        default=1e-7, gt=0, description="added to the root of the second moment (Keras's 1e-7; torch's is 1e-8)"
    )
    weight_decay: float = Field(default=0.01, ge=0, description="decoupled: w -= learning_rate * weight_decay * w each step")
    schedule: Schedule | None = Field(default=None, description="how the learning rate changes over the updates")


Optimizer = Union[SGD, Adam, AdamW]
"""An experiment's ``optimizer``: one of :class:`SGD`, :class:`Adam` or :class:`AdamW`, told apart by ``name``."""


def clip_factor(global_norm: float, clip_norm: float | None) -> float:
    """What gradients whose norm, taken all together, is ``global_norm`` are multiplied by when clipped to
    ``clip_norm``: min(1, clip_norm / global_norm) -- TensorFlow's clip_by_global_norm; torch's clip_grad_norm_
    divides by global_norm + 1e-6, which the torch backend does not."""
    if clip_norm is None or global_norm <= clip_norm:
        return 1.0
    return clip_norm / global_norm


def learning_rate_at(optimizer: Optimizer, done: int, total: int) -> float:
    """The learning rate of the update made after ``done`` updates, of ``total`` in the run: ``learning_rate``
    times its schedule's factor (the one definition every backend is held to)."""
    if optimizer.schedule is None:
        return optimizer.learning_rate
    return optimizer.learning_rate * optimizer.schedule.factor(done, total)
