"""Runs by their parameters (`convexp runs -e/--where`, runs_frame) and groups summarised across seeds
(`convexp summary`), checked against SQL over the stored specs and an independent computation
(numpy, scipy.stats) of every number from the database."""

from __future__ import annotations

import json
import math
import sqlite3

import numpy as np
import pytest
from scipy import optimize, stats

import convexp
from convexp.store import Store
from tests.conftest import REPO, TINY_DIGITS, readme_read_kernel, run_cli, write_experiments

GRID = {**TINY_DIGITS, "initializer": ["glorot_uniform", "he_normal"], "seed": [0, 1, 2], "batch_size": [32, 64]}


@pytest.fixture(scope="module")
def grid_db(tmp_path_factory):
    """12 finished runs of `grid` (2 initializers x 2 batch sizes x 3 seeds), one run of `grid` that
    failed and a run of another experiment."""
    folder = tmp_path_factory.mktemp("grid")
    path = write_experiments(folder / "e.yaml", {"grid": GRID, "other": TINY_DIGITS})
    db = folder / "grid.db"
    for experiment in ("grid", "other"):
        result = run_cli("run", str(path), "-e", experiment, "--db", str(db))
        assert result.returncode == 0, result.stderr
    with convexp.track(experiment="grid", db=str(db), config={"lr": 0.1}) as run:
        run.log_metrics({"test_accuracy": 0.5}, step=0)
        run.finish("failed", "a crash, for the test")
    return db


def _sql(db, query: str, *args) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(query, args).fetchall()


def _final(db, run_id: int, name: str) -> float:
    ((value,),) = _sql(db, "SELECT value FROM metrics WHERE run_id = ? AND name = ? ORDER BY step DESC LIMIT 1", run_id, name)
    return value


