"""What an experiment can ask of a backend, named: its layer types, activations, optimizers and weight decay.

A backend says which it implements (:attr:`convexp.backends.protocol.Backend.features`); an experiment that needs
another is refused in one line before it runs, ``convexp plugins`` lists what each backend lacks, and
the conformance checks of what it lacks are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from convexp.model.layers import ACTIVATION_NAMES, LAYER_TYPE_NAMES

BASE_FEATURES = frozenset(
    {
        "conv",
        "maxpool",
        "relu",
        "flatten",
        "dropout",
        "dense",
        "activation:none",
        "activation:relu",
        "optimizer:sgd",
        "optimizer:adam",
    }
)
"""What every backend had before features were named: what a backend that does not say implements."""
ALL_FEATURES = frozenset(
    {
        *LAYER_TYPE_NAMES,
        *(f"activation:{a}" for a in ACTIVATION_NAMES),
        "conv:dilation",
        "conv:groups",
        "optimizer:sgd",
        "optimizer:adam",
        "optimizer:adamw",
        "weight_decay",
        "schedule",
        "gradient_clip_norm",
        "label_smoothing",
        "augmentation",
    }
)
"""Everything an experiment can ask of a backend."""


def features_of_spec(spec: Any) -> frozenset[str]:
    """What a run's spec asks of a backend: :func:`features_needed` of its layers and optimizer, and its training
    settings (``gradient_clip_norm``, ``label_smoothing``, ``augmentation``) where they are set."""
    settings = {name for name in ("gradient_clip_norm", "label_smoothing") if getattr(spec, name, None)}
    augmentation = getattr(spec, "augmentation", None)
    if augmentation is not None and augmentation.active:
        settings.add("augmentation")
    return features_needed(spec.layers, spec.optimizer) | settings


def features_needed(layers: Sequence[Any], optimizer: Any = None) -> frozenset[str]:
    """What ``layers`` (and ``optimizer``, if given) ask of a backend: each layer type, ``conv:dilation`` and
    ``conv:groups`` for a conv that dilates or groups, ``activation:NAME`` for each activation, ``optimizer:NAME``, ``weight_decay`` for an L2 term on sgd or adam, and ``schedule`` for a
    learning-rate schedule."""
    needed: set[str] = set()
    for layer in layers:
        if getattr(layer, "type", None) == "residual":
            needed |= features_needed(layer.layers)
        needed.add(layer.type)
        for option in ("dilation", "groups"):
            if getattr(layer, option, 1) > 1:
                needed.add(f"conv:{option}")
        activation = getattr(layer, "activation", None)
        if activation is not None:
            needed.add(f"activation:{activation}")
    if optimizer is not None:
        needed.add(f"optimizer:{optimizer.name}")
        if optimizer.name != "adamw" and getattr(optimizer, "weight_decay", 0):
            needed.add("weight_decay")
        if getattr(optimizer, "schedule", None) is not None:
            needed.add("schedule")
    return frozenset(needed)


def described(features: Sequence[str]) -> str:
    """Feature names as a sentence lists them: ``activation tanh, global_avgpool``."""
    return ", ".join(f.replace(":", " ") for f in features)
