"""Sweeps (an experiment's sweep: block): what they sample, how trials are recorded and pruned, continuing one
after a crash, and the one-line refusals of a bad block -- against real training on the digits data."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convexp.analysis.filters import analyse_layer
from convexp.experiments.runner import execute, prepare_runs
from convexp.experiments.samplers import sample
from convexp.experiments.sweeping import history
from convexp.experiments.sweeping import sweep_of as sweep_of_record
from convexp.store import Store
from tests.conftest import TINY_DIGITS, one_line_error, run_cli, sha256, stored_kernel, wait_until, write_experiments

LEARNING_RATE = {"loguniform": [1e-4, 0.5]}


def sweep_of(**block) -> dict:
    """A digits experiment sweeping what ``block`` says (a random search of the learning rate by default)."""
    return {
        **TINY_DIGITS,
        "epochs": 2,
        "sweep": {"method": "random", "trials": 4, "parameters": {"optimizer.learning_rate": LEARNING_RATE}, **block},
    }


def trials(db: Path) -> list[tuple]:
    """(trial, run id, status, attempts, learning rate, epochs completed) of every trial, in trial order."""
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT trial, id, status, attempts, json_extract(spec, '$.optimizer.learning_rate'), epochs_completed "
            "FROM runs WHERE sweep_id IS NOT NULL ORDER BY trial"
        ).fetchall()


def test_a_random_sweep_with_the_same_seed_samples_the_same_trials(tmp_path):
    path = write_experiments(tmp_path / "e.yaml", {"lr": sweep_of(seed=7)})
    for db in ("a.db", "b.db"):
        result = run_cli("run", str(path), "--db", str(tmp_path / db))
        assert result.returncode == 0, result.stderr
    first, second = trials(tmp_path / "a.db"), trials(tmp_path / "b.db")
    assert [t[0] for t in first] == [1, 2, 3, 4]
    assert [t[4] for t in first] == [t[4] for t in second]
    rates = [t[4] for t in first]
    assert len(set(rates)) == 4 and all(1e-4 <= r <= 0.5 for r in rates)
    assert "sweep 1 of 'lr': 4/4 trial(s) (4 finished)" in result.stdout
    listed = json.loads(run_cli("runs", "-e", "lr", "--db", str(tmp_path / "a.db"), "--format", "json").stdout)
    assert [(r["trial"], r["optimizer.learning_rate"]) for r in listed] == [(t[0], t[4]) for t in first]
    shown = run_cli("show", "3", "--db", str(tmp_path / "a.db")).stdout
    assert "sweep       trial 3 of sweep 1" in shown
    other = run_cli("run", str(path), "--db", str(tmp_path / "c.db"), "--set", "sweep.seed=8")
    assert other.returncode == 0, other.stderr
    assert [t[4] for t in trials(tmp_path / "c.db")] != rates


def test_random_draws_follow_their_distributions():
    """Many draws of each kind against its distribution: uniform's and loguniform's (in log space) mean and ends,
    int's both ends included, every choice taken."""
    from convexp.experiments.samplers import sample
    from convexp.experiments.sweep_spec import SweepSpec

    sweep = SweepSpec.model_validate(
        {
            "method": "random",
            "trials": 4000,
            "parameters": {
                "a": {"uniform": [-1, 3]},
                "b": {"loguniform": [1e-4, 1]},
                "c": {"int": [2, 5]},
                "d": {"choice": ["x", [3, 3], {"k": 1}]},
            },
        }
    )
    draws = [sample(sweep, n) for n in range(1, 4001)]
    a = np.array([d["a"] for d in draws])
    logs = np.log10([d["b"] for d in draws])
    assert a.min() >= -1 and a.max() < 3 and abs(a.mean() - 1.0) < 0.1  # mean 1, sd 4/sqrt(12)/sqrt(4000) = 0.018
    assert logs.min() >= -4 and logs.max() < 0 and abs(logs.mean() + 2.0) < 0.1
    assert sorted({d["c"] for d in draws}) == [2, 3, 4, 5] and all(type(d["c"]) is int for d in draws)
    assert {repr(d["d"]) for d in draws} == {"'x'", "[3, 3]", "{'k': 1}"}
    assert sample(sweep, 17) == draws[16]  # a trial's values depend on the seed and its number only


