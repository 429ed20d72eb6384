"""Recording at a stated cost: which steps' kernels to record so that recording takes at most a share of training.

Recording a large network's kernels at every step can cost more than users will pay (a width-16
ResNet-18 pays about 15 ms a step for 2.8 MB of kernels: the copy, the encoding, the checksum and the
insert). With a budget -- ``record(..., budget=0.05)``, ``convexp run --budget 0.05`` -- the recorder
measures what one snapshot costs (the training thread's time reading, checking and handing it over,
plus the writer's wall time encoding, inserting and committing its bytes, waits for a core included)
against a step's time without it, and when recording every step would cost more than the budget it
records every k-th step, k = the smallest whole number with
``snapshot cost / (k * step time) <= budget``, adapted as the measures change. Snapshots always kept
(step 0 and the first :data:`FIRST_STEPS` updates, every epoch's end, the last step) count against the
budget too: the next step of the cadence waits until the run's whole recording cost is back within
the budget of its whole training time, so a short run keeps its share as a long one does.

The decision is made before a step's kernels are read, so a step left out costs nothing. What was
kept, and why, is summarised by :meth:`RecordingBudget.summary` into the run's ``runs.recording``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from convexp.store.store import Store

#: Updates after step 0 whose kernels are always recorded: filters change most at the start, and
#: these snapshots also measure what one costs.
FIRST_STEPS = 2
#: Weight of the newest measure in the running means of a snapshot's and a step's cost.
SMOOTHING = 0.2

#: The cadence k changes only when the measures call for a k more than this factor away from it.
STEADY = 1.25

#: Changes of cadence a run's summary lists at most (the first and the last half of them).
MAX_CADENCE_CHANGES = 40

#: Why a step's kernels were kept.
START, FIRST, EPOCH_END, LAST, CADENCE = "start", "first", "epoch end", "last", "budget"


def budget_problem(share: object) -> str | None:
    """Why ``share`` is not a recording budget (a fraction of training time above 0 and below 1), or None."""
    if isinstance(share, bool) or not isinstance(share, int | float) or not math.isfinite(share):
        return f"budget must be a number, not {share!r}"
    if not 0 < share < 1:
        return f"budget {share:g} is not a share of training time: give one above 0 and below 1 (0.05 is 5%)"
    return None


def check_budget(share: float | None) -> None:
    """Raise ValueError with :func:`budget_problem`'s line unless ``share`` is None or a recording budget."""
    if share is not None and (problem := budget_problem(share)):
        raise ValueError(problem)


