"""Recording from your own training loop: a run, its metrics and its conv kernels, into convexp's database.

    import convexp

    with convexp.track(experiment="my-net", db="convexp.db", config={"lr": 0.001}) as run:
        for step, (x, y) in enumerate(batches, start=1):
            loss = train_step(x, y)
            run.log_metrics({"train_loss": loss}, step=step)
            run.log_kernels(model, step=step)     # a torch or Keras model, or {"conv1": array}

A run recorded this way is a run like any other: ``convexp runs``, ``show``, ``compare``,
``filters``, ``plot``, ``report`` and the UI read it. It is written as ``convexp run`` writes:
rows go to the database in whole steps (a step is complete once a later step is logged, or the
run ends), one transaction per batch, on a writer thread, with the run's heartbeat at least
every second (also while the loop logs nothing, as in a long evaluation); a run whose process dies shows as stale with every complete step kept; leaving the
``with`` block by Ctrl-C marks it interrupted, by an exception failed (the step being logged
then is left out, as it may be partial). Rows are never duplicated: logging a name again at the
current step replaces its value, and a step before one already logged is refused.

Kernels are stored canonically, (out_channels, in_channels, kh, kw) float32, whatever the
framework: Keras's (kh, kw, in, out) kernels are transposed. Frameworks are imported only to
read a model of theirs. The run's spec is marked ``external``, with your ``config`` and each
recorded layer's kernel shape.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from convexp import __version__
from convexp.store import MetricRecord, SnapshotRow, Store
from convexp.store.background import FLUSH_BYTES, HEARTBEAT_SECONDS, BackgroundWriter, Batch

#: How the runs table names the backend of a run recorded from a user's own loop.
EXTERNAL = "external"


def kernels_of(model: Any, layers: list[str] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """The conv kernels (out, in, kh, kw) and biases of a model, by layer name, as float32 copies.

    ``model`` is a torch ``nn.Module`` (its ``Conv2d`` modules, named as ``named_modules`` names
    them), a Keras 3 model (its ``Conv2D`` layers, by layer name) or a mapping of name to a
    canonical kernel array or a (kernel, bias) pair. ``layers`` picks some of them by name."""
    return kernel_reader(model, layers)()


def kernel_reader(model: Any, layers: list[str] | None = None) -> Callable[[], dict[str, tuple[np.ndarray, np.ndarray | None]]]:
    """A function returning :func:`kernels_of` ``model``: the model's conv layers are found once, so
    that reading them at every step costs only the copies."""
    if isinstance(model, Mapping):
        return lambda: _checked(_from_mapping(model), layers)
    module = type(model).__module__
    if module.startswith("torch"):
        import torch

        convs = _chosen({name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}, layers)

        def read_torch() -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
            with torch.no_grad():
                return {
                    name: (_torch_copy(m.weight), None if m.bias is None else _torch_copy(m.bias)) for name, m in convs.items()
                }

        return read_torch
    if module.startswith(("keras", "tf_keras", "tensorflow")):
        import keras

        conv_layers = _chosen(
            {layer.name: layer for layer in _keras_layers(model) if isinstance(layer, keras.layers.Conv2D)}, layers
        )

        def read_keras() -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
            return {
                name: (
                    np.ascontiguousarray(np.asarray(layer.kernel.numpy(), dtype=np.float32).transpose(3, 2, 0, 1)),
                    None if layer.bias is None else np.array(layer.bias.numpy(), dtype=np.float32),
                )
                for name, layer in conv_layers.items()
            }

        return read_keras
    raise TypeError(
        f"cannot read conv kernels from a {type(model).__qualname__}: pass a torch nn.Module, "
        "a Keras model, or a mapping of layer name to (out, in, kh, kw) arrays"
    )


def _torch_copy(tensor: Any) -> np.ndarray:
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        return tensor.cpu().numpy()  # already a copy
    return np.array(tensor.numpy(), dtype=np.float32)  # numpy() shares the tensor's memory


def _chosen(found: dict[str, Any], layers: list[str] | None) -> dict[str, Any]:
    if layers is None:
        return found
    missing = [name for name in layers if name not in found]
    if missing:
        raise ValueError(f"no conv layer named {', '.join(missing)}; the model's: {', '.join(found) or 'none'}")
    return {name: found[name] for name in layers}


def _from_mapping(model: Mapping[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    found = {}
    for name, value in model.items():
        kernel, bias = value if isinstance(value, tuple) else (value, None)
        found[str(name)] = (
            np.array(kernel, dtype=np.float32),
            None if bias is None else np.array(bias, dtype=np.float32),
        )
    return found


def _checked(found: dict[str, tuple[np.ndarray, np.ndarray | None]], layers: list[str] | None) -> dict:
    found = _chosen(found, layers)
    for name, (kernel, _) in found.items():
        if kernel.ndim != 4:
            raise ValueError(f"layer {name}: a conv kernel is (out, in, kh, kw); got shape {kernel.shape}")
    return found


def _keras_layers(model: Any) -> Iterator[Any]:
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):  # a nested model
            yield from _keras_layers(layer)


class TrackedRun:
    """A run being recorded from the user's own loop; see :func:`track`."""

    def __init__(self, store: Store, run_id: int, layers: list[str] | None = None):
        self.store, self.run_id, self.layers = store, run_id, layers
        self.writer = BackgroundWriter(store, run_id, heartbeat_seconds=HEARTBEAT_SECONDS)
        self.step: int | None = None  # the step being logged: complete once a later one is logged
        self.epoch = 0
        self._current_metrics: dict[str, MetricRecord] = {}
        self._current_kernels: dict[str, SnapshotRow] = {}
        self._metrics: list[MetricRecord] = []  # complete steps, not yet handed to the writer
        self._snapshots: list[SnapshotRow] = []
        self._bytes = 0
        self._steps_completed = 0
        self._last_flush = time.monotonic()
        self.shapes: dict[str, list[int]] = {}
        self._readers: dict[int, tuple[Any, Callable[[], dict]]] = {}  # a model and its kernel reader, built once

    def _at(self, step: int, epoch: int | None) -> None:
        if not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"step must be a whole number >= 0, not {step!r}")
        if self.step is not None and step < self.step:
            raise ValueError(f"step {step} is before step {self.step}, which was already logged; steps only go forward")
        if self.step is not None and step > self.step:
            self._complete_current()
        self.step = int(step)
        if epoch is not None:
            self.epoch = int(epoch)

    def _complete_current(self) -> None:
        self._metrics.extend(self._current_metrics.values())
        self._snapshots.extend(self._current_kernels.values())
        self._current_metrics, self._current_kernels = {}, {}
        if self.step is not None:
            self._steps_completed = self.step
        if self._bytes >= FLUSH_BYTES or time.monotonic() - self._last_flush >= HEARTBEAT_SECONDS:
            self.flush()

    def log_metrics(self, metrics: Mapping[str, float], step: int, epoch: int | None = None) -> None:
        """Record named values at ``step`` (any names; ``train_loss``, ``test_accuracy`` ... are what
        convexp's own runs use, and what its pictures look for). A NaN is refused by the database's
        NOT NULL value: log only finite numbers."""
        self._at(step, epoch)
        for name, value in metrics.items():
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(f"metric {name} at step {step} is {number}: only finite values are recorded")
            self._current_metrics[name] = MetricRecord(int(step), self.epoch, str(name), number)

    def log_kernels(self, model: Any, step: int, epoch: int | None = None) -> None:
        """Record the conv kernels of ``model`` (see :func:`kernels_of`) at ``step``."""
        self._at(step, epoch)
        cached = None if isinstance(model, Mapping) else self._readers.get(id(model))
        if cached is not None and cached[0] is model:
            reader = cached[1]
        else:
            reader = kernel_reader(model, self.layers)
            if not isinstance(model, Mapping):
                self._readers[id(model)] = (model, reader)
        for name, (kernel, bias) in reader().items():
            known = self.shapes.setdefault(name, list(kernel.shape))
            if known != list(kernel.shape):
                raise ValueError(f"layer {name}: kernel shape {list(kernel.shape)} at step {step}, {known} before")
            self._current_kernels[name] = SnapshotRow(name, int(step), self.epoch, kernel, bias)
            self._bytes += kernel.nbytes

    def flush(self) -> None:
        """Hand the complete steps to the writer thread (done by itself at least every second)."""
        self.writer.submit(Batch(self._metrics, self._snapshots, self.epoch, self._steps_completed))
        self._metrics, self._snapshots, self._bytes = [], [], 0
        self._last_flush = time.monotonic()

    def _close(self, status: str, message: str | None, last_step_complete: bool) -> None:
        if last_step_complete:
            self._complete_current()
        try:
            self.flush()
        finally:
            self.writer.close()
        self.store.update_spec(self.run_id, {"kernel_shapes": self.shapes})
        self.store.finish_run(self.run_id, status, message)


