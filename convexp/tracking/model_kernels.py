"""Finding the conv layers of a user's model and reading their kernels, whatever class the model is.

A model is recognised by what it is, never by where its class was defined: a user's ``Net`` in
``__main__`` is a ``torch.nn.Module`` like ``nn.Sequential`` is. A framework is looked at only when
it is already imported (``sys.modules``): a model of a framework the script never imported cannot
exist, so convexp imports none on its own.

- **PyTorch**: any ``nn.Module`` (a subclass, nested containers, a ``torch.compile``d module, a
  ``DataParallel`` or ``DistributedDataParallel`` wrapper - the wrapped module's names are used),
  its ``Conv2d`` modules (``LazyConv2d`` once initialised) named by their full ``named_modules``
  path (``features.0``, ``block1.conv``). Kernels are (out, in / groups, kh, kw), as torch keeps
  them.
- **Keras 3** (on any Keras backend; read as Keras first, since on the torch backend a Keras layer
  is a torch Module too): any layer or model (Sequential, functional, a ``keras.Model`` subclass,
  nested models and layers), its ``Conv2D``, ``DepthwiseConv2D`` and ``SeparableConv2D`` layers, a
  top-level layer named by its name and a nested one by its path (``block1/conv``). ``Conv2D``
  kernels (kh, kw, in / groups, out) are transposed to (out, in / groups, kh, kw); a
  ``DepthwiseConv2D`` kernel (kh, kw, in, multiplier) is stored as the grouped convolution it is:
  (in * multiplier, 1, kh, kw), output channel ``c * multiplier + m``, ``groups = in``; a
  ``SeparableConv2D`` is its two convolutions, ``NAME/depthwise`` (as a depthwise layer's, no bias)
  and ``NAME/pointwise`` ((out, in * multiplier, 1, 1), with the layer's bias).
- **TorchScript**: a ``torch.jit.script``'ed model's convs, known by what they hold (a ``weight`` and a
  convolution's settings), by the same paths.
- A conv under a **parametrization** (``torch.nn.utils.parametrizations.spectral_norm``,
  ``weight_norm``, or the older hooks) is read as the kernel it computes with, in eval mode and
  without gradients: reading it runs no power iteration and changes nothing in the model.
- **A mapping** of layer name to a (out, in, kh, kw) array, or to a (kernel, bias) pair.

Conv layers convexp does not record (1-D, 3-D, transposed) are refused in one line that
names the layer and says how to record the rest (``layers=``): never skipped silently. So is a
model with no 2-D conv layer at all, and (:class:`NotBuiltError`) one whose conv layers have no
weights yet.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from convexp.errors import ModelError
from convexp.store.packed import Layout, unpack


class NotBuiltError(ModelError):
    """A conv layer has no weights yet (a lazy torch module before its first call, a Keras model
    built by its first training step): there is nothing to read until it is built."""


class KernelReader:
    """Reads the chosen conv layers of one model, found once, into one fresh flat float32 array per call.

    ``layout`` is fixed when the reader is made; ``groups`` names the grouped (or depthwise) layers
    and their group count, which a kernel's shape alone does not tell."""

    def __init__(self, layout: Layout, read: Callable[[], np.ndarray], groups: dict[str, int] | None = None):
        self.layout, self._read, self.groups = layout, read, dict(groups or {})

    def __call__(self) -> tuple[Layout, np.ndarray]:
        return self.layout, self._read()


