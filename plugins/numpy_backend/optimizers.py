"""SGD (with momentum), Adam and AdamW, updating float32 parameters in place. ``decay`` marks the parameters
that weight decay applies to (the kernels; biases are not decayed)."""

from __future__ import annotations

import math

import numpy as np

from convexp.plugin_api import SGD, Adam, AdamW, Optimizer


def _with_l2(grads: list[np.ndarray], params: list[np.ndarray], decay: list[bool], weight_decay: float) -> list[np.ndarray]:
    """The gradients with the L2 term weight_decay * w added to each decayed parameter's (new arrays, not in place)."""
    if not weight_decay:
        return grads
    return [g + np.float32(weight_decay) * p if d else g for g, p, d in zip(grads, params, decay)]


class SGDUpdater:
    """v = momentum*v + g; p -= lr*v (Nesterov: p -= lr*(g + momentum*v)); the torch form, equal to Keras's."""

    def __init__(self, config: SGD, params: list[np.ndarray], decay: list[bool] | None = None):
        self.config = config
        self.learning_rate = config.learning_rate  # the trainer sets it before each update when scheduled
        self.decay = decay or [False] * len(params)
        self.velocity = [np.zeros_like(p) for p in params] if config.momentum else None

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        grads = _with_l2(grads, params, self.decay, self.config.weight_decay)
        lr, momentum = self.learning_rate, self.config.momentum
        for i, (param, grad) in enumerate(zip(params, grads)):
            if self.velocity is None:
                param -= lr * grad
                continue
            velocity = self.velocity[i]
            velocity *= momentum
            velocity += grad
            param -= lr * (grad + momentum * velocity) if self.config.nesterov else lr * velocity

    def state(self) -> dict[str, np.ndarray]:
        """The optimizer's state, to checkpoint."""
        return {f"velocity{i}": v for i, v in enumerate(self.velocity or [])}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Continue from a checkpointed :meth:`state`."""
        for i, velocity in enumerate(self.velocity or []):
            velocity[...] = state[f"velocity{i}"]


class AdamUpdater:
    """Adam as Keras 3 computes it: p -= lr*sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + epsilon)."""

    def __init__(self, config: Adam | AdamW, params: list[np.ndarray], decay: list[bool] | None = None):
        self.config = config
        self.learning_rate = config.learning_rate  # the trainer sets it before each update when scheduled
        self.decay = decay or [False] * len(params)
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        c = self.config
        if isinstance(c, AdamW):  # decoupled: each kernel shrinks by lr * wd of itself, before the Adam step
            for param, decayed in zip(params, self.decay):
                if decayed and c.weight_decay:
                    param -= np.float32(self.learning_rate * c.weight_decay) * param
        else:
            grads = _with_l2(grads, params, self.decay, c.weight_decay)
        self.t += 1
        lr_t = self.learning_rate * math.sqrt(1 - c.beta_2**self.t) / (1 - c.beta_1**self.t)
        for param, grad, m, v in zip(params, grads, self.m, self.v):
            m *= c.beta_1
            m += (1 - c.beta_1) * grad
            v *= c.beta_2
            v += (1 - c.beta_2) * np.square(grad)
            param -= lr_t * m / (np.sqrt(v) + c.epsilon)

    def state(self) -> dict[str, np.ndarray]:
        """The optimizer's state, to checkpoint."""
        state = {"t": np.array(self.t)}
        state.update({f"m{i}": m for i, m in enumerate(self.m)})
        state.update({f"v{i}": v for i, v in enumerate(self.v)})
        return state

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Continue from a checkpointed :meth:`state`."""
        self.t = int(state["t"])
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            m[...], v[...] = state[f"m{i}"], state[f"v{i}"]


def make_updater(config: Optimizer, params: list[np.ndarray], decay: list[bool] | None = None) -> SGDUpdater | AdamUpdater:
    """The updater for an optimizer spec; ``decay`` marks the parameters weight decay applies to."""
    if isinstance(config, (Adam, AdamW)):
        return AdamUpdater(config, params, decay)
    return SGDUpdater(config, params, decay)
