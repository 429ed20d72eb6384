"""Reading the conv kernels out of a saved model's file: PyTorch state dicts and checkpoints (``.pt``, ``.pth``,
Lightning's ``.ckpt``), ``.safetensors`` files, ONNX models, and Keras's ``.keras`` and ``.weights.h5`` files.

Each format needs only its own library, imported when a file of it is read (torch; ``safetensors``, ``onnx``:
``pip install 'convexp[import]'``), and each file is read without running anything it holds: torch's loader
with ``weights_only=True`` (a pickled whole model is refused, with how to save its state dict instead).

Which tensors are conv kernels: in a ``.keras`` file, the model's ``Conv2D``, ``DepthwiseConv2D`` and
``SeparableConv2D`` layers, read as a recorded Keras model's are (the model is loaded with Keras, ``safe_mode``);
in a ``.weights.h5`` file (weights without the model), the variables of the layers Keras saved as ``conv2d``,
``depthwise_conv2d`` and ``separable_conv2d``; in an ONNX graph, the initializers feeding a ``Conv`` node (its
kernel, already (out, in / groups, kh, kw), and its bias); in a bare state dict (torch, safetensors), every 4-D floating tensor
named ``NAME.weight``, with ``NAME.bias`` as its bias when it has one value per output channel -- a transposed
convolution's kernel cannot be told from a state dict, so ``layers=`` chooses the layers to keep. Kernels are
float32 copies in convexp's canonical (out, in / groups, kh, kw) layout.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convexp.errors import ConvexpError

#: The suffixes read, and the format each is.
FORMATS = {
    ".pt": "torch",
    ".pth": "torch",
    ".ckpt": "torch",
    ".bin": "torch",
    ".safetensors": "safetensors",
    ".onnx": "onnx",
    ".keras": "keras",
    ".h5": "keras-weights",
}


class SavedModelError(ConvexpError):
    """A file that holds no model convexp can read the conv kernels of (one line naming the file)."""


@dataclass(frozen=True)
class SavedWeights:
    """The conv kernels of one saved file: layer name -> (kernel, bias), the file's SHA-256, and the training step it
    records, if it does (Lightning's ``global_step``)."""

    path: Path
    format: str
    sha256: str
    kernels: dict[str, tuple[np.ndarray, np.ndarray | None]]
    step: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def read_saved(path: str | Path, layers: list[str] | None = None) -> SavedWeights:
    """The conv kernels of the file at ``path`` (those of ``layers`` only, if given); :class:`SavedModelError` in one
    line for a file that is missing, truncated, of an unknown kind, holds no conv kernel, or a pickled model."""
    path = Path(path)
    if not path.is_file():
        raise SavedModelError(f"{path}: no such file")
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(FORMATS))
        raise SavedModelError(f"{path}: not a saved model convexp reads (by its suffix: {known})")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    step = None
    if kind == "torch":
        tensors, step = _torch_file(path)
        kernels = _state_dict_kernels(path, tensors)
    elif kind == "safetensors":
        kernels = _state_dict_kernels(path, _safetensors_file(path))
    elif kind == "onnx":
        kernels = _onnx_kernels(path)
    elif kind == "keras":
        kernels = _keras_file(path)
    else:
        kernels = _keras_weights_file(path)
    if not kernels:
        raise SavedModelError(f"{path}: no conv kernel in it (no 4-D NAME.weight tensor{', no Conv node' * (kind == 'onnx')})")
    if layers is not None:
        missing = [name for name in layers if name not in kernels]
        if missing:
            raise SavedModelError(f"{path}: no conv layer named {', '.join(missing)}; its conv layers: {', '.join(kernels)}")
        kernels = {name: kernels[name] for name in layers}
    return SavedWeights(path, kind, digest, kernels, step)


def _library(name: str, path: Path) -> Any:
    try:
        return __import__(name)
    except ImportError:
        raise SavedModelError(f"{path}: reading it needs {name}: pip install 'convexp[import]'") from None


def _torch_file(path: Path) -> tuple[Mapping[str, Any], int | None]:
    """The tensors of a torch file (a state dict, or a checkpoint's ``state_dict``) and the step it records."""
    try:
        import torch  # the file's own framework, only to read it (an import-linter exception says so)
    except ImportError:
        raise SavedModelError(f"{path}: reading a torch file needs torch: pip install torch") from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- torch raises many kinds for a bad file; each is one line here
        text = str(exc)
        if "Unsupported global" in text:  # torch's words for a pickled class weights_only refuses
            raise SavedModelError(
                f"{path}: it holds pickled Python objects (a whole model?), which convexp does not unpickle; save the "
                "model's state dict instead: torch.save(model.state_dict(), PATH)"
            ) from None
        why = re.search(r"WeightsUnpickler error: ([^\n]+)", text)  # torch's own reason, not its advice
        first = why[1] if why else text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise SavedModelError(f"{path}: not a readable torch file ({first.strip()})") from None
    step = None
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):  # a checkpoint (Lightning's)
        step = loaded.get("global_step")
        step = int(step) if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else None
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise SavedModelError(f"{path}: holds a {type(loaded).__name__}, not a state dict of tensors")
    tensors = {}
    for name, value in loaded.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            tensors[str(name)] = value.detach().to(torch.float32).numpy()
    return tensors, step


