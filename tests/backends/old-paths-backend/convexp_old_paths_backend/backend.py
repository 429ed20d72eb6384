"""ExampleBackend: scipy computes the conv layer that `convexp conv` runs; its own small numpy trainer trains."""

from __future__ import annotations

import importlib.metadata

import numpy as np
from scipy.signal import correlate2d

from convexp.backend import Backend
from convexp.initializers import draw
from convexp.layers import same_padding


class ExampleBackend(Backend):
    name = "oldpaths"
    framework = "scipy"
    install_hint = "pip install convexp-old-paths-backend"

    def framework_version(self) -> str:
        return importlib.metadata.version("scipy")

    def initialize(self, initializer, shape, seed):
        return draw(self.resolve_initializer(initializer), shape, seed)

    def conv2d(self, images, kernel, bias=None, *, stride=1, padding="valid"):
        images = np.asarray(images, dtype=np.float64)
        kernel = np.asarray(kernel, dtype=np.float64)
        if padding == "same":
            pads = [same_padding(images.shape[axis], kernel.shape[axis], stride) for axis in (2, 3)]
            images = np.pad(images, ((0, 0), (0, 0), pads[0], pads[1]))
        out = np.stack(
            [
                np.stack([sum(correlate2d(image[c], k[c], mode="valid") for c in range(image.shape[0])) for k in kernel])
                for image in images
            ]
        )[:, :, ::stride, ::stride]
        if bias is not None:
            out = out + np.asarray(bias)[None, :, None, None]
        return out.astype(np.float32)

    def train(self, job, observer):
        from .trainer import train

        train(job, observer)
