"""The TensorFlow backend: a Keras 3 model on TensorFlow, trained with a GradientTape loop."""

from __future__ import annotations

import importlib.metadata
import importlib.util

import numpy as np

from convexp.plugin_api import ALL_FEATURES, Backend, Padding, TrainingJob, TrainingObserver


class TensorflowBackend(Backend):
    """Keras 3 layers (Conv2D, MaxPooling2D, Flatten, Dropout, Dense) and optimizers, TensorFlow underneath."""

    name = "tensorflow"
    framework = "tensorflow"
    install_hint = "pip install 'convexp[tensorflow]'"
    #: keras.layers.Conv2D's defaults: glorot_uniform kernel, zeros bias.
    default_initializers = ("glorot_uniform", "zeros")
    devices = ("cpu", "cuda")
    features = ALL_FEATURES

    def resolve_device(self, requested: str) -> str:
        """``cuda`` when asked for or ``auto`` and TensorFlow lists a GPU (the first one is used), else ``cpu``."""
        if requested == "cpu":
            return "cpu"  # without importing TensorFlow
        from .keras_import import tf

        if tf.config.list_physical_devices("GPU"):
            return "cuda"
        if requested == "cuda":
            raise ValueError(
                f"field 'device': cuda asked for, but TensorFlow {tf.__version__} lists no GPU here "
                "(tensorflow-cpu has no GPU support; the GPU build is the 'tensorflow[and-cuda]' package)"
            )
        return "cpu"

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("tensorflow") is None:
            return f"tensorflow is not installed: {self.install_hint}"
        try:
            keras_version = importlib.metadata.version("keras")
        except importlib.metadata.PackageNotFoundError:
            return f"keras is not installed: {self.install_hint}"
        if int(keras_version.split(".")[0]) < 3:
            return f"Keras 3 is needed, found keras {keras_version}: {self.install_hint}"
        return None

    def framework_version(self) -> str:
        """Read from the installed packages' metadata, without importing TensorFlow."""
        for distribution in ("tensorflow", "tensorflow-cpu"):
            try:
                version = importlib.metadata.version(distribution)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
        else:
            version = "unknown"
        return f"{version} (keras {importlib.metadata.version('keras')})"

    def initialize(self, initializer: str, shape: tuple[int, int, int, int], seed: int) -> np.ndarray:
        from .model import keras_initializer

        out_channels, in_channels, kh, kw = shape
        init = keras_initializer(self.resolve_initializer(initializer), shape, seed)
        return np.asarray(init((kh, kw, in_channels, out_channels), dtype="float32")).transpose(3, 2, 0, 1).copy()

    def conv2d(self, images, kernel, bias=None, *, stride: int = 1, padding: Padding = "valid") -> np.ndarray:
        from .keras_import import tf

        x = tf.constant(np.ascontiguousarray(np.asarray(images, dtype=np.float32).transpose(0, 2, 3, 1)))
        w = tf.constant(np.ascontiguousarray(np.asarray(kernel, dtype=np.float32).transpose(2, 3, 1, 0)))
        out = tf.nn.conv2d(x, w, strides=stride, padding=padding.upper())
        if bias is not None:
            out = tf.nn.bias_add(out, np.asarray(bias, dtype=np.float32))
        return np.ascontiguousarray(out.numpy().transpose(0, 3, 1, 2))

    def train(self, job: TrainingJob, observer: TrainingObserver) -> None:
        from .trainer import train

        train(job, observer)
