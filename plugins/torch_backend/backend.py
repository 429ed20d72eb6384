"""The PyTorch backend: an nn.Module and a plain training loop, on the CPU or a CUDA GPU."""

from __future__ import annotations

import importlib.metadata
import importlib.util

import numpy as np

from convexp.plugin_api import ALL_FEATURES, Backend, Padding, TrainingJob, TrainingObserver


class TorchBackend(Backend):
    """PyTorch 2.x: nn.Conv2d / nn.Linear layers, torch.optim optimizers, F.cross_entropy."""

    name = "torch"
    framework = "torch"
    install_hint = "pip install 'convexp[torch]'"
    #: nn.Conv2d's own reset_parameters: kaiming_uniform(a=sqrt(5)) kernel, U(±1/sqrt(fan_in)) bias.
    default_initializers = ("torch_default", "torch_default")
    devices = ("cpu", "cuda")
    features = ALL_FEATURES

    def resolve_device(self, requested: str) -> str:
        """``cuda`` when asked for or ``auto`` and torch sees a CUDA GPU (the first one), else ``cpu``."""
        if requested == "cpu":
            return "cpu"  # without importing torch
        import torch

        if torch.cuda.is_available():
            return "cuda"
        if requested == "cuda":
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise ValueError(f"field 'device': cuda asked for, but torch {torch.__version__} ({build}) sees no CUDA GPU here")
        return "cpu"

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("torch") is None:
            return f"torch is not installed: {self.install_hint}"
        return None

    def framework_version(self) -> str:
        """Read from the installed package's metadata, without importing torch."""
        return importlib.metadata.version("torch")

    def initialize(self, initializer: str, shape: tuple[int, int, int, int], seed: int) -> np.ndarray:
        import torch

        from .model import fill_

        tensor = torch.empty(shape)
        fill_(tensor, self.resolve_initializer(initializer), shape, torch.Generator().manual_seed(seed))
        return tensor.numpy()

    def conv2d(self, images, kernel, bias=None, *, stride: int = 1, padding: Padding = "valid") -> np.ndarray:
        import torch

        from .model import conv_padding

        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        w = torch.from_numpy(np.ascontiguousarray(kernel, dtype=np.float32))
        b = None if bias is None else torch.from_numpy(np.ascontiguousarray(bias, dtype=np.float32))
        pad = conv_padding(tuple(x.shape[2:]), tuple(w.shape[2:]), stride, padding)
        with torch.no_grad():
            out = torch.nn.functional.conv2d(torch.nn.functional.pad(x, pad), w, b, stride=stride)
        return out.numpy()

    def train(self, job: TrainingJob, observer: TrainingObserver) -> None:
        from .trainer import train

        train(job, observer)