def test_a_grid_sweep_takes_every_combination_in_order(tmp_path):
    body = sweep_of(
        method="grid", parameters={"layers.0.filters": {"choice": [2, 4]}, "batch_size": {"int": [31, 32]}}, trials=None
    )
    del body["sweep"]["trials"]
    path = write_experiments(tmp_path / "e.yaml", {"g": body})
    db = tmp_path / "r.db"
    assert run_cli("run", str(path), "--db", str(db)).returncode == 0
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT trial, json_extract(spec, '$.layers[0].filters'), json_extract(spec, '$.batch_size') FROM runs ORDER BY trial"
        ).fetchall()
    assert rows == [(1, 2, 31), (2, 2, 32), (3, 4, 31), (4, 4, 32)]


@pytest.mark.parametrize("objective", ["metric", "measure"])
def test_tpe_with_pruning_prunes_trials_and_records_them_pruned(tmp_path, objective):
    """TPE over the learning rate on the digits data, the median rule pruning: at least one trial stops early and
    ends pruned at the epoch it reached, with its objective recorded at each epoch it trained."""
    pytest.importorskip("optuna", reason="tpe and pruning need convexp[sweeps]")
    chosen = {"metric": "test_accuracy"} if objective == "metric" else {"measure": "edge_share", "layer": "conv1"}
    body = {
        **TINY_DIGITS,
        "optimizer": {"name": "sgd", "learning_rate": 0.1},
        "epochs": 4,
        "sweep": {
            "method": "tpe",
            "trials": 8,
            "startup_trials": 3,
            "seed": 1,
            "parameters": {"optimizer.learning_rate": {"loguniform": [1e-5, 1.0]}},
            "objective": chosen,
            "prune": {"rule": "median", "startup_trials": 2},
        },
    }
    path = write_experiments(tmp_path / "e.yaml", {"tpe": body})
    with Store(str(tmp_path / "r.db")) as store:
        outcomes = execute(prepare_runs(path, ["tpe"]), store)
        name = "test_accuracy" if objective == "metric" else "edge_share(conv1)"
        pruned = [o for o in outcomes if o.status == "pruned"]
        assert len(outcomes) == 8 and pruned, [o.status for o in outcomes]
        assert {o.status for o in outcomes} == {"finished", "pruned"}
        for outcome in outcomes:
            run = store.get_run(outcome.run_id)
            assert (run.sweep_id, run.trial) == (outcomes[0].sweep_id, outcome.trial)
            values = {m.epoch: m.value for m in store.metrics(run.id, [name])}
            assert sorted(values) == list(range(1, run.epochs_completed + 1))
            assert outcome.objective == values[run.epochs_completed]
            if outcome.status == "pruned":
                assert run.epochs_completed < 4 and "by the median rule" in run.message
            else:
                assert run.epochs_completed == 4
            if objective == "metric":  # each trial drew what TPE draws from the trials before it, afresh
                sweep = sweep_of_record(store, run.sweep_id)
                before = [t for t in history(store, run.sweep_id, sweep) if t.number < outcome.trial]
                assert sample(sweep, outcome.trial, before) == {"optimizer.learning_rate": run.spec["optimizer"]["learning_rate"]}
            if objective == "measure":  # the recorded measure is that of the kernel recorded at the epoch's end
                for epoch, value in values.items():
                    step = max(m.step for m in store.metrics(run.id, ["test_accuracy"]) if m.epoch == epoch)
                    kernel = stored_kernel(tmp_path / "r.db", run.id, "conv1", step)
                    assert value == analyse_layer(kernel, step, gabor=False).edge_share


def test_the_median_rule_prunes_as_optuna_says(tmp_path):
    """The pruning decision against a direct computation of the median rule: the trial's best so far against
    the median of the finished trials at that epoch."""
    pytest.importorskip("optuna", reason="pruning needs convexp[sweeps]")
    from convexp.experiments.pruning import prune_reason
    from convexp.experiments.samplers import Trial
    from convexp.experiments.sweep_spec import SweepSpec

    sweep = SweepSpec.model_validate(
        {"method": "random", "trials": 9, "parameters": {"x": {"uniform": [0, 1]}}, "prune": {"startup_trials": 3}}
    )
    rng = np.random.default_rng(0)
    finished = [Trial(n, {"x": 0.5}, "complete", {e: float(v) for e, v in enumerate(rng.random(3), 1)}) for n in range(1, 5)]
    for epoch in (1, 2):
        median = float(np.median([t.objective[epoch] for t in finished]))
        for own in (median - 0.01, median + 0.01):
            objective = {e: own for e in range(1, epoch + 1)}
            assert (prune_reason(sweep, finished, objective) is not None) == (own < median)
    assert prune_reason(sweep, finished[:2], {1: -1.0}) is None  # fewer finished trials than startup_trials
    warm = sweep.model_copy(update={"prune": sweep.prune.model_copy(update={"warmup_epochs": 1})})
    assert prune_reason(warm, finished, {1: -1.0}) is None and prune_reason(warm, finished, {1: -1.0, 2: -1.0})


