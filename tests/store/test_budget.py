"""The recording budget's decisions, on a clock the test drives: which steps it keeps, how many, and what it says.

A simulated loop whose steps take 40 ms and whose snapshots cost 10 ms (2 ms on the training thread, 8 ms of the
writer's time for 1 MB) under a 5% budget (2 ms a step): recording every step would cost 25%, so the cadence must
settle at every 5th step -- the arithmetic, not the code's output, is the reference."""

from __future__ import annotations

import math

import pytest

from convexp.store.budget import EPOCH_END, FIRST_STEPS, RecordingBudget, budget_problem

STEP, READ, WRITE, SIZE = 0.040, 0.002, 0.008, 1_000_000


def simulate(share: float, steps: int, epoch_every: int | None = None, step_seconds=lambda step: STEP):
    """Run the budget over a loop of ``steps`` updates; returns it, the kept steps and the lines it said."""
    now = [0.0]
    said: list[str] = []
    budget = RecordingBudget(share, say=said.append, clock=lambda: now[0])
    written = [0.0, 0]
    kept = []
    for step in range(steps + 1):
        if step:
            now[0] += step_seconds(step)
        epoch_end = epoch_every is not None and step and step % epoch_every == 0
        reason = budget.offer(step, (written[0], written[1]), EPOCH_END if epoch_end else None)
        if reason is not None:
            now[0] += READ
            budget.kept(step, reason, READ, SIZE)
            written = [written[0] + WRITE, written[1] + SIZE]
            kept.append(step)
    return budget, kept, said


def test_every_step_costing_five_times_the_budget_settles_at_every_fifth_step():
    budget, kept, said = simulate(0.05, 2000)
    expected_every = math.ceil((READ + WRITE) / (0.05 * STEP))  # 10 ms / 2 ms
    assert expected_every == 5
    assert kept[: FIRST_STEPS + 1] == list(range(FIRST_STEPS + 1))  # step 0 and the first updates, always
    gaps = [b - a for a, b in zip(kept, kept[1:])][FIRST_STEPS:]
    assert all(gap >= expected_every for gap in gaps)
    assert gaps[-50:] == [expected_every] * 50  # steady: exactly every 5th step
    assert budget.every == expected_every
    # the run's whole recording cost is within the budget of its training time, give or take one snapshot
    assert budget.spent <= 0.05 * budget.training_seconds() + READ + WRITE
    assert budget.snapshot_seconds == pytest.approx(READ + WRITE)
    assert budget.step_seconds == pytest.approx(STEP)
    assert len(said) == 1 and "every 5th step" in said[0] and "25.0% of training time" in said[0]


def test_a_budget_every_step_fits_keeps_every_step_and_says_nothing():
    budget, kept, said = simulate(0.30, 200)  # 10 ms of 40 ms is 25%: within 30%
    assert kept == list(range(201))
    assert said == [] and budget.every == 1
    summary = budget.summary()
    assert summary["snapshots_kept"] == summary["steps_offered"] == 201


def test_always_kept_steps_count_against_the_budget_and_are_listed_by_reason():
    budget, kept, _ = simulate(0.05, 300, epoch_every=100)
    assert {0, 1, 2, 100, 200, 300} <= set(kept)
    summary = budget.summary()
    assert summary["always_kept"] == {"start": [0], "first": [1, 2], "epoch end": [100, 200, 300]}
    assert summary["kept_by_cadence"] == len(kept) - 6
    assert summary["snapshots_kept"] == len(kept)
    assert summary["cadence"][-1]["every"] == 5
    assert summary["recording_seconds"] <= 0.05 * summary["training_seconds"] + READ + WRITE


def test_the_cadence_follows_a_change_in_step_time_without_flapping():
    # steps slow down fourfold half-way (a bigger batch, a busier machine): a snapshot then fits every 2nd step
    budget, kept, _ = simulate(0.05, 2000, step_seconds=lambda step: STEP if step <= 1000 else 4 * STEP)
    late = [b - a for a, b in zip(kept, kept[1:]) if a > 1500]
    assert set(late) == {2}  # 10 ms / (5% of 160 ms) = 1.25: every 2nd step
    assert len(budget.schedule) < 10  # a few changes, not one per step


@pytest.mark.parametrize("share", [0, 1, 1.5, -0.05, float("nan"), float("inf"), True, "0.05", None])
def test_a_budget_that_is_not_a_share_of_training_time_is_refused_by_value(share):
    problem = budget_problem(share)
    assert problem is not None and "budget" in problem
    with pytest.raises(ValueError, match="budget"):
        RecordingBudget(share)  # type: ignore[arg-type]
