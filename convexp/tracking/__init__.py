"""Recording from a user's own training loop: :func:`track` opens a run (:mod:`convexp.tracking.run`), and
:mod:`convexp.tracking.model_kernels` finds and reads the conv layers of whatever model the user passes.
:mod:`convexp.keras` and :mod:`convexp.torch`, the user's doors for those frameworks, build on both."""

from __future__ import annotations

from convexp.tracking.run import EXTERNAL, RunEndedError, TrackedRun, kernel_reader, kernels_of, track, unpack

__all__ = ["EXTERNAL", "RunEndedError", "TrackedRun", "kernel_reader", "kernels_of", "track", "unpack"]
