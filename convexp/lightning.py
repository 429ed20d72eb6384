"""Recording a Lightning ``Trainer.fit`` into convexp: a callback, one line added to a script.

    import convexp.lightning

    trainer = lightning.Trainer(max_epochs=5, callbacks=[convexp.lightning.KernelRecorder(experiment="my-net")])
    trainer.fit(model, train_loader, val_loader)

Steps are Lightning's own ``trainer.global_step``: the optimizer's updates, so with
``accumulate_grad_batches=4`` four batches make one step, as Lightning counts them. At the start of ``fit``
(step 0) and every ``every`` steps after it, the kernels of the LightningModule's ``nn.Conv2d`` modules (or
``layers``, by their ``named_modules`` paths; read as :mod:`convexp.tracking.model_kernels` reads any module)
are recorded, with the scalar metrics the module logged (``self.log("train_loss", ...)``: Lightning's
``callback_metrics``) at that step; each epoch's end records the epoch's metrics (what the validation loop
logged among them, at epoch ends only) and its last step's kernels. Only the process of global rank 0 records
(under DDP every rank holds the same weights). ``fit`` ends the run finished; an exception in ``fit`` ends it
failed (interrupted after Ctrl-C).

Works with the ``lightning`` package (``lightning.pytorch``) and with the older ``pytorch_lightning`` name (the
one used where the script imported only that); Lightning is imported when a callback is made, not before.
"""

from __future__ import annotations

__all__ = ["KernelRecorder"]

import math
import os
import sys
from typing import Any

from convexp.store.budget import check_budget
from convexp.tracking import track


def _callback_base() -> Any:
    """``Callback`` of the Lightning the script uses: ``lightning.pytorch``, else ``pytorch_lightning``."""
    if "pytorch_lightning" in sys.modules and "lightning" not in sys.modules:
        return sys.modules["pytorch_lightning"].Callback
    try:
        import lightning.pytorch  # the framework, only when a callback is made
    except ImportError:
        try:
            import pytorch_lightning  # the older package name
        except ImportError:
            raise ImportError("convexp.lightning needs Lightning: pip install lightning") from None
        return pytorch_lightning.Callback
    return lightning.pytorch.Callback


def KernelRecorder(  # noqa: N802 - it is used as a class: a Lightning Callback
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
) -> Any:
    """A Lightning ``Callback`` recording ``Trainer.fit`` as a convexp run (see the module's docs); with
    ``budget`` (0.05 = 5% of training time) steps' kernels are left out while recording them all would cost
    more (see :mod:`convexp.store.budget`)."""
    if every < 1:
        raise ValueError(f"every must be 1 or more, not {every}")
    check_budget(budget)  # here, not first at fit's start

    class _KernelRecorder(_callback_base()):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.run: Any = None
            #: Metrics the validation loop logged: Lightning keeps their last values among the callback metrics
            #: through the next epoch's steps, so they are recorded at epoch ends only, not again at every step.
            self.validation_metrics: set[str] = set()
            self._before_validation: dict[str, float] = {}

        def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
            if not trainer.is_global_zero:
                return
            settings = {"trainer": {"max_epochs": trainer.max_epochs, "accumulate_grad_batches": trainer.accumulate_grad_batches}}
            settings.update(config or {})
            self.run = track(
                experiment, db, settings, layers=layers, dataset=dataset, framework="torch", name=name, tags=tags,
                notes=notes, quiet=quiet, budget=budget,
            )  # fmt: skip
            self._kernels(trainer, pl_module)
            self.run.end_step()

        def _kernels(self, trainer: Any, pl_module: Any, epoch_end: bool = False) -> None:
            step = int(trainer.global_step)
            if step != self.run.kernels_step:
                self.run.log_kernels(pl_module, step=step, epoch=int(trainer.current_epoch) if step else 0, epoch_end=epoch_end)

        def _metrics(self, trainer: Any) -> dict[str, float]:
            found = {}
            for key, value in trainer.callback_metrics.items():
                number = float(value.item() if hasattr(value, "item") and getattr(value, "numel", lambda: 1)() == 1 else value)
                if math.isfinite(number):
                    found[str(key)] = number
            return found

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if self.run is None:
                return
            step = int(trainer.global_step)
            if step == self.run.step:
                return  # no optimizer step since the last batch (gradient accumulation)
            logged = {key: value for key, value in self._metrics(trainer).items() if key not in self.validation_metrics}
            self.run.log_metrics(logged, step=step, epoch=int(trainer.current_epoch) + 1)
            if step % every == 0:
                self._kernels(trainer, pl_module)
            self.run.end_step()

        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            if self.run is not None:
                self._before_validation = self._metrics(trainer)

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if self.run is not None and not trainer.sanity_checking:
                before = self._before_validation
                self.validation_metrics |= {k for k, v in self._metrics(trainer).items() if before.get(k) != v}

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if self.run is None or trainer.global_step == 0:
                return
            self.run.log_metrics(self._metrics(trainer), step=int(trainer.global_step), epoch=int(trainer.current_epoch) + 1)
            self._kernels(trainer, pl_module, epoch_end=True)
            self.run.end_step()

        def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
            if self.run is not None:
                self.run.finish()

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            if self.run is not None:
                interrupted = isinstance(exception, KeyboardInterrupt)
                status = "interrupted" if interrupted else "failed"
                self.run.finish(status, "interrupted (Ctrl-C)" if interrupted else f"{type(exception).__name__}: {exception}")

    return _KernelRecorder()