def test_runs_of_an_experiment_show_the_parameters_that_vary(grid_db):
    result = run_cli("runs", "-e", "grid", "--db", str(grid_db), "-f", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    varying = [k for k in rows[0] if k not in ("id", "experiment", "backend", "status", "attempts", "epochs")]
    varying = varying[varying.index("started") + 1 :]
    # the tracked run (no spec fields, a config) makes every spec field vary; its config is there too
    assert {"initializer", "batch_size", "seed", "config.lr"} <= set(varying)
    finished = json.loads(run_cli("runs", "-e", "grid", "--status", "finished", "--db", str(grid_db), "-f", "json").stdout)
    columns = list(finished[0])
    assert columns[columns.index("started") + 1 :] == [
        "initializer",
        "batch_size",
        "seed",
    ]  # spec order; not kernel_initializer, the same
    for row in finished:
        (spec,) = _sql(grid_db, "SELECT spec FROM runs WHERE id = ?", row["id"])[0]
        spec = json.loads(spec)
        assert (row["initializer"], row["batch_size"], row["seed"]) == (spec["initializer"], spec["batch_size"], spec["seed"])
    csv = run_cli("runs", "-e", "grid", "--status", "finished", "--db", str(grid_db), "-f", "csv").stdout.splitlines()
    assert csv[0].endswith(",started,initializer,batch_size,seed") and len(csv) == 13


@pytest.mark.parametrize(
    "where, sql",
    [
        (["initializer=he_normal"], "json_extract(spec, '$.initializer') = 'he_normal'"),
        (["batch_size=3.2e1"], "json_extract(spec, '$.batch_size') = 32"),  # numbers as numbers
        (
            ["optimizer.learning_rate=0.10", "seed=2"],
            "json_extract(spec, '$.optimizer.learning_rate') = 0.1 AND json_extract(spec, '$.seed') = 2",
        ),
        (["config.lr=0.1"], "json_extract(spec, '$.config.lr') = 0.1"),
        (["experiment=grid", "shuffle=true"], "experiment = 'grid' AND json_extract(spec, '$.shuffle') = 1"),
        (["seed<2", "batch_size>=64"], "json_extract(spec, '$.seed') < 2 AND json_extract(spec, '$.batch_size') >= 64"),
        (["seed>0.5", "seed<=1"], "json_extract(spec, '$.seed') > 0.5 AND json_extract(spec, '$.seed') <= 1"),
        (
            ["initializer!=he_normal", "experiment==grid"],
            "json_extract(spec, '$.initializer') != 'he_normal' AND experiment = 'grid'",
        ),
        (["batch_size!=32.0"], "json_extract(spec, '$.batch_size') != 32"),
    ],
)
def test_where_keeps_exactly_the_runs_an_sql_query_of_their_specs_finds(grid_db, where, sql):
    args = [a for w in where for a in ("--where", w)]
    result = run_cli("runs", *args, "--db", str(grid_db), "-f", "json")
    assert result.returncode == 0, result.stderr
    expected = [i for (i,) in _sql(grid_db, f"SELECT id FROM runs WHERE {sql} ORDER BY id")]
    assert expected and [r["id"] for r in json.loads(result.stdout)] == expected


def test_a_field_no_run_has_is_one_line_naming_the_fields(grid_db):
    result = run_cli("runs", "--where", "learning_rate=0.1", "--db", str(grid_db))
    assert result.returncode == 1 and result.stdout == ""
    line = " ".join(result.stderr.split())
    assert "--where learning_rate: no such field in these runs" in line and "optimizer.learning_rate" in line
    assert "Traceback" not in result.stderr
    assert run_cli("runs", "--where", "seed", "--db", str(grid_db)).returncode == 1
    ordered = run_cli("runs", "--where", "initializer<he", "--db", str(grid_db))
    assert ordered.returncode == 1 and "< compares numbers, and 'he' is not one" in ordered.stderr


def test_a_summary_where_equals_one_of_the_runs_a_query_keeps(grid_db):
    result = run_cli(
        "summary", "grid", "--by", "initializer", "--metric", "test_accuracy", "--where", "seed<2", "--where", "batch_size=64",
        "--db", str(grid_db), "-f", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {r["initializer"]: r for r in json.loads(result.stdout)}
    for initializer, row in rows.items():
        ids = [
            i
            for (i,) in _sql(
                grid_db,
                "SELECT id FROM runs WHERE experiment = 'grid' AND status = 'finished' AND json_extract(spec, '$.seed') < 2 "
                "AND json_extract(spec, '$.batch_size') = 64 AND json_extract(spec, '$.initializer') = ?",
                initializer,
            )
        ]
        values = [_final(grid_db, i, "test_accuracy") for i in ids]
        assert row["n"] == len(ids) == 2 and row["mean"] == pytest.approx(np.mean(values))
    none = run_cli("summary", "grid", "--by", "seed", "--where", "seed>5", "--db", str(grid_db))
    assert none.returncode == 1 and "no run of experiment 'grid' meets --where seed>5" in none.stderr


def test_the_runs_as_a_dataframe_one_column_per_parameter(grid_db):
    pytest.importorskip("pandas")
    from convexp.analysis.parameters import runs_frame

    with Store(str(grid_db)) as store:
        frame = runs_frame(store, experiment="grid", where=["initializer=glorot_uniform"])
    expected = [
        i
        for (i,) in _sql(
            grid_db, "SELECT id FROM runs WHERE experiment = 'grid' AND json_extract(spec, '$.initializer') = 'glorot_uniform'"
        )
    ]
    assert list(frame.index) == expected
    assert {"optimizer.learning_rate", "layers.0.filters", "seed", "test_accuracy", "status"} <= set(frame.columns)
    assert (frame["layers.0.filters"] == 4).all() and sorted(frame["seed"].unique()) == [0, 1, 2]


def _groups(db, field: str) -> dict[str, list[int]]:
    """Finished runs of grid by a spec field, from SQL alone."""
    rows = _sql(db, f"SELECT json_extract(spec, '$.{field}'), id FROM runs WHERE experiment = 'grid' AND status = 'finished'")
    groups: dict[str, list[int]] = {}
    for value, run_id in rows:
        groups.setdefault(str(value), []).append(run_id)
    return groups


def test_a_summary_of_metrics_equals_numpy_and_scipy_from_the_database(grid_db):
    result = run_cli("summary", "grid", "--by", "initializer", "--db", str(grid_db), "-f", "json")
    assert result.returncode == 0, result.stderr
    assert "left out: 1 run(s) not finished (1 failed)" in result.stderr
    rows = json.loads(result.stdout)
    groups = _groups(grid_db, "initializer")
    assert [(r["initializer"], r["quantity"]) for r in rows] == [
        (g, q) for q in ("test_accuracy", "test_loss") for g in ("glorot_uniform", "he_normal")
    ]
    for row in rows:
        values = np.array([_final(grid_db, i, row["quantity"]) for i in groups[row["initializer"]]])
        low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
        assert row["n"] == len(values) == 6
        assert row["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert row["std"] == pytest.approx(values.std(ddof=1), rel=1e-12)
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))
        assert (row["min"], row["max"]) == (values.min(), values.max())
        if row["initializer"] == "glorot_uniform":  # the baseline: first of the two groups
            assert row["difference"] is None
            continue
        base = np.array([_final(grid_db, i, row["quantity"]) for i in groups["glorot_uniform"]])
        welch = stats.ttest_ind(values, base, equal_var=False).confidence_interval(0.95)
        assert row["difference"] == pytest.approx(values.mean() - base.mean(), rel=1e-12)
        assert (row["diff_ci_low"], row["diff_ci_high"]) == (
            pytest.approx(welch.low, rel=1e-9),
            pytest.approx(welch.high, rel=1e-9),
        )
        exact = stats.permutation_test(
            (values, base),
            lambda a, b: abs(np.mean(a) - np.mean(b)),
            permutation_type="independent",
            alternative="greater",
            n_resamples=np.inf,
        )
        assert row["p_value"] == pytest.approx(exact.pvalue, abs=1e-12)  # C(12, 6) = 924 relabellings: all of them


def test_a_summary_by_two_fields_with_a_baseline_and_a_metric_at_a_step(grid_db):
    result = run_cli(
        "summary", "grid", "--by", "initializer", "--by", "batch_size", "--metric", "train_loss",
        "--step", "10", "--baseline", "he_normal,64", "--db", str(grid_db), "-f", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {(r["initializer"], r["batch_size"]): r for r in json.loads(result.stdout)}
    assert list(rows) == [("glorot_uniform", 32), ("glorot_uniform", 64), ("he_normal", 32), ("he_normal", 64)]
    members = _sql(
        grid_db,
        "SELECT json_extract(spec, '$.initializer'), json_extract(spec, '$.batch_size'), id FROM runs "
        "WHERE experiment = 'grid' AND status = 'finished'",
    )

    def at_step_10(run_id: int) -> float:
        ((value,),) = _sql(
            grid_db,
            "SELECT value FROM metrics WHERE run_id = ? AND name = 'train_loss' AND step <= 10 ORDER BY step DESC LIMIT 1",
            run_id,
        )
        return value

    by_group = {key: np.array([at_step_10(i) for a, b, i in members if (a, b) == key]) for key in rows}
    for key, row in rows.items():
        assert row["n"] == 3 and row["mean"] == pytest.approx(by_group[key].mean(), rel=1e-12)
        if key == ("he_normal", 64):
            assert row["difference"] is None
        else:
            assert row["difference"] == pytest.approx(by_group[key].mean() - by_group[("he_normal", 64)].mean(), rel=1e-12)


def test_filter_measures_equal_the_filters_command_and_numpy_from_the_stored_kernels(grid_db):
    result = run_cli(
        "summary", "grid", "--by", "initializer", "--measure", "edge_share", "--measure", "drift",
        "--measure", "similarity", "--layer", "conv1", "--db", str(grid_db), "-f", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {(r["initializer"], r["quantity"]): r for r in json.loads(result.stdout)}
    read_kernel = readme_read_kernel()
    groups = _groups(grid_db, "initializer")
    for initializer, ids in groups.items():
        last = {
            i: _sql(grid_db, "SELECT max(step) FROM kernel_snapshots WHERE run_id = ? AND layer = 'conv1'", i)[0][0] for i in ids
        }
        kernels = {i: read_kernel(str(grid_db), i, "conv1", last[i]).astype(np.float64) for i in ids}
        first = {i: read_kernel(str(grid_db), i, "conv1", 0).astype(np.float64) for i in ids}
        drift = [np.linalg.norm(kernels[i] - first[i]) / np.linalg.norm(first[i]) for i in ids]
        assert rows[(initializer, "drift(conv1)")]["mean"] == pytest.approx(np.mean(drift), rel=1e-9)

        def matched(a, b):
            fa, fb = a.reshape(len(a), -1), b.reshape(len(b), -1)
            cosine = (fa @ fb.T) / np.outer(np.linalg.norm(fa, axis=1), np.linalg.norm(fb, axis=1))
            r, c = optimize.linear_sum_assignment(-cosine)
            return cosine[r, c].mean()

        similarity = [np.mean([matched(kernels[i], kernels[j]) for j in ids if j != i]) for i in ids]
        assert rows[(initializer, "similarity(conv1)")]["mean"] == pytest.approx(np.mean(similarity), rel=1e-9)
        shares = []
        for i in ids:
            filters = json.loads(run_cli("filters", str(i), "--layer", "conv1", "--db", str(grid_db), "-f", "json").stdout)
            shares.append(filters["edge_share"][str(last[i])])
        edge = rows[(initializer, "edge_share(conv1)")]
        assert edge["mean"] == pytest.approx(np.mean(shares), rel=1e-12) and edge["n"] == 6


def test_a_group_of_one_run_says_so(grid_db):
    result = run_cli(
        "summary", "grid", "--by", "seed", "--by", "initializer", "--by", "batch_size", "--db", str(grid_db), "-f", "json"
    )
    rows = json.loads(result.stdout)
    assert len(rows) == 24 and all(r["n"] == 1 and r["std"] is None and r["ci_low"] is None for r in rows)
    assert all(r["note"] == "one value: no spread or interval" for r in rows)


@pytest.mark.parametrize(
    "args, message",
    [
        (["nope", "--by", "seed"], "no runs of experiment 'nope'"),
        (
            ["grid", "--by", "initialiser"],
            "--by initialiser: no such field in these runs (did you mean 'initializer'?); fields: experiment, backend,",
        ),
        (["grid", "--by", "seed", "--metric", "test_acc"], "--metric test_acc: no finished run recorded it"),
        (["grid", "--by", "seed", "--measure", "edges"], "--measure edges: not a filter measure"),
        (["grid", "--by", "seed", "--measure", "drift", "--layer", "conv2"], "--layer conv2: no snapshots in run(s)"),
        (["grid", "--by", "initializer", "--baseline", "zeros"], "--baseline zeros: no such group"),
        (["grid", "--by", "seed", "--measure", "drift", "--step", "7"], "has no snapshot of conv1 at step 7"),
    ],
)
def test_bad_input_is_one_line_naming_what_there_is(grid_db, args, message):
    result = run_cli("summary", *args, "--db", str(grid_db))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr


def test_an_experiment_without_finished_runs_is_refused_with_its_counts(tmp_path):
    db = tmp_path / "t.db"
    with convexp.track(experiment="crashed", db=str(db)) as run:
        run.finish("failed", "for the test")
    result = run_cli("summary", "crashed", "--by", "seed", "--db", str(db))
    assert result.returncode == 1 and "experiment 'crashed' has no finished runs yet (1 failed)" in result.stderr


def test_the_permutation_test_draws_with_a_fixed_seed_when_relabellings_are_many():
    """Above 20,000 relabellings (here C(30, 15)), p is estimated from 20,000 drawn with seed 0: stable
    from call to call, and close to scipy's own estimate."""
    from convexp.analysis.groups import permutation_p_value

    assert math.comb(30, 15) > 20_000
    rng = np.random.default_rng(5)
    a, b = rng.normal(0.3, 1, 15), rng.normal(0, 1, 15)
    p = permutation_p_value(a, b)
    assert p == permutation_p_value(a, b)
    reference = stats.permutation_test(
        (a, b), lambda x, y: abs(np.mean(x) - np.mean(y)), permutation_type="independent", alternative="greater",
        n_resamples=100_000, random_state=1,
    ).pvalue  # fmt: skip
    assert abs(p - reference) < 0.02


def test_the_edge_detectors_experiment_is_three_initializers_by_five_seeds_of_the_keras_example():
    from convexp.experiments.grids import resolve_runs

    runs = resolve_runs(REPO / "experiments.yaml", ["edge-detectors"], {}, backends=None)
    assert sorted((r.spec.initializer, r.spec.seed) for r in runs) == sorted(
        (i, s) for i in ("glorot_uniform", "torch_default", "he_normal") for s in range(5)
    )
    keras = resolve_runs(REPO / "experiments.yaml", ["mnist-keras-convnet"], {}, backends=None)[0].spec
    assert all(r.spec.layers == keras.layers and r.spec.epochs == 1 and r.spec.snapshots.layers == ["conv1"] for r in runs)


def test_plot_summary_draws_the_groups_and_the_curves_hold_the_summarys_numbers(grid_db, tmp_path):
    from matplotlib.image import imread

    from convexp.analysis.group_curves import group_curves

    out = tmp_path / "groups.png"
    result = run_cli(
        "plot", "summary", "grid", "--by", "initializer", "--metric", "test_loss", "--out", str(out), "--db", str(grid_db)
    )
    assert result.returncode == 0, result.stderr
    assert imread(out).shape[:2] == (450, 800)
    rows = json.loads(
        run_cli("summary", "grid", "--by", "initializer", "--metric", "test_loss", "--db", str(grid_db), "-f", "json").stdout
    )
    with Store(str(grid_db)) as store:
        curves = group_curves(store, "grid", ["initializer"], metric="test_loss")
    for curve, row in zip(curves.curves, rows):
        # every run of a group ends at its last step only if they share the batch size: compare run by run
        assert sorted(float(values[-1]) for _, values in curve.runs.values()) == sorted(
            _final(grid_db, i, "test_loss") for i in _groups(grid_db, "initializer")[curve.label]
        )
        assert row["n"] == len(curve.runs)
    both = run_cli("plot", "summary", "grid", "other", "--by", "seed", "--out", str(out), "--db", str(grid_db))
    assert both.returncode == 1 and "plot summary draws one experiment, not 2" in both.stderr


def test_a_report_of_an_experiment_opens_with_its_groups(grid_db, tmp_path):
    out = tmp_path / "grid.html"
    result = run_cli("report", "grid", "--by", "initializer", "--out", str(out), "--db", str(grid_db))
    assert result.returncode == 0, result.stderr
    html = out.read_text()
    rows = json.loads(run_cli("summary", "grid", "--by", "initializer", "--db", str(grid_db), "-f", "json").stdout)
    assert "<h2>grid: finished runs by initializer</h2>" in html
    assert all(f"<td>{row['mean']:.6g}</td>" in html for row in rows)
    assert html.count("<h2>Run ") == 12  # the finished runs, not the failed one nor the other experiment's
    assert "edge_share(conv1) by group" in html and "test_accuracy by group" in html
