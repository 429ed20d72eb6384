"""How a group of runs' steps map to epochs and to seconds: the experiment page's other x axes.

A group's curves are means at each step; to draw them by epoch or by wall time, each group carries its
epochs' last steps (a step k steps into epoch e of n steps is e - 1 + k / n, as the run page places it) and, at
each step any of its runs logged a metric, the mean over those runs of the seconds since each run's first
value. Runs of one group share their steps per epoch unless a grouping field changes the batch size, and
then each group has its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from convexp.store import RunRecord, Store


def group_clocks(store: Store, groups: Sequence[tuple[str, Sequence[RunRecord]]]) -> dict[str, dict[str, Any]]:
    """For each (label, runs) group: ``epoch_ends`` ([epoch, its last step] pairs, from the group's first run that
    records epochs) and ``seconds`` ([step, mean seconds since each run's first value] pairs; empty where no run kept
    wall times)."""
    clock = store.step_clock([r.id for _, runs in groups for r in runs])
    result = {}
    for label, runs in groups:
        ends: dict[int, int] = {}
        for run in runs:
            for step, epoch, _ in clock.get(run.id, []):
                if epoch > 0:
                    ends[epoch] = max(step, ends.get(epoch, step))
            if ends:
                break  # one run's epochs: the group's runs share them
        elapsed: dict[int, list[float]] = {}
        for run in runs:
            times = [(step, t) for step, _, t in clock.get(run.id, []) if t is not None]
            for step, t in times:
                elapsed.setdefault(step, []).append(t - times[0][1])
        result[label] = {
            "epoch_ends": sorted([epoch, step] for epoch, step in ends.items()),
            "seconds": [[step, sum(values) / len(values)] for step, values in sorted(elapsed.items())],
        }
    return result
