"""Checking what a backend hands back before anything of it is recorded: plugins are other people's code.

A run's plan says which layers are recorded, the shape of each kernel, and how many steps and
epochs the run makes. A backend that hands back another layer, another shape, a dtype float32
cannot hold exactly, steps out of order, or stops early breaches it: the run ends ``failed`` with
one line naming the plugin, the layer and what was wrong, and nothing of the breach is stored.
Kernels that are NaN or infinite end the run ``diverged``, as NaN losses do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from convexp.model.layers import Conv, flat
from convexp.model.weights import non_finite

if TYPE_CHECKING:
    import numpy as np

    from convexp.backends.trainer import TrainingJob


class PluginBreach(Exception):
    """A backend handed back something its run's plan does not allow (the message names plugin, layer and what)."""


class NonFiniteKernel(Exception):
    """A backend handed back a kernel or bias holding NaN or infinity."""

    def __init__(self, message: str, step: int, epoch: int):
        super().__init__(message)
        self.step, self.epoch = step, epoch


def exact_float32(values: Any, what: str, plugin: str) -> np.ndarray:
    """``values`` as a float32 array: float32 as it is, a smaller float dtype (float16) converted (exactly),
    float64 converted when every value survives the conversion; anything else raises :class:`PluginBreach`."""
    import numpy as np  # numpy on first use: the store and the spec load without it

    array = np.asarray(values)
    if array.dtype == np.float32:
        return array
    if array.dtype.kind != "f":
        raise PluginBreach(f"backend '{plugin}' handed back {what} of dtype {array.dtype}, not float32")
    converted = array.astype(np.float32)
    if array.dtype.itemsize > 4:
        with np.errstate(all="ignore"):
            same = np.array_equal(converted.astype(array.dtype), array, equal_nan=True)
        if not same:
            raise PluginBreach(
                f"backend '{plugin}' handed back {what} as {array.dtype} with values float32 cannot hold exactly; "
                "hand back float32 (convexp records float32, bit for bit)"
            )
    return converted


class PlanCheck:
    """What a run's plan allows a backend to hand back, checked as it comes."""

    def __init__(
        self,
        plugin: str,
        shapes: Mapping[str, tuple[int, ...]],
        total_steps: int,
        steps_per_epoch: int,
        epochs: int,
        resume_from: tuple[int, int] | None = None,
    ):
        """``shapes``: the recorded layers' kernel shapes (out, in, kh, kw); ``resume_from``: the (epoch,
        step) a resumed run goes on from."""
        self.plugin, self.shapes = plugin, dict(shapes)
        self.total_steps, self.steps_per_epoch, self.epochs = total_steps, steps_per_epoch, epochs
        self.last_epoch, self.last_step = resume_from or (0, 0)
        self.epochs_ended = self.last_epoch

    @classmethod
    def for_job(cls, plugin: str, job: TrainingJob) -> PlanCheck:
        """What ``job`` allows backend ``plugin`` to hand back."""
        recorded = set(job.snapshot_layers) or {p.name for p in flat(job.layers) if isinstance(p.layer, Conv)}
        shapes = {p.name: tuple(p.snapshot_shape or ()) for p in flat(job.layers) if p.name in recorded}
        resume = None if job.resume_from is None else (job.resume_from.epoch, job.resume_from.step)
        return cls(plugin, shapes, job.total_steps, job.steps_per_epoch, job.epochs, resume)

    def kernels(self, snapshots: Mapping[str, Any], step: int, epoch: int) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
        """The kernels a backend handed back at ``step``, checked against the plan and made float32:
        (layer, kernel, bias) in the plan's order. Raises :class:`PluginBreach` or :class:`NonFiniteKernel`."""
        if not isinstance(snapshots, Mapping):
            raise PluginBreach(f"backend '{self.plugin}' handed back {type(snapshots).__name__} for the kernels, not a mapping")
        extra = sorted(set(snapshots) - set(self.shapes), key=str)
        if extra:
            raise PluginBreach(
                f"backend '{self.plugin}' handed back layer {extra[0]!r} at step {step}, which the plan does not record "
                f"(recorded: {', '.join(self.shapes)})"
            )
        missing = [name for name in self.shapes if name not in snapshots]
        if missing:
            raise PluginBreach(f"backend '{self.plugin}' handed back no kernel of {missing[0]} at step {step}")
        checked = []
        for name, shape in self.shapes.items():
            snapshot = snapshots[name]
            kernel = exact_float32(getattr(snapshot, "kernel", None), f"{name}'s kernel at step {step}", self.plugin)
            if kernel.shape != shape:
                raise PluginBreach(
                    f"backend '{self.plugin}' handed back {name}'s kernel at step {step} with shape {list(kernel.shape)}; "
                    f"the plan's is {list(shape)} ({'out, in, kh, kw' if len(shape) == 4 else 'gamma, beta, running mean, running variance'})"
                )
            bias = getattr(snapshot, "bias", None)
            if bias is not None:
                bias = exact_float32(bias, f"{name}'s bias at step {step}", self.plugin)
                if bias.shape != (shape[0],):
                    raise PluginBreach(
                        f"backend '{self.plugin}' handed back {name}'s bias at step {step} with shape {list(bias.shape)}; "
                        f"the plan's is [{shape[0]}]"
                    )
            for part, values in (("kernel", kernel), ("bias", bias)):
                bad = None if values is None else non_finite(values)
                if bad is not None:
                    raise NonFiniteKernel(f"{name}'s {part} holds {bad} at step {step} (epoch {epoch})", step, epoch)
            checked.append((name, kernel, bias))
        return checked

    def step(self, step: Any, epoch: Any) -> None:
        """A step the backend reports: the one after the last, in the epoch it belongs to, within the run."""
        if not isinstance(step, int) or isinstance(step, bool) or step != self.last_step + 1:
            raise PluginBreach(
                f"backend '{self.plugin}' reported step {step!r} after step {self.last_step}; steps come one at a time, in order"
            )
        if step > self.total_steps:
            raise PluginBreach(f"backend '{self.plugin}' reported step {step}; the run has {self.total_steps} steps")
        expected = (step - 1) // self.steps_per_epoch + 1
        if epoch != expected or isinstance(epoch, bool):
            raise PluginBreach(
                f"backend '{self.plugin}' reported step {step} in epoch {epoch!r}; with {self.steps_per_epoch} steps "
                f"an epoch it is in epoch {expected}"
            )
        self.last_step, self.last_epoch = step, epoch

    def epoch_end(self, epoch: Any, step: Any) -> None:
        """An epoch's end the backend reports: the epoch of the last step, at that step, once."""
        if epoch != self.last_epoch or step != self.last_step or epoch == self.epochs_ended or isinstance(epoch, bool):
            raise PluginBreach(
                f"backend '{self.plugin}' ended epoch {epoch!r} at step {step!r}; the last step reported was "
                f"{self.last_step}, in epoch {self.last_epoch}" + (" (already ended)" if epoch == self.epochs_ended else "")
            )
        self.epochs_ended = epoch

    def finished(self) -> None:
        """After the backend's train returned: the run made all its steps and ended all its epochs."""
        if self.last_step != self.total_steps:
            raise PluginBreach(f"backend '{self.plugin}' returned after {self.last_step} of the run's {self.total_steps} steps")
        epochs = min(self.epochs, -(-self.total_steps // self.steps_per_epoch))
        if self.epochs_ended != epochs:
            raise PluginBreach(f"backend '{self.plugin}' returned after ending {self.epochs_ended} of the run's {epochs} epochs")


__all__ = ["NonFiniteKernel", "PlanCheck", "PluginBreach", "exact_float32"]
