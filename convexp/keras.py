"""Recording a Keras 3 ``model.fit`` into convexp: a callback, one line added to a script.

    import convexp.keras

    model.fit(x, y, batch_size=128, epochs=15, callbacks=[convexp.keras.KernelRecorder(experiment="mnist-convnet")])

Every ``every`` batches (a step is one batch's update; step 0 is before the first) it records the
kernels of the model's ``Conv2D`` layers (or ``layers``), canonically (out, in, kh, kw) float32,
and Keras's running ``loss`` / ``accuracy`` logs as ``train_loss`` / ``train_accuracy``; at each
epoch's end the epoch's metrics (``val_loss`` / ``val_accuracy`` as ``test_loss`` /
``test_accuracy``, what convexp's own runs call them, when ``fit`` has validation data), all
through :func:`convexp.track`. Keras is imported when the callback is made, not before.
"""

from __future__ import annotations

import os
from typing import Any

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
) -> Any:
    """A ``keras.callbacks.Callback`` recording ``model.fit`` as a convexp run (see the module's docs)."""
    import keras

    from convexp.tracking import track

    if every < 1:
        raise ValueError(f"every must be 1 or more, not {every}")

    class _KernelRecorder(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.step = 0
            self.epoch = 0
            self._context: Any = None
            self.run: Any = None

        def on_train_begin(self, logs=None):
            settings = {"keras_optimizer": type(self.model.optimizer).__name__, **(config or {})}
            self._context = track(experiment, db, settings, layers=layers, dataset=dataset, framework="keras")
            self.run = self._context.__enter__()
            self.run.log_kernels(self.model, step=0, epoch=0)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            metrics = {RENAMED.get(k, k): v for k, v in (logs or {}).items() if k in ("loss", "accuracy")}
            self.run.log_metrics(metrics, step=self.step, epoch=self.epoch)
            if self.step % every == 0:
                self.run.log_kernels(self.model, step=self.step, epoch=self.epoch)

        def on_epoch_end(self, epoch, logs=None):
            ended = {RENAMED.get(k, k): v for k, v in (logs or {}).items() if k.startswith("val_")}
            self.run.log_metrics(ended, step=self.step, epoch=self.epoch)
            if self.step % every:  # the epoch's last step, as convexp's own runs record it
                self.run.log_kernels(self.model, step=self.step, epoch=self.epoch)

        def on_train_end(self, logs=None):
            context, self._context = self._context, None
            if context is not None:
                context.__exit__(None, None, None)

    return _KernelRecorder()