def kernels_of(model: Any, layers: list[str] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """The conv kernels (out, in, kh, kw) and biases of a model, by layer name, as float32 copies.

    ``model`` is a torch module, a Keras 3 model or layer, or a mapping (see the module's docs);
    ``layers`` picks some of its conv layers by name."""
    return dict(unpack(*kernel_reader(model, layers)()))


def kernel_reader(model: Any, layers: list[str] | None = None) -> KernelReader:
    """A :class:`KernelReader` for the conv layers of ``model`` (see :func:`kernels_of`): the layers are
    found once, so that reading them at every step costs one copy (for torch, one ``torch.cat``)."""
    if isinstance(model, Mapping):
        first = [_packed(_from_mapping(model, layers))]  # read once to know the layout: the first call's array

        def read_mapping() -> np.ndarray:
            return first.pop()[1] if first else _packed(_from_mapping(model, layers))[1]

        return KernelReader(first[0][0], read_mapping)
    # Keras before torch: on Keras's torch backend every Keras layer is a torch Module too, and its kernels are
    # the Keras layer's (in Keras's layout), not whatever torch parameters it keeps
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(model, keras.layers.Layer):
        return _keras_reader(keras, model, layers)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        return _torch_reader(torch, model, layers)
    raise ModelError(
        f"cannot read conv kernels from a {type(model).__qualname__}: pass a torch nn.Module, "
        "a Keras model, or a mapping of layer name to (out, in, kh, kw) arrays"
    )


def _chosen(
    model: Any, recorded: dict[str, Any], refused: dict[str, str], unbuilt: dict[str, str], layers: list[str] | None
) -> dict[str, Any]:
    """The layers to record: all of ``recorded`` or those named; a refused or unbuilt layer among them is an error."""
    kind = type(model).__qualname__
    for name, why in unbuilt.items():
        if layers is None or name in layers:
            raise NotBuiltError(f"layer {name} of the {kind} is {why}")
    if layers is None:
        if refused:
            name, why = next(iter(refused.items()))
            rest = f"; to record the others, pass layers={list(recorded)}" if recorded else ""
            raise ModelError(f"layer {name} of the {kind} is {why}{rest}")
        if not recorded:
            raise ModelError(f"the {kind} has no 2-D conv layer (Conv2d / Conv2D): nothing to record")
        return recorded
    for name in layers:
        if name in refused:
            raise ModelError(f"layer {name} of the {kind} is {refused[name]}")
    missing = [name for name in layers if name not in recorded]
    if missing:
        raise ModelError(
            f"no conv layer named {', '.join(missing)} in the {kind}; its conv layers: {', '.join(recorded) or 'none'}"
        )
    return {name: recorded[name] for name in layers}


_NOT_RECORDED = "convexp records 2-D convolution kernels only"


def _torch_reader(torch: Any, model: Any, layers: list[str] | None) -> KernelReader:
    nn = torch.nn
    while True:  # wrappers whose own names would prefix every layer's: the wrapped module is the model
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
            continue
        dynamo = sys.modules.get("torch._dynamo.eval_frame")
        if dynamo is not None and isinstance(model, dynamo.OptimizedModule):  # torch.compile(model)
            model = model._orig_mod
            continue
        break
    other_convs = (nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    recorded: dict[str, Any] = {}
    refused: dict[str, str] = {}
    unbuilt: dict[str, str] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if isinstance(_tensor_of(torch, module, "weight"), nn.parameter.UninitializedParameter):
                unbuilt[name] = f"a {type(module).__name__} not initialised yet: run a forward pass before recording"
            else:
                recorded[name] = module
        elif isinstance(module, other_convs):
            refused[name] = f"a {type(module).__name__}: {_NOT_RECORDED} (Conv2d)"
        elif _scripted_conv(torch, module):  # a torch.jit.script'ed model: its convs are known by what they hold
            weight = module._parameters["weight"]
            if weight.dim() == 4 and not module.transposed:
                recorded[name] = module
            else:
                kind = f"{weight.dim() - 2}-D{' transposed' if module.transposed else ''}"
                refused[name] = f"a TorchScript {kind} convolution: {_NOT_RECORDED} (Conv2d)"
    convs = _chosen(model, recorded, refused, unbuilt, layers)
    layout: Layout = tuple(
        (name, tuple(_tensor_of(torch, m, "weight").shape), None if m.bias is None else int(m.bias.shape[0]))
        for name, m in convs.items()
    )
    names = list(convs)
    cached: dict[str, Any] = {"current": None, "arrays": None}

    def read_torch() -> np.ndarray:
        # the modules there now (a layer replaced by assignment, model.conv1 = nn.Conv2d(...), is read anew)
        modules = [_module_now(torch, model, name) for name in names]
        # views of the parameters' data are made once and kept while every parameter is the same
        # object on the same memory (optimizers update in place); anything else remakes them (a parametrized
        # kernel is computed afresh at each read, so its views are)
        tensors = [(_tensor_of(torch, m, "weight"), _tensor_of(torch, m, "bias")) for m in modules]
        params = [p for pair in tensors for p in pair if p is not None]
        # ids of the parameters held in the cache (so no id is reused meanwhile), and their memory
        current = [(id(p), p.data_ptr()) for p in params]
        if current != cached["current"]:
            _check_torch_layout(layout, tensors)  # a parameter swapped for one of another shape is refused
            arrays = None
            # contiguous parameters on the CPU: numpy views of their memory, made once, and one np.concatenate
            # copies them all (~3 us; torch.cat ~30). Anything else (a GPU, channels_last, a dtype numpy
            # lacks) is flattened afresh at every read: reshape copies what it cannot view.
            if all(p.data.is_contiguous() for p in params):
                try:
                    arrays = [p.data.reshape(-1).numpy() for p in params]
                except (TypeError, RuntimeError):
                    arrays = None
            cached.update(params=params, current=current, arrays=arrays)
        if cached["arrays"] is not None:
            return np.concatenate(cached["arrays"]).astype(np.float32, copy=False)
        flat = torch.cat([p.data.reshape(-1) for p in params])
        if flat.dtype != torch.float32:
            flat = flat.float()
        return flat.cpu().numpy()

    groups = {name: int(m.groups) for name, m in convs.items() if int(m.groups) != 1}
    return KernelReader(layout, read_torch, groups)


def _scripted_conv(torch: Any, module: Any) -> bool:
    """Whether ``module`` is a convolution of a ``torch.jit.script``'ed model: a script module holding a ``weight``
    and a convolution's settings (its class is gone: a script module's type is RecursiveScriptModule)."""
    return (
        isinstance(module, torch.jit.RecursiveScriptModule)
        and "weight" in module._parameters
        and all(hasattr(module, a) for a in ("kernel_size", "stride", "padding", "dilation", "groups", "transposed"))
    )


def _tensor_of(torch: Any, module: Any, name: str) -> Any:
    """A conv module's ``weight`` or ``bias`` as its forward uses it, read without side effects: its parameter, or,
    for a parametrized one (``parametrizations.spectral_norm``, ``weight_norm``), the value its parametrization
    computes in eval mode without gradients (no power iteration runs, nothing in the model changes); for one
    under the older ``torch.nn.utils.spectral_norm`` / ``weight_norm`` hooks, what the hook computes."""
    parameter = module._parameters[name] if name in module._parameters else None  # a script module's has no get()
    if parameter is not None or name not in getattr(module, "parametrizations", {}) and not _hooked(module, name):
        return parameter
    with torch.no_grad():
        if name in getattr(module, "parametrizations", {}):
            chain = module.parametrizations[name]
            modes = [(m, m.training) for m in chain.modules()]
            chain.eval()
            try:
                return getattr(module, name).detach()
            finally:
                for m, training in modes:
                    m.training = training
        hook = _hooked(module, name)
        try:  # the older spectral norm: without its power iteration
            return hook.compute_weight(module, do_power_iteration=False).detach()
        except TypeError:  # the older weight norm
            return hook.compute_weight(module).detach()


def _hooked(module: Any, name: str) -> Any:
    """The forward pre-hook of the older ``torch.nn.utils.spectral_norm`` / ``weight_norm`` computing ``name``, if any."""
    for hook in module._forward_pre_hooks.values():
        if getattr(hook, "name", None) == name and callable(getattr(hook, "compute_weight", None)):
            return hook
    return None


def _module_now(torch: Any, model: Any, name: str) -> Any:
    """The conv module named ``name`` in ``model`` now; a layer removed, or replaced by something that is no Conv2d,
    is refused (the layers recorded are chosen once, when recording starts)."""
    module = model
    for part in name.split(".") if name else []:  # as get_submodule, which a script module lacks
        module = module._modules[part] if part in module._modules else None
        if module is None:
            raise ModelError(f"layer {name} is no longer in the model: the layers recorded are those it had when recording began")
    if not isinstance(module, torch.nn.Conv2d) and not _scripted_conv(torch, module):
        raise ModelError(f"layer {name} is now a {type(module).__name__}, not the Conv2d recorded before")
    return module


def _check_torch_layout(layout: Layout, tensors: list[tuple[Any, Any]]) -> None:
    """Each layer's weight and bias (``tensors``, as read now) still have the shapes recorded: rows are stored by the
    layout, so a kernel of another shape would be stored as the wrong numbers."""
    for (name, shape, biases), (weight, bias) in zip(layout, tensors):
        now = (tuple(weight.shape), None if bias is None else int(bias.shape[0]))
        if now != (shape, biases):
            raise ModelError(
                f"layer {name}: kernel shape {list(now[0])} (bias {now[1]}) now, {list(shape)} (bias {biases}) when "
                "recording began; a layer keeps its shape in one run"
            )


def _keras_reader(keras: Any, model: Any, layers: list[str] | None) -> KernelReader:
    kl = keras.layers
    other_convs = (kl.Conv1D, kl.Conv3D, kl.Conv1DTranspose, kl.Conv2DTranspose, kl.Conv3DTranspose, kl.DepthwiseConv1D)
    recorded: dict[str, Any] = {}  # name -> (layer, which kernel: "kernel", "depthwise" or "pointwise")
    refused: dict[str, str] = {}
    unbuilt: dict[str, str] = {}
    for name, layer in _keras_layers(model):
        if isinstance(layer, (kl.Conv2D, kl.DepthwiseConv2D, kl.SeparableConv2D)):
            if not layer.built:
                unbuilt[name] = f"a {type(layer).__name__} not built yet: build the model (or call it once) before recording"
            elif isinstance(layer, kl.SeparableConv2D):  # its two kernels, as the two convolutions it makes
                recorded[f"{name}/depthwise"], recorded[f"{name}/pointwise"] = (layer, "depthwise"), (layer, "pointwise")
            else:
                recorded[name] = (layer, "depthwise" if isinstance(layer, kl.DepthwiseConv2D) else "kernel")
        elif isinstance(layer, kl.SeparableConv1D):
            refused[name] = f"a SeparableConv1D: {_NOT_RECORDED} (Conv2D, DepthwiseConv2D, SeparableConv2D)"
        elif isinstance(layer, other_convs):
            refused[name] = f"a {type(layer).__name__}: {_NOT_RECORDED} (Conv2D, DepthwiseConv2D, SeparableConv2D)"
    convs = _chosen(model, recorded, refused, unbuilt, layers)

    def canonical(layer: Any, which: str) -> tuple[np.ndarray, np.ndarray | None]:
        if which == "kernel":  # (kh, kw, in / groups, out) -> (out, in / groups, kh, kw)
            kernel = _keras_array(layer.kernel).transpose(3, 2, 0, 1)
        elif which == "depthwise":  # (kh, kw, in, multiplier) -> (in * multiplier, 1, kh, kw): a grouped conv
            depthwise = layer.kernel if isinstance(layer, kl.DepthwiseConv2D) else layer.depthwise_kernel
            kernel = _keras_array(depthwise)
            kh, kw = kernel.shape[:2]
            kernel = kernel.transpose(2, 3, 0, 1).reshape(-1, 1, kh, kw)
            if isinstance(layer, kl.SeparableConv2D):  # the bias is added after the pointwise kernel
                return kernel, None
        else:  # a separable conv's pointwise kernel (1, 1, in * multiplier, out) -> (out, in * multiplier, 1, 1)
            kernel = _keras_array(layer.pointwise_kernel).transpose(3, 2, 0, 1)
        return kernel, None if layer.bias is None else _keras_array(layer.bias)

    def read_keras() -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        return {name: canonical(layer, which) for name, (layer, which) in convs.items()}

    layout = _packed(read_keras())[0]
    groups = {
        name: int(layer.kernel.shape[2] if isinstance(layer, kl.DepthwiseConv2D) else layer.depthwise_kernel.shape[2])
        if which == "depthwise"
        else int(getattr(layer, "groups", 1))
        for name, (layer, which) in convs.items()
    }
    return KernelReader(layout, lambda: _packed(read_keras())[1], {n: g for n, g in groups.items() if g != 1})


def _keras_array(variable: Any) -> np.ndarray:
    """A Keras variable's value as float32 numpy, on any Keras backend."""
    return np.asarray(variable.numpy(), dtype=np.float32)


def _keras_layers(layer: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path, layer) of every layer inside ``layer``, depth first: a top-level layer by its name, a
    nested one by its parents' names and its own, joined by ``/`` (as Keras writes variable paths)."""
    seen: set[int] = set()
    for inner in getattr(layer, "_layers", ()):  # what Keras tracks: attributes, lists, a model's layers
        if id(inner) in seen:
            continue
        seen.add(id(inner))
        path = f"{prefix}{inner.name}"
        yield path, inner
        yield from _keras_layers(inner, path + "/")


def _packed(found: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> tuple[Layout, np.ndarray]:
    """Layers' kernels and biases as a layout and one flat float32 copy."""
    layout = tuple((name, tuple(k.shape), None if b is None else int(b.shape[0])) for name, (k, b) in found.items())
    parts = [a.ravel() for k, b in found.values() for a in (k, b) if a is not None]
    return layout, np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)


def _from_mapping(model: Mapping[str, Any], layers: list[str] | None) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    found = {}
    for name, value in model.items():
        kernel, bias = value if isinstance(value, tuple) else (value, None)
        found[str(name)] = (np.asarray(kernel, dtype=np.float32), None if bias is None else np.asarray(bias, dtype=np.float32))
    if layers is not None:
        missing = [name for name in layers if name not in found]
        if missing:
            raise ModelError(f"no conv layer named {', '.join(missing)}; the mapping's: {', '.join(found) or 'none'}")
        found = {name: found[name] for name in layers}
    for name, (kernel, _) in found.items():
        if kernel.ndim != 4:
            raise ModelError(f"layer {name}: a conv kernel is (out, in, kh, kw); got shape {kernel.shape}")
    if not found:
        raise ModelError("the mapping has no layer: nothing to record")
    return found
