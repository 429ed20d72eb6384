"""The memory a run needs at least, checked before it starts (issue 29, item 3)."""

from __future__ import annotations

import pytest

from convexp.errors import ConvexpError
from convexp.experiments.estimate_memory import check_memory, estimate_memory
from convexp.experiments.spec import RunSpec
from tests.conftest import TINY_DIGITS, run_cli, write_experiments


def test_the_estimate_is_the_sum_its_docs_name_counted_by_hand():
    spec = RunSpec.model_validate(TINY_DIGITS)  # digits 1x8x8; conv 4 3x3 -> 4x6x6; maxpool -> 4x3x3; flatten 36; dense 10
    needed = estimate_memory(spec)
    parameters = (4 * 9 + 4) + (36 * 10 + 10)
    assert needed.weights == (2 + 1) * parameters * 4  # SGD with momentum: one buffer beside weights and gradients
    outputs = 64 + 4 * 36 + 4 * 9 + 36 + 10  # the input, then each layer's output
    assert needed.activations == 2 * outputs * 64 * 4  # batch 64, forward and backward
    assert needed.dataset == 1437 * 64 * 4  # the digits' training split as float32
    adam = estimate_memory(RunSpec.model_validate({**TINY_DIGITS, "optimizer": {"name": "adam"}}))
    assert adam.weights == 4 * parameters * 4


def test_a_run_that_cannot_fit_is_refused_in_one_line_by_validate_and_run_and_writes_nothing(tmp_path):
    huge = {
        **TINY_DIGITS,
        "layers": [
            {"type": "conv", "filters": 100_000_000, "kernel_size": 3},
            {"type": "flatten"},
            {"type": "dense", "units": 10},
        ],
    }
    path = write_experiments(tmp_path / "e.yaml", {"huge": huge})
    for command in (["validate", str(path)], ["run", str(path), "--db", str(tmp_path / "r.db")]):
        result = run_cli(*command)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        line = " ".join(result.stderr.split())
        assert (
            "experiment 'huge': a run needs at least" in line and "more than the" in line and "this machine has available" in line
        )
    assert not (tmp_path / "r.db").exists()
    with pytest.raises(ConvexpError, match="needs at least"):
        check_memory("huge", RunSpec.model_validate(TINY_DIGITS), available=1000)


def test_only_axes_that_can_change_a_runs_memory_are_checked_one_by_one():
    """An optimizer's numbers do not change the state it keeps; its kind, the layers and the batch do."""
    from convexp.experiments.estimate_memory import decides_memory

    assert [decides_memory(a) for a in ("optimizer", "optimizer.name", "layers.0.filters", "batch_size", "snapshots.layers")] == [
        True
    ] * 5
    assert [decides_memory(a) for a in ("optimizer.learning_rate", "optimizer.schedule.gamma", "seed", "epochs")] == [False] * 4