class RecordingBudget:
    """Decides, step by step, whether a step's kernels are recorded under a budget ``share`` of training time.

    The recorder calls :meth:`offer` before reading a step's kernels (with the writer's time on kernel snapshots
    and the kernel bytes it has written) and :meth:`kept` after handing them over (with the seconds the training
    thread spent on them). ``say`` receives the one line that tells the user, once, that steps are being left
    out."""

    def __init__(
        self,
        share: float,
        say: Callable[[str], None] | None = None,
        first_steps: int = FIRST_STEPS,
        clock: Callable[[], float] = time.perf_counter,
    ):
        problem = budget_problem(share)
        if problem is not None:
            raise ValueError(problem)
        self.share, self.say, self.first_steps, self.clock = float(share), say, first_steps, clock
        self.every = 1  # the cadence now: every k-th step
        self.schedule: list[tuple[int, int]] = []  # (from step, k) each time k changed
        self.kept_steps: dict[str, list[int]] = {START: [], FIRST: [], EPOCH_END: [], LAST: []}
        self.by_cadence = 0
        self.offered = 0  # steps whose kernels could have been recorded
        self.last_kept: int | None = None
        self._reading: float | None = None  # the running mean of the training thread's time for a snapshot
        self._bytes: float | None = None  # the running mean of a snapshot's kernel bytes
        self.step_seconds: float | None = None  # the running mean of a step's time without recording
        self.spent = 0.0  # the run's recording cost so far (training thread and writer), seconds
        self._began = clock()
        self._recording_seconds = 0.0  # the training thread's time in recording, all of it
        self._last_offer: tuple[int, float, float] | None = None  # (step, clock, recording seconds) then
        self._writer = (0.0, 0)  # the writer's seconds on snapshots and its kernel bytes at its last report
        self._per_byte: float | None = None  # the writer's seconds per kernel byte
        self._told = False
        self._answer = True  # the decision for the step asked last

    # --- what the recorder tells it ---

    def writer_measured(self, seconds: float, kernel_bytes: int) -> None:
        """The writer's time on kernel snapshots and the kernel bytes it has written, both since the run began."""
        spent, count = self._writer
        if kernel_bytes > count:
            # the time the new bytes took: the writer's cost of a byte, as a running mean
            per_byte = max(seconds - spent, 0.0) / (kernel_bytes - count)
            self._per_byte = per_byte if self._per_byte is None else _mean(self._per_byte, per_byte)
            self.spent += max(seconds - spent, 0.0)
            self._writer = (seconds, kernel_bytes)

    def kept(self, step: int, reason: str, seconds: float, kernel_bytes: int) -> None:
        """A step's kernels were handed over (why: :data:`START` ...), having cost the training thread ``seconds``."""
        if reason == CADENCE:
            self.by_cadence += 1
        elif step not in self.kept_steps[reason]:
            self.kept_steps[reason].append(step)
        self.last_kept = step
        self._recording_seconds += seconds
        self.spent += seconds
        self._reading = seconds if self._reading is None else _mean(self._reading, seconds)
        self._bytes = kernel_bytes if self._bytes is None else _mean(self._bytes, kernel_bytes)

    @property
    def snapshot_seconds(self) -> float | None:
        """What one snapshot costs, as measured: the training thread's time for it, and the writer's for its bytes."""
        if self._reading is None or self._bytes is None:
            return None
        return self._reading + (self._per_byte or 0.0) * self._bytes

    def spent_elsewhere(self, seconds: float) -> None:
        """Training-thread time recording took outside a snapshot's reading (a flush waiting for the writer)."""
        self._recording_seconds += seconds
        self.spent += seconds

    # --- the decision ---

    def offer(self, step: int, written: tuple[float, int], must: str | None = None) -> str | None:
        """Why the kernels at ``step`` are recorded (:data:`START`, :data:`FIRST`, :data:`CADENCE`, or ``must``:
        a reason the recorder keeps them whatever the budget, as an epoch's end), or None: left out. ``written`` is
        the writer's (seconds on snapshots, kernel bytes) so far; a step offered again gets the same decision."""
        self.writer_measured(*written)
        wanted = self.wanted(step)
        if must is not None:
            return must
        if not wanted:
            return None
        return START if step == 0 else FIRST if step <= self.first_steps else CADENCE

    def wanted(self, step: int) -> bool:
        """Whether the kernels at ``step`` (an update's, about to be read) are to be recorded: always at step 0
        and the first updates; afterwards every k-th step, when the run's recording is within its budget."""
        if self._last_offer is not None and self._last_offer[0] == step:
            return self._answer  # asked again (an epoch's end after its last update): the same step, the same answer
        self._measure_step(step)
        self.offered += 1
        self._answer = self._decide(step)
        return self._answer

    def _decide(self, step: int) -> bool:
        if step == 0 or step <= self.first_steps:
            return True
        if self.last_kept is not None and step - self.last_kept < self.every:
            return False
        self._adapt(step)  # at a step the cadence would take: so k changes at most once per snapshot
        if self.last_kept is not None and step - self.last_kept < self.every:
            return False
        return self.spent <= self.share * self.training_seconds()

    def training_seconds(self) -> float:
        """Wall time since the run began, less the training thread's time in recording."""
        return self.clock() - self._began - self._recording_seconds

    def _measure_step(self, step: int) -> None:
        now = self.clock()
        if self._last_offer is not None:
            last_step, last_time, last_recording = self._last_offer
            if step > last_step:
                plain = (now - last_time - (self._recording_seconds - last_recording)) / (step - last_step)
                if plain > 0:
                    self.step_seconds = plain if self.step_seconds is None else _mean(self.step_seconds, plain)
        self._last_offer = (step, now, self._recording_seconds)

    def _adapt(self, step: int) -> None:
        if self.snapshot_seconds is None or not self.step_seconds:
            return
        ratio = self.snapshot_seconds / (self.share * self.step_seconds)  # the k that spends exactly the budget
        every = max(1, math.ceil(ratio - 1e-9))
        if self.every / STEADY <= every <= self.every * STEADY:
            return  # within the measures' noise: the cadence stays (the budget itself is kept by the run's total)
        self.every = every
        self.schedule.append((step, every))
        if every > 1 and not self._told and self.say is not None:
            self._told = True
            self.say(
                f"recording every step would cost {self.snapshot_seconds / self.step_seconds:.1%} of training time "
                f"({self.snapshot_seconds * 1e3:.1f} ms a snapshot, {self.step_seconds * 1e3:.1f} ms a step); "
                f"recording every {_ordinal(every)} step to stay within the {percent(self.share)} budget "
                "(step 0, the first steps, each epoch's end and the last step are always kept)"
            )

    def summary(self) -> dict[str, Any]:
        """What the run's spec keeps under ``recording``: the budget, the steps kept and why, the cadence chosen."""
        kept = self.by_cadence + sum(len(steps) for steps in self.kept_steps.values())
        found: dict[str, Any] = {
            "budget": self.share,
            "steps_offered": self.offered,
            "snapshots_kept": kept,
            "always_kept": {reason: steps for reason, steps in self.kept_steps.items() if steps},
            "kept_by_cadence": self.by_cadence,
            # a long run's changes of cadence, the first and the last of them when there are many
            "cadence": [{"from_step": step, "every": every} for step, every in _ends(self.schedule, MAX_CADENCE_CHANGES)],
            "cadence_changes": len(self.schedule),
            "recording_seconds": round(self.spent, 6),
            "training_seconds": round(max(self.training_seconds(), 0.0), 6),
        }
        if self.snapshot_seconds is not None:
            found["snapshot_ms"] = round(self.snapshot_seconds * 1e3, 3)
        if self.step_seconds is not None:
            found["step_ms"] = round(self.step_seconds * 1e3, 3)
        return found


def percent(share: float) -> str:
    """A budget as people write it: 0.05 as 5%, 0.0001 as 0.01%."""
    return f"{share * 100:.3g}%"


def _ends(items: list[Any], most: int) -> list[Any]:
    return items if len(items) <= most else items[: most // 2] + items[-(most // 2) :]


def _mean(old: float, new: float) -> float:
    return (1 - SMOOTHING) * old + SMOOTHING * new


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def save_recording(store: Store, run_id: int, recording: dict[str, Any]) -> None:
    """Keep what a budgeted run kept, and why (:meth:`RecordingBudget.summary`), in its ``runs.recording``."""
    from sqlalchemy import update

    from convexp.store.models import Run

    with store.transaction() as connection:
        connection.execute(update(Run).where(Run.id == run_id).values(recording=recording))
