"""Everything a backend's author imports from convexp, in one module: ``from convexp.plugin_api import ...``.

A backend is a package with a ``convexp.backends`` entry point whose :func:`hookimpl` registers a
:class:`Backend` (see the plugin guide, docs/plugins.md). What it is given and hands back, the layer
vocabulary it builds, the initializer formulas and seeded draws it shares with the other backends, the errors it
raises, and the conformance checks its own tests run are all here, and only names listed in ``__all__`` are
promised: convexp may rearrange its packages behind this module without breaking a plugin
(tests/backends/test_plugin_api.py lists the surface, so a change to it is a decision, not an accident).

The conformance entry points (``CHECKS``, ``run_check``, ``tiny_job``...) are imported on first use: they run
experiments through the runner, which a backend's own code never needs, so importing this module for a backend
loads none of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from convexp.backends.features import ALL_FEATURES, BASE_FEATURES
from convexp.backends.hookspecs import hookimpl
from convexp.backends.protocol import Backend
from convexp.backends.trainer import EPOCH_METRICS, STEP_METRICS, TrainingJob, TrainingObserver, run_epochs
from convexp.errors import BackendUnavailableError, ConvexpError, UnknownNameError
from convexp.model import activations
from convexp.model.activations import LEAKY_SLOPE
from convexp.model.augmentation import Augmentation
from convexp.model.initializers import INITIALIZER_NAMES, Fans, Initializer, draw, fans_of, get_initializer
from convexp.model.layers import (
    ActivationLayer,
    AvgPool,
    BatchNorm,
    Conv,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    MaxPool,
    Padding,
    PlannedLayer,
    ReLU,
    Residual,
    conv_output_size,
    flat,
    same_padding,
)
from convexp.model.optimizers import SGD, Adam, AdamW, Optimizer, Schedule, clip_factor, learning_rate_at
from convexp.model.seeding import augmentation_rng, backend_rng, batch_order, dropout_seed, framework_seed, initial_weights
from convexp.model.weights import Checkpoint, KernelReader, KernelSnapshot, StateReader, non_finite

if TYPE_CHECKING:
    from convexp.backends.conformance.checks import CHECKS, Check, CheckResult, check_backend, run_check
    from convexp.backends.conformance.kit import (
        CheckSkipped,
        CollectingObserver,
        ConformanceFailure,
        tiny_job,
        with_shared_init,
    )

__all__ = [
    # what a backend is, and how it is registered
    "Backend",
    "hookimpl",
    "ALL_FEATURES",
    "BASE_FEATURES",
    # what its trainer is given, and hands back
    "TrainingJob",
    "TrainingObserver",
    "run_epochs",
    "STEP_METRICS",
    "EPOCH_METRICS",
    "KernelSnapshot",
    "Checkpoint",
    "KernelReader",
    "StateReader",
    "non_finite",
    # the layer vocabulary it builds
    "PlannedLayer",
    "Conv",
    "Dense",
    "Dropout",
    "Flatten",
    "MaxPool",
    "AvgPool",
    "GlobalAvgPool",
    "ReLU",
    "ActivationLayer",
    "BatchNorm",
    "Residual",
    "Padding",
    "flat",
    "conv_output_size",
    "same_padding",
    "activations",
    "LEAKY_SLOPE",
    "Augmentation",
    # the optimizers it implements
    "SGD",
    "Adam",
    "AdamW",
    "Optimizer",
    "Schedule",
    "learning_rate_at",
    "clip_factor",
    # the initializer formulas and the seeded draws shared by every backend
    "Initializer",
    "Fans",
    "INITIALIZER_NAMES",
    "fans_of",
    "get_initializer",
    "draw",
    "initial_weights",
    "batch_order",
    "augmentation_rng",
    "backend_rng",
    "dropout_seed",
    "framework_seed",
    # errors it raises
    "ConvexpError",
    "BackendUnavailableError",
    "UnknownNameError",
    # conformance, for the plugin's own tests (loaded on first use)
    "CHECKS",
    "Check",
    "CheckResult",
    "CheckSkipped",
    "ConformanceFailure",
    "CollectingObserver",
    "check_backend",
    "run_check",
    "tiny_job",
    "with_shared_init",
]

#: The conformance names, and the module each is loaded from when first asked for.
_CONFORMANCE = {
    **dict.fromkeys(("CHECKS", "Check", "CheckResult", "check_backend", "run_check"), "checks"),
    **dict.fromkeys(("CheckSkipped", "ConformanceFailure", "CollectingObserver", "tiny_job", "with_shared_init"), "kit"),
}


def __getattr__(name: str) -> Any:
    """A conformance entry point, imported on first use (it brings the runner, which a backend never needs)."""
    if name in _CONFORMANCE:
        import importlib  # conformance on first use

        return getattr(importlib.import_module(f"convexp.backends.conformance.{_CONFORMANCE[name]}"), name)
    raise AttributeError(f"module 'convexp.plugin_api' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