def test_a_sweep_killed_mid_trial_continues_without_repeating_a_trial(tmp_path):
    """SIGKILL while trial 2 trains; --resume-sweep then resumes trial 2 from its checkpoint in the same run and
    runs trials 3 and 4, the finished trial 1 untouched; the values are those of a sweep never interrupted."""
    body = sweep_of(seed=3)
    body.update(epochs=400, train_examples=64, snapshots={"every": 1})
    path = write_experiments(tmp_path / "e.yaml", {"lr": body})
    db = tmp_path / "r.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "convexp", "run", str(path), "--db", str(db)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: any(t[0] == 2 and t[5] >= 3 for t in trials(db)), "trial 2 to train 3 epochs")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    before = {t[0]: t for t in trials(db)}
    result = run_cli("run", str(path), "--db", str(db), "--resume-sweep")
    assert result.returncode == 0, result.stderr
    after = trials(db)
    assert [t[0] for t in after] == [1, 2, 3, 4] and {t[2] for t in after} == {"finished"}
    for number, was in before.items():
        now = after[number - 1]
        assert now[1] == was[1]  # the same run: nothing repeated
        assert now[3] == (1 if was[2] == "finished" else 2)  # a finished trial untouched, the killed one resumed
    assert any(was[2] == "running" for was in before.values()), before  # the kill landed in a trial
    clean = tmp_path / "clean.db"
    assert run_cli("run", str(path), "--db", str(clean)).returncode == 0
    assert [t[4] for t in after] == [t[4] for t in trials(clean)]
    again = run_cli("run", str(path), "--db", str(db), "--resume-sweep")
    assert again.returncode == 0 and len(trials(db)) == 4  # a complete sweep continued: nothing to do
    assert "4/4 trial(s) (4 finished)" in again.stdout


def test_a_sweep_continued_with_more_trials_adds_only_those(tmp_path):
    path = write_experiments(tmp_path / "e.yaml", {"lr": sweep_of(trials=2)})
    db = tmp_path / "r.db"
    assert run_cli("run", str(path), "--db", str(db)).returncode == 0
    first = trials(db)
    result = run_cli("run", str(path), "--db", str(db), "--resume-sweep", "--set", "sweep.trials=4")
    assert result.returncode == 0, result.stderr
    assert trials(db)[:2] == first and [t[0] for t in trials(db)] == [1, 2, 3, 4]
    assert "4/4 trial(s)" in result.stdout
    changed = run_cli("run", str(path), "--db", str(db), "--resume-sweep", "--set", "epochs=3")
    one_line_error(changed, "no sweep of experiment 'lr' as it is defined now")


@pytest.mark.parametrize(
    "block, needles",
    [
        (
            {"parameters": {"optimizer.learning_rate": {"loguniform": [0, 0.1]}}},
            ["sweep.parameters.optimizer.learning_rate", "0 < low"],
        ),
        ({"parameters": {"optimizer.learning_rate": {"uniform": [0.1, 0.01]}}}, ["low < high"]),
        ({"parameters": {"optimizer.lr": LEARNING_RATE}}, ["sweep.parameters.optimizer.lr", "did you mean 'learning_rate'"]),
        ({"parameters": {"layers.0.filters": {"int": [0, 4]}}}, ["layers.0.filters"]),
        ({"parameters": {"seed": {"normal": [0, 1]}}}, ["unknown distribution 'normal'"]),
        ({"objective": {"metric": "accuracy"}}, ["sweep.objective.metric", "never record 'accuracy'", "test_accuracy"]),
        ({"objective": {"measure": "edge_share", "layer": "conv9"}}, ["sweep.objective.layer", "'conv9' is not a conv layer"]),
        ({"method": "grid", "trials": 5, "parameters": {"seed": {"int": [0, 3]}}}, ["sweep.trials", "more than the grid's 4"]),
        ({"method": "grid", "trials": 2}, ["a grid takes choice or int"]),
        ({"trials": None}, ["sweep.trials", "how many runs a random search makes"]),
        ({"metod": "tpe"}, ["sweep.metod", "did you mean 'method'"]),
    ],
)
def test_a_bad_sweep_block_is_one_line_and_writes_nothing(tmp_path, block, needles):
    body = sweep_of(**block)
    body["sweep"] = {k: v for k, v in body["sweep"].items() if v is not None}
    path = write_experiments(tmp_path / "e.yaml", {"lr": body})
    db = tmp_path / "r.db"
    for command in (["run", str(path), "--db", str(db)], ["validate", str(path)]):
        one_line_error(run_cli(*command), str(path), "experiment 'lr'", *needles)
    assert sha256(db) is None


