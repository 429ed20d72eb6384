"""The numpy backend: convexp's own from-scratch conv net, and the reference the others are checked against."""

from __future__ import annotations

import numpy as np

from convexp.plugin_api import ALL_FEATURES, Backend, Padding, TrainingJob, TrainingObserver, draw

from . import ops, trainer


class NumpyBackend(Backend):
    """Forward and backward passes written in numpy (im2col + one BLAS matmul per conv)."""

    name = "numpy"
    framework = "numpy"
    install_hint = "pip install numpy"
    features = ALL_FEATURES

    def framework_version(self) -> str:
        return np.__version__

    def initialize(self, initializer: str, shape: tuple[int, int, int, int], seed: int) -> np.ndarray:
        return draw(self.resolve_initializer(initializer), shape, seed)

    def conv2d(self, images, kernel, bias=None, *, stride: int = 1, padding: Padding = "valid") -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(images, dtype=np.float32).transpose(0, 2, 3, 1))
        kernel_hwio = np.ascontiguousarray(np.asarray(kernel, dtype=np.float32).transpose(2, 3, 1, 0))
        b = None if bias is None else np.asarray(bias, dtype=np.float32)
        out, _ = ops.conv_forward(x, kernel_hwio, b, stride, padding)
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))

    def train(self, job: TrainingJob, observer: TrainingObserver) -> None:
        trainer.train(job, observer)