def _safetensors_file(path: Path) -> dict[str, np.ndarray]:
    _library("safetensors", path)
    from safetensors.numpy import load_file

    try:
        loaded = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 -- a truncated or foreign file: one line
        raise SavedModelError(f"{path}: not a readable safetensors file ({str(exc).splitlines()[0]})") from None
    return {name: np.asarray(a, dtype=np.float32) for name, a in loaded.items() if np.issubdtype(a.dtype, np.floating)}


_WEIGHT = re.compile(r"^(?P<layer>.+)\.weight$")


def _state_dict_kernels(path: Path, tensors: Mapping[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Each 4-D ``NAME.weight`` of a state dict as layer ``NAME``, with ``NAME.bias`` when it fits."""
    kernels = {}
    for name, array in tensors.items():
        match = _WEIGHT.match(name)
        if match is None or array.ndim != 4:
            continue
        bias = tensors.get(f"{match['layer']}.bias")
        if bias is not None and bias.shape != (array.shape[0],):
            bias = None
        kernels[match["layer"]] = (np.ascontiguousarray(array, dtype=np.float32), None if bias is None else bias.copy())
    return kernels


def _onnx_kernels(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """The kernel and bias of every ``Conv`` node of an ONNX graph whose inputs are initializers, by node name."""
    onnx = _library("onnx", path)
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 -- a truncated or foreign file: one line
        raise SavedModelError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0]})") from None
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    kernels = {}
    for index, node in enumerate(model.graph.node):
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        kernel = initializers[node.input[1]]
        if kernel.ndim != 4:
            continue
        bias = initializers.get(node.input[2]) if len(node.input) > 2 else None
        name = node.name or node.input[1].removesuffix(".weight") or f"conv{index}"
        kernels[name] = (np.ascontiguousarray(kernel, dtype=np.float32), None if bias is None else bias.astype(np.float32))
    return kernels


def _keras_file(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """A ``.keras`` model's conv kernels, by layer path, as :mod:`convexp.tracking.model_kernels` reads a live one."""
    try:
        import keras  # the file's own framework, only to read it (an import-linter exception says so)
    except ImportError:
        raise SavedModelError(f"{path}: reading a .keras file needs keras: pip install keras") from None
    from convexp.tracking.model_kernels import kernels_of

    try:
        model = keras.saving.load_model(str(path), compile=False)
    except Exception as exc:  # noqa: BLE001 -- a truncated file, an unknown (subclassed) class: one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SavedModelError(f"{path}: Keras cannot load it ({first})") from None
    try:
        return kernels_of(model)
    except ConvexpError as exc:
        if "no 2-D conv layer" in str(exc):
            return {}
        raise SavedModelError(f"{path}: {exc}") from None


#: What Keras names a saved layer of each kind in a ``.weights.h5`` file (before its ``_N``).
_KERAS_SAVED = {"conv2d": "kernel", "depthwise_conv2d": "depthwise", "separable_conv2d": "separable"}


def _keras_weights_file(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """The conv kernels of a Keras ``.weights.h5`` file, by the paths Keras saved them under."""
    if not path.name.endswith(".weights.h5"):
        raise SavedModelError(f"{path}: an .h5 file convexp reads is Keras's model.save_weights (NAME.weights.h5)")
    h5py = _library("h5py", path)
    try:
        handle = h5py.File(path, "r")
    except Exception as exc:  # noqa: BLE001 -- a truncated or foreign file: one line
        raise SavedModelError(f"{path}: not a readable HDF5 file ({str(exc).splitlines()[0]})") from None
    kernels: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    with handle:

        def visit(group: Any, prefix: str) -> None:
            for key in group.get("layers", {}):
                layer = group["layers"][key]
                name = f"{prefix}{key}"
                kind = _KERAS_SAVED.get(re.sub(r"_\d+$", "", key))
                variables = [np.asarray(layer["vars"][str(i)], dtype=np.float32) for i in range(len(layer.get("vars", {})))]
                if kind is not None and variables and variables[0].ndim == 4:
                    kernels.update(_keras_saved_layer(name, kind, variables))
                visit(layer, name + "/")

        visit(handle, "")
    return kernels


def _keras_saved_layer(name: str, kind: str, variables: list[np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """One saved Keras conv layer's variables in convexp's layout (as :mod:`~convexp.tracking.model_kernels` reads)."""
    bias = variables[-1] if variables[-1].ndim == 1 else None
    if kind == "kernel":  # (kh, kw, in / groups, out)
        return {name: (np.ascontiguousarray(variables[0].transpose(3, 2, 0, 1)), bias)}
    kh, kw = variables[0].shape[:2]
    depthwise = np.ascontiguousarray(variables[0].transpose(2, 3, 0, 1).reshape(-1, 1, kh, kw))
    if kind == "depthwise":
        return {name: (depthwise, bias)}
    pointwise = np.ascontiguousarray(variables[1].transpose(3, 2, 0, 1))
    return {f"{name}/depthwise": (depthwise, None), f"{name}/pointwise": (pointwise, bias)}