def test_a_measure_of_a_layer_not_recorded_at_epoch_end_is_refused(tmp_path):
    body = sweep_of(objective={"measure": "drift"})
    body["snapshots"] = {"epoch_end": False, "every": 10}
    path = write_experiments(tmp_path / "e.yaml", {"lr": body})
    one_line_error(run_cli("validate", str(path)), "sweep.objective", "drift of conv1", "epoch_end: true")


def test_a_sweep_and_a_list_axis_do_not_mix(tmp_path):
    path = write_experiments(tmp_path / "e.yaml", {"lr": {**sweep_of(), "seed": [0, 1]}})
    one_line_error(run_cli("validate", str(path)), "field 'seed'", "sweep this one too")
    path = write_experiments(tmp_path / "e.yaml", {"lr": sweep_of()})
    one_line_error(run_cli("validate", str(path), "--set", "seed=0,1"), "field 'seed'", "--set seed=0,1")
    one_line_error(run_cli("validate", str(path), "--set", "sweep.trials=2,3"), "sweep.trials", "one value")


def test_tpe_without_optuna_is_one_line_before_anything_is_written(tmp_path):
    blocked = tmp_path / "blocked" / "optuna"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('optuna is not installed here')\n")
    path = write_experiments(tmp_path / "e.yaml", {"lr": sweep_of(method="tpe")})
    db = tmp_path / "r.db"
    env = {"PYTHONPATH": os.pathsep.join([str(blocked.parent), os.environ.get("PYTHONPATH", "")])}
    one_line_error(run_cli("run", str(path), "--db", str(db), env=env), "pip install 'convexp[sweeps]'")
    assert sha256(db) is None
    random = run_cli("run", str(path), "--db", str(db), "--set", "sweep.method=random", env=env)
    assert random.returncode == 0, random.stderr  # grid and random need no Optuna


def test_resume_sweep_without_a_sweep_is_one_line(tmp_path):
    path = write_experiments(tmp_path / "e.yaml", {"lr": sweep_of(), "plain": TINY_DIGITS})
    one_line_error(run_cli("run", str(path), "-e", "plain", "--resume-sweep"), "experiment(s) plain have no sweep: block")
    db = tmp_path / "r.db"
    one_line_error(run_cli("run", str(path), "-e", "lr", "--resume-sweep", "--db", str(db)), "no sweep of experiment 'lr'")


def test_a_sweep_is_counted_and_estimated_by_its_trials(tmp_path):
    from convexp.experiments.estimate_disk import estimate_grid, estimate_run
    from convexp.experiments.grids import resolve_grids

    body = sweep_of(trials=1000, parameters={"epochs": {"int": [1, 3]}, "optimizer.learning_rate": LEARNING_RATE})
    path = write_experiments(tmp_path / "e.yaml", {"lr": body})
    grid = resolve_grids(path)[0]
    assert len(grid) == 1000
    largest = estimate_run(grid.spec(epochs=3))
    expected = estimate_grid(grid)
    assert expected.runs == 1000 and expected.total_bytes == 1000 * largest.total_bytes
    assert math.isclose(expected.steps, 1000 * largest.steps)


def test_the_client_keeps_as_many_trials_queued_as_workers_and_draws_the_next_when_one_ends(tmp_path):
    """The Dask executor's sampler, without a cluster: two workers get trials 1 and 2 queued before either has
    ended, each ending queues the next, and none is queued beyond the sweep's trials."""
    from convexp.experiments.executors import _SweepFeeder
    from convexp.experiments.sweeping import open_sweep

    path = write_experiments(tmp_path / "e.yaml", {"lr": sweep_of(trials=3)})
    planned = prepare_runs(path, ["lr"])
    with Store(str(tmp_path / "r.db")) as store:
        feeder = _SweepFeeder([open_sweep(store, planned.grids[0])], planned, store, parallel=2)
        first = feeder.first()
        assert [run.trial for _, run in first] == [1, 2]
        assert set(store.statuses([run_id for run_id, _ in first]).values()) == {"queued"}  # none has ended
        assert [run.trial for _, run in feeder.ended()] == [3]
        assert feeder.ended() == [] and feeder.ended() == []
        assert [t[0] for t in trials(tmp_path / "r.db")] == [1, 2, 3]