@contextmanager
def track(
    experiment: str,
    db: str | os.PathLike[str] | None = None,
    config: Mapping[str, Any] | None = None,
    *,
    layers: list[str] | None = None,
    dataset: str = EXTERNAL,
    framework: str = EXTERNAL,
) -> Iterator[TrackedRun]:
    """Record a run from your own training loop into ``db`` (a SQLite path or SQLAlchemy URL;
    default ``$CONVEXP_DB`` or ./convexp.db), as experiment ``experiment``; see the module's docs.

    ``config`` is kept as the run's settings (JSON-able values; ``seed``, if there, is also the
    run's seed); ``layers`` limits the recorded conv layers by name; ``dataset`` and ``framework``
    are noted with the run."""
    settings = dict(config or {})
    store = Store(db)
    try:
        store.encoder  # noqa: B018 -- a bad CONVEXP_SNAPSHOT_ENCODING is refused before the run is created
        run_id = store.create_run(
            experiment=experiment,
            backend=EXTERNAL,
            seed=int(settings.get("seed", 0)),
            dataset=dataset,
            kernel_initializer=str(settings.get("initializer", "unknown")),
            bias_initializer=str(settings.get("bias_initializer", "unknown")),
            spec={"external": True, "config": settings, "dataset": dataset, "layers": []},
            convexp_version=__version__,
            backend_version=__version__,
            framework=framework,
            framework_version=_framework_version(framework),
        )
        run = TrackedRun(store, run_id, layers)
        try:
            yield run
        except KeyboardInterrupt:
            run._close("interrupted", "interrupted (Ctrl-C)", last_step_complete=False)
            raise
        except BaseException as exc:
            run._close("failed", f"{type(exc).__name__}: {exc}", last_step_complete=False)
            raise
        run._close("finished", None, last_step_complete=True)
    finally:
        store.close()


def _framework_version(framework: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(framework)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return "unknown"
