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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from convexp import __version__
from convexp.store import MetricRecord, SnapshotRow, Store
from convexp.store.background import FLUSH_BYTES, HEARTBEAT_SECONDS, BackgroundWriter, Batch

#: How the runs table names the backend of a run recorded from a user's own loop.
EXTERNAL = "external"


#: How a reader lays a model's conv layers out in one flat float32 array: per layer its name, its
#: canonical kernel shape (out, in, kh, kw), and its bias length (None without a bias); the
#: kernel's values come first, then the bias's, layer after layer.
Layout = tuple[tuple[str, tuple[int, ...], int | None], ...]
#: A kernel reader: returns the layout and one fresh float32 array holding every kernel and bias.
KernelReader = Callable[[], tuple[Layout, np.ndarray]]


def kernels_of(model: Any, layers: list[str] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """The conv kernels (out, in, kh, kw) and biases of a model, by layer name, as float32 copies.

    ``model`` is a torch ``nn.Module`` (its ``Conv2d`` modules, named as ``named_modules`` names
    them), a Keras 3 model (its ``Conv2D`` layers, by layer name) or a mapping of name to a
    canonical kernel array or a (kernel, bias) pair. ``layers`` picks some of them by name."""
    return dict(unpack(*kernel_reader(model, layers)()))


def unpack(layout: Layout, flat: np.ndarray) -> Iterator[tuple[str, tuple[np.ndarray, np.ndarray | None]]]:
    """(name, (kernel, bias)) of each layer in a reader's flat array (views of it, no copies)."""
    offset = 0
    for name, shape, bias_size in layout:
        size = math.prod(shape)
        kernel = flat[offset : offset + size].reshape(shape)
        offset += size
        bias = None
        if bias_size is not None:
            bias = flat[offset : offset + bias_size]
            offset += bias_size
        yield name, (kernel, bias)


def kernel_reader(model: Any, layers: list[str] | None = None) -> KernelReader:
    """A function reading the conv kernels of ``model`` (see :func:`kernels_of`) into one flat float32
    copy with its :data:`Layout`: the model's conv layers are found once, so that reading them at
    every step costs one copy (for torch, one ``torch.cat`` of the weights)."""
    if isinstance(model, Mapping):
        return lambda: _packed(_checked(_from_mapping(model), layers))
    module = type(model).__module__
    if module.startswith("torch"):
        import torch

        convs = _chosen({name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}, layers)
        layout: Layout = tuple(
            (name, tuple(m.weight.shape), None if m.bias is None else int(m.bias.shape[0])) for name, m in convs.items()
        )
        modules = list(convs.values())
        names = [("weight", "bias") for _ in modules]
        cached: dict[str, Any] = {"params": None, "current": None, "views": None}

        def read_torch() -> tuple[Layout, np.ndarray]:
            # flat views of the parameters' data are made once and kept while every parameter is the
            # same object on the same memory (optimizers update in place); anything else remakes them
            params = [m._parameters[n] for m, pair in zip(modules, names) for n in pair if m._parameters[n] is not None]
            # ids of the parameters held in the cache (so no id is reused meanwhile), and their memory
            current = [(id(p), p.data_ptr()) for p in params]
            if current != cached["current"]:
                cached.update(params=params, current=current, views=[p.data.reshape(-1) for p in params])
            flat = torch.cat(cached["views"]) if params else torch.zeros(0)
            if flat.dtype != torch.float32:
                flat = flat.float()
            try:
                return layout, flat.numpy()  # cat made a copy
            except TypeError:  # on a GPU
                return layout, flat.cpu().numpy()

        return read_torch
    if module.startswith(("keras", "tf_keras", "tensorflow")):
        import keras

        conv_layers = _chosen(
            {layer.name: layer for layer in _keras_layers(model) if isinstance(layer, keras.layers.Conv2D)}, layers
        )

        def read_keras() -> tuple[Layout, np.ndarray]:
            return _packed(
                {
                    name: (
                        np.asarray(layer.kernel.numpy(), dtype=np.float32).transpose(3, 2, 0, 1),
                        None if layer.bias is None else np.asarray(layer.bias.numpy(), dtype=np.float32),
                    )
                    for name, layer in conv_layers.items()
                }
            )

        return read_keras
    raise TypeError(
        f"cannot read conv kernels from a {type(model).__qualname__}: pass a torch nn.Module, "
        "a Keras model, or a mapping of layer name to (out, in, kh, kw) arrays"
    )


def _packed(found: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> tuple[Layout, np.ndarray]:
    """Layers' kernels and biases as a layout and one flat float32 copy."""
    layout = tuple((name, tuple(k.shape), None if b is None else int(b.shape[0])) for name, (k, b) in found.items())
    parts = [a.ravel() for k, b in found.values() for a in (k, b) if a is not None]
    return layout, np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)


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
        found[str(name)] = (np.asarray(kernel, dtype=np.float32), None if bias is None else np.asarray(bias, dtype=np.float32))
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


class PackedSnapshots(Sequence[SnapshotRow]):
    """Snapshot rows of complete steps, kept as each step's flat arrays: the rows are built when the
    writer thread reads them, not on the training thread."""

    def __init__(self, steps: list[tuple[int, int, list[tuple[Layout, np.ndarray]]]]):
        self.steps = steps
        self._count = sum(len(layout) for _, _, logged in steps for layout, _ in logged)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[SnapshotRow]:
        for step, epoch, logged in self.steps:
            for layout, flat in logged:
                for name, (kernel, bias) in unpack(layout, flat):
                    yield SnapshotRow(name, step, epoch, kernel, bias)

    def __getitem__(self, index):  # a Sequence's; the writer only iterates
        return list(self)[index]


class TrackedRun:
    """A run being recorded from the user's own loop; see :func:`track`."""

    def __init__(self, store: Store, run_id: int, layers: list[str] | None = None):
        self.store, self.run_id, self.layers = store, run_id, layers
        self.writer = BackgroundWriter(store, run_id, heartbeat_seconds=HEARTBEAT_SECONDS)
        self.step: int | None = None  # the step being logged: complete once a later one is logged
        self.epoch = 0
        self._current_metrics: dict[str, MetricRecord] = {}
        # by layer names: the same layers logged again at the same step replace what was logged
        self._current_kernels: dict[tuple[str, ...], tuple[Layout, np.ndarray]] = {}
        self._metrics: list[MetricRecord] = []  # complete steps, not yet handed to the writer
        self._snapshots: list[tuple[int, int, list[tuple[Layout, np.ndarray]]]] = []
        self._bytes = 0
        self._steps_completed = 0
        self._last_flush = time.monotonic()
        self.shapes: dict[str, list[int]] = {}
        # a model, its kernel reader (built once) and its layer names, by the model's id
        self._readers: dict[int, tuple[Any, KernelReader, tuple[str, ...]]] = {}

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
        if self._current_kernels and self.step is not None:
            self._snapshots.append((self.step, self.epoch, list(self._current_kernels.values())))
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
        cached = self._readers.get(id(model))
        if cached is not None and cached[0] is model:  # a model seen before: its reader, its layout checked
            layout, flat = cached[1]()
            names = cached[2]
        else:
            reader = kernel_reader(model, self.layers)
            layout, flat = reader()
            self._check_layout(layout, step)
            names = tuple(name for name, _, _ in layout)
            if not isinstance(model, Mapping):  # a mapping may change from one call to the next
                self._readers[id(model)] = (model, reader, names)
        if self._current_kernels and names not in self._current_kernels:
            taken = {name for other in self._current_kernels for name in other}.intersection(names)
            if taken:
                raise ValueError(f"layer {', '.join(sorted(taken))} logged twice at step {step}, from two models")
        self._current_kernels[names] = (layout, flat)
        self._bytes += flat.nbytes

    def _check_layout(self, layout: Layout, step: int) -> None:
        """Each layer keeps the kernel shape it was first logged with."""
        for name, shape, _ in layout:
            known = self.shapes.setdefault(name, list(shape))
            if known != list(shape):
                raise ValueError(f"layer {name}: kernel shape {list(shape)} at step {step}, {known} before")

    def flush(self) -> None:
        """Hand the complete steps to the writer thread (done by itself at least every second)."""
        self.writer.submit(Batch(self._metrics, PackedSnapshots(self._snapshots), self.epoch, self._steps_completed))
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
