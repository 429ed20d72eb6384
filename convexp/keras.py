"""Recording a Keras 3 ``model.fit`` into convexp: a callback, one line added to a script.

    import convexp.keras

    model.fit(x, y, batch_size=128, epochs=15, callbacks=[convexp.keras.KernelRecorder(experiment="mnist-convnet")])

Every ``every`` batches (a step is one batch's update; step 0 is before the first) it records the
kernels of the model's ``Conv2D`` and ``DepthwiseConv2D`` layers (or ``layers``; any Keras 3 model:
Sequential, functional, a ``keras.Model`` subclass, nested), canonically (out, in, kh, kw) float32,
and Keras's running ``loss`` / ``accuracy`` logs as ``train_loss`` / ``train_accuracy``; at each
epoch's end the epoch's metrics (``val_loss`` / ``val_accuracy`` as ``test_loss`` /
``test_accuracy``, what convexp's own runs call them, when ``fit`` has validation data), all
through :func:`convexp.track`. Keras is imported when the callback is made, not before.

Steps are the optimizer's updates (``model.optimizer.iterations``): with ``model.compile(steps_per_execution=4)``
Keras calls back every 4 batches, and the steps recorded are 0, 4, 8, ... Each ``fit`` is a run of its own by
default, its steps counted from 0 at that ``fit``'s start; with ``continue_run=True`` a second ``fit`` with the
same callback (freeze, fit, unfreeze, recompile, fit again) continues the first one's run, its steps going on
from where the first ended (a recompiled optimizer counts from 0 again: its updates are added to the run's
count), and the run ends when ``recorder.run.finish()`` is called or the interpreter exits.

A subclassed model that ``fit`` builds in its first step has no kernels before it: the run then
starts at step 1, with a warning and a note in the run's spec (build the model before ``fit``
to record step 0). ``fit`` ends the run (finished) at ``on_train_end``. If ``fit`` dies instead (an error in a
layer, Ctrl-C), Keras calls no callback: the run keeps every whole step and is ended when the
interpreter exits (failed after the uncaught exception, interrupted after Ctrl-C); where the
process goes on (a notebook, a caught exception), end it yourself with
``recorder.run.finish("failed", "why")``.
"""

from __future__ import annotations

__all__ = ["KernelRecorder"]

import os
import warnings
from typing import Any

from convexp.store.budget import check_budget
from convexp.tracking import track
from convexp.tracking.model_kernels import NotBuiltError

#: Keras log names and what convexp's own runs call them.
RENAMED = {"loss": "train_loss", "accuracy": "train_accuracy", "val_loss": "test_loss", "val_accuracy": "test_accuracy"}


def KernelRecorder(  # noqa: N802 - it is used as a class: a keras.callbacks.Callback
    experiment: str,
    db: str | os.PathLike[str] | None = None,
    *,
    every: int = 1,
    layers: list[str] | None = None,
    config: dict[str, Any] | None = None,
    dataset: str = "external",
    name: str | None = None,
    tags: list[str] | None = None,
    notes: str | None = None,
    quiet: bool = False,
    continue_run: bool = False,
    budget: float | None = None,
) -> Any:
    """A ``keras.callbacks.Callback`` recording ``model.fit`` as a convexp run (see the module's docs); with
    ``continue_run`` a later ``fit`` with it goes on recording the same run; with ``budget`` (0.05 = 5% of
    training time) steps' kernels are left out while recording them all would cost more (see
    :mod:`convexp.store.budget`)."""
    import keras  # the framework, only when a callback is made

    if every < 1:
        raise ValueError(f"every must be 1 or more, not {every}")
    check_budget(budget)  # here, not first at fit's start

    class _KernelRecorder(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.step = 0
            self.epoch = 0
            self._unbuilt = False  # the model had no weights at step 0: record them at the first step
            self.run: Any = None
            self._offset = 0  # the run's step when this fit began
            self._epochs_before = 0  # the run's epochs when this fit began

        def _updates(self) -> int:
            """The optimizer's updates in this fit."""
            return int(self.model.optimizer.iterations.numpy()) - self._first_iteration

        def on_train_begin(self, logs=None):
            self._first_iteration = 0
            self._first_iteration = self._updates()  # a recompiled optimizer counts from 0, a kept one goes on
            if continue_run and self.run is not None and self.run.status is None:
                self._offset, self._epochs_before = self.step, self.epoch
                return  # the run goes on: this fit's first kernels are the last fit's last
            self._offset, self._epochs_before, self.step, self.epoch = 0, 0, 0, 0
            settings = {"keras_optimizer": type(self.model.optimizer).__name__, **(config or {})}
            self.run = track(
                experiment, db, settings, layers=layers, dataset=dataset, framework="keras", name=name, tags=tags, notes=notes,
                quiet=quiet, budget=budget,
            )  # fmt: skip
            try:
                self.run.log_kernels(self.model, step=0, epoch=0)
            except NotBuiltError:  # a subclassed model that fit builds in its first step
                self._unbuilt = True
                note = (
                    f"the {type(self.model).__name__} was built by its first training step, so its initial kernels "
                    "(step 0) could not be recorded; build the model before fit (model.build(input_shape), or "
                    "call it on a batch) to record them"
                )
                self.run.notes.append(note)
                warnings.warn(f"convexp: {note}", stacklevel=2)
            except BaseException as exc:  # the model cannot be read: the run ends here, not at exit
                self.run.finish("failed", f"{type(exc).__name__}: {exc}")
                raise
            self.run.end_step()

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = self._epochs_before + epoch + 1

        def on_train_batch_end(self, batch, logs=None):
            step = self._offset + self._updates()  # steps_per_execution: several updates between two calls
            if step <= self.step:
                return  # no update since the last call
            self.step = step
            metrics = {RENAMED.get(k, k): v for k, v in (logs or {}).items() if k in ("loss", "accuracy")}
            self.run.log_metrics(metrics, step=self.step, epoch=self.epoch)
            if self.step % every == 0 or self._unbuilt:
                self.run.log_kernels(self.model, step=self.step, epoch=self.epoch)
                self._unbuilt = False
            self.run.end_step()  # whole: if fit dies from here on, this step is kept

        def on_epoch_end(self, epoch, logs=None):
            ended = {RENAMED.get(k, k): v for k, v in (logs or {}).items() if k.startswith("val_")}
            self.run.log_metrics(ended, step=self.step, epoch=self.epoch)
            if self.run.kernels_step != self.step:  # the epoch's last step, as convexp's own runs record it
                self.run.log_kernels(self.model, step=self.step, epoch=self.epoch, epoch_end=True)
            self.run.end_step()

        def on_train_end(self, logs=None):
            if self.run is not None and not continue_run:
                self.run.finish()

    return _KernelRecorder()
