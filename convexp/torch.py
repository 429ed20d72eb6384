"""Recording a plain PyTorch training loop into convexp: two lines added to a script.

    import convexp.torch

    with convexp.torch.record(model, experiment="mnist-torch") as recorder:   # kernels at step 0
        for x, y in loader:
            ...
            optimizer.step()
            recorder.step(train_loss=loss.item())                            # step 1, 2, ...

Each ``step()`` counts one update, records the metrics given, and every ``every`` steps the
kernels of the model's ``nn.Conv2d`` modules (or ``layers``, by their ``named_modules`` paths),
(out, in, kh, kw) float32, through :func:`convexp.track`. ``recorder.end_epoch(test_loss=...,
test_accuracy=...)`` records an epoch's metrics and its last step's kernels. convexp imports no
framework: the model is read through the torch the script imported. Any ``nn.Module`` is read
(see :mod:`convexp.tracking.model_kernels`), its conv layers named by their full path.
"""

from __future__ import annotations

__all__ = ["record", "LoopRecorder"]

import os
from typing import Any

from convexp.tracking import TrackedRun, track


class LoopRecorder:
    """Counts a loop's updates and records them; made by :func:`record`. A context manager, or a plain
    object ended by :meth:`finish` (as :class:`convexp.tracking.TrackedRun`)."""

    def __init__(self, run: TrackedRun, model: Any, every: int):
        self.run, self.model, self.every = run, model, every
        self.steps = 0
        self.epoch = 1
        run.log_kernels(model, step=0, epoch=0)
        run.end_step()

    def step(self, **metrics: float) -> None:
        """After one optimizer update: record ``metrics`` at it, and the kernels if it is an every-th step."""
        self.steps += 1
        if metrics:
            self.run.log_metrics(metrics, step=self.steps, epoch=self.epoch)
        if self.steps % self.every == 0:
            self.run.log_kernels(self.model, step=self.steps, epoch=self.epoch)
        self.run.end_step()  # whole: a crash from here on keeps this step

    def end_epoch(self, **metrics: float) -> None:
        """After an epoch: record its metrics (e.g. test_loss, test_accuracy) and its last step's kernels."""
        if metrics:
            self.run.log_metrics(metrics, step=self.steps, epoch=self.epoch)
        if self.run.kernels_step != self.steps:  # not taken at step() (every, or the budget, left it out)
            self.run.log_kernels(self.model, step=self.steps, epoch=self.epoch, epoch_end=True)
        self.run.end_step()
        self.epoch += 1

    def finish(self, status: str = "finished", message: str | None = None) -> None:
        """End the run (see :meth:`convexp.tracking.TrackedRun.finish`)."""
        self.run.finish(status, message)

    def __enter__(self) -> LoopRecorder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.run.__exit__(*exc)


def record(
    model: Any,
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
    budget: float | None = None,
) -> LoopRecorder:
    """Start recording a PyTorch model's training loop as a convexp run (see the module's docs): use it
    in a ``with`` block, or call ``finish()`` when done. ``budget`` (0.05 = 5% of training time): record
    every step's kernels only while that costs at most this share, else every k-th step (step 0, the
    first steps, each epoch's end and the last step always; see :mod:`convexp.store.budget`)."""
    if every < 1:
        raise ValueError(f"every must be 1 or more, not {every}")
    run = track(
        experiment, db, config, layers=layers, dataset=dataset, framework="torch", name=name, tags=tags, notes=notes,
        quiet=quiet, budget=budget,
    )  # fmt: skip
    try:
        return LoopRecorder(run, model, every)
    except BaseException as exc:  # the model cannot be read: the run never started
        run.finish("failed", f"{type(exc).__name__}: {exc}")
        raise
