"""The interface every backend implements, whatever framework it wraps.

A backend is an object, never global state: several can be used in one process.
Framework imports stay inside the backend's own methods, so that listing backends
(``convexp plugins``) never imports a framework.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from convexp.backends.features import BASE_FEATURES
from convexp.model.initializers import INITIALIZER_NAMES

if TYPE_CHECKING:
    import numpy as np

    from convexp.backends.trainer import TrainingJob, TrainingObserver
    from convexp.model.layers import Padding


class Backend(ABC):
    """A framework that can convolve, initialise kernels and train a small CNN.

    Arrays cross this interface as numpy float32: images (N, C, H, W), conv kernels
    (out_channels, in_channels, kh, kw), biases (out_channels,).
    """

    #: Name used in experiments (``backend: numpy``) and on the command line.
    name: ClassVar[str]
    #: The framework's distribution name, e.g. ``torch``.
    framework: ClassVar[str]
    #: What to run when the framework is missing.
    install_hint: ClassVar[str] = ""
    #: The initializer ``default`` stands for on this backend, as (kernel, bias); None if there is no framework default.
    default_initializers: ClassVar[tuple[str, str] | None] = None
    #: The devices a spec's ``device`` may name for this backend (``auto`` always may).
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    #: The layer types, activations (``activation:NAME``), optimizers (``optimizer:NAME``) and ``weight_decay``
    #: its trainer implements: an experiment that needs another is refused before it runs.
    #: :data:`convexp.backends.features.ALL_FEATURES` lists them all; a backend that does not say implements the
    #: first vocabulary, :data:`convexp.backends.features.BASE_FEATURES`.
    features: ClassVar[frozenset[str]] = BASE_FEATURES

    def unavailable_reason(self) -> str | None:
        """None when the backend can be used here, else one line saying why not and how to fix it."""
        return None

    @abstractmethod
    def framework_version(self) -> str:
        """Version of the framework this backend wraps."""

    def initializer_names(self) -> tuple[str, ...]:
        """Initializer names this backend accepts: convexp's named ones, plus ``default`` if it has one."""
        return INITIALIZER_NAMES + (("default",) if self.default_initializers else ())

    def resolve_initializer(self, name: str, part: str = "kernel") -> str:
        """The concrete initializer name ``name`` means here (``default`` resolves to the framework's)."""
        if name == "default" and self.default_initializers:
            return self.default_initializers[0 if part == "kernel" else 1]
        return name

    def resolve_device(self, requested: str) -> str:
        """The device a run asking for ``requested`` (``auto``, or one of :attr:`devices`) trains on
        here: ``cpu``, or ``cuda`` where the framework sees a GPU. Raises :class:`ValueError`, one line
        naming the field, when it is not there. Called once per run, before any run starts."""
        if requested not in ("auto", *self.devices):
            raise ValueError(f"field 'device': backend '{self.name}' cannot train on {requested}")
        return "cpu" if requested == "auto" else requested

    @abstractmethod
    def initialize(self, initializer: str, shape: tuple[int, int, int, int], seed: int) -> np.ndarray:
        """Draw a conv kernel of canonical ``shape`` from the named initializer, as this backend does."""

    @abstractmethod
    def conv2d(
        self,
        images: np.ndarray,
        kernel: np.ndarray,
        bias: np.ndarray | None = None,
        *,
        stride: int = 1,
        padding: Padding = "valid",
    ) -> np.ndarray:
        """Cross-correlate images (N, C, H, W) with kernel (O, C, kh, kw); returns (N, O, H', W')."""

    @abstractmethod
    def train(self, job: TrainingJob, observer: TrainingObserver) -> None:
        """Initialise and train the network of ``job``, reporting to ``observer`` as it goes."""
