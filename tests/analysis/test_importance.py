"""`convexp summary --importance`: the parameters that vary ranked by a random forest's importance for the
objective, and each number's correlation with it -- checked against scikit-learn and numpy run here on what SQL
reads from the database."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from sklearn.ensemble import RandomForestRegressor

from tests.conftest import TINY_DIGITS, one_line_error, run_cli, write_experiments

SWEEP = {
    **TINY_DIGITS,
    "max_steps": 6,
    "initializer": ["glorot_uniform", "he_normal"],
    "optimizer": {"name": "sgd", "learning_rate": [0.01, 0.3], "momentum": 0.9},
    "seed": [0, 1],
}


@pytest.fixture(scope="module")
def sweep_db(tmp_path_factory):
    folder = tmp_path_factory.mktemp("importance")
    path = write_experiments(folder / "e.yaml", {"sweep": SWEEP, "pair": {**TINY_DIGITS, "max_steps": 2, "seed": [0, 1]}})
    db = folder / "r.db"
    for name in ("sweep", "pair"):
        assert run_cli("run", str(path), "-e", name, "--db", str(db)).returncode == 0
    return db


def _from_sql(db):
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT r.id, json_extract(r.spec, '$.initializer'), json_extract(r.spec, '$.optimizer.learning_rate'), "
            "json_extract(r.spec, '$.seed'), (SELECT value FROM metrics m WHERE m.run_id = r.id AND m.name = 'test_accuracy' "
            "ORDER BY step DESC LIMIT 1) FROM runs r WHERE r.experiment = 'sweep' AND r.status = 'finished' ORDER BY r.id"
        ).fetchall()
    return rows


def test_importance_and_correlation_equal_a_forest_and_numpy_fitted_here(sweep_db):
    result = run_cli("summary", "sweep", "--importance", "--db", str(sweep_db), "-f", "json")
    assert result.returncode == 0, result.stderr
    shown = {r["parameter"]: r for r in json.loads(result.stdout)}
    rows = _from_sql(sweep_db)
    assert len(rows) == 8
    initializers = list(dict.fromkeys(r[1] for r in rows))
    # the columns as the module documents them, in the spec's field order: initializer one-hot, then the numbers
    x = np.array([[r[1] == name for name in initializers] + [r[2], r[3]] for r in rows], dtype=np.float64)
    y = np.array([r[4] for r in rows])
    forest = RandomForestRegressor(n_estimators=100, random_state=0).fit(x, y).feature_importances_
    expected = {"initializer": forest[0] + forest[1], "optimizer.learning_rate": forest[2], "seed": forest[3]}
    assert set(shown) == set(expected)
    for name, share in expected.items():
        assert shown[name]["importance"] == pytest.approx(share, abs=1e-12)
    assert [r["parameter"] for r in json.loads(result.stdout)] == sorted(expected, key=lambda n: -expected[n])
    assert sum(r["importance"] for r in shown.values()) == pytest.approx(1.0)
    assert shown["optimizer.learning_rate"]["correlation"] == pytest.approx(np.corrcoef(x[:, 2], y)[0, 1])
    assert shown["seed"]["correlation"] == pytest.approx(np.corrcoef(x[:, 3], y)[0, 1])
    assert shown["initializer"]["correlation"] is None  # text: no correlation


def test_importance_of_a_filter_measure_and_where(sweep_db):
    result = run_cli(
        "summary", "sweep", "--importance", "--measure", "drift", "--layer", "conv1", "--where", "seed=0",
        "--db", str(sweep_db), "-f", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert {r["parameter"] for r in json.loads(result.stdout)} == {"initializer", "optimizer.learning_rate"}
    table = run_cli("summary", "sweep", "--importance", "--db", str(sweep_db))
    assert "sweep: what each parameter does for test_accuracy at step last over 8 finished runs" in " ".join(table.stdout.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pair", "--importance"], "--importance needs at least 3 finished runs with test_accuracy; experiment 'pair' has 2"),
        (["sweep", "--importance", "--by", "seed"], "--importance ranks every parameter that varies: leave out --by"),
        (["sweep", "--importance", "--measure", "similarity", "--layer", "conv1"], "--measure similarity compares a run"),
        (["sweep", "--importance", "--metric", "test_acc"], "--metric test_acc: no finished run recorded it"),
        (["sweep", "--importance", "--metric", "test_loss", "--measure", "drift"], "one --metric NAME or one --measure NAME"),
    ],
)
def test_bad_importance_requests_are_one_line(sweep_db, args, message):
    one_line_error(run_cli("summary", *args, "--db", str(sweep_db)), message)


def test_plot_sweep_draws_each_finished_run_at_its_parameter_and_objective(sweep_db, tmp_path):
    from convexp.analysis.pictures import sweep_figure
    from convexp.analysis.sweep_points import SweepPoints, sweep_points
    from convexp.store import Store

    out = tmp_path / "sweep.png"
    result = run_cli(
        "plot", "sweep", "sweep", "--x", "optimizer.learning_rate", "--color", "initializer", "--out", str(out),
        "--db", str(sweep_db),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Store(str(sweep_db), read_only=True) as store:
        points = sweep_points(store, "sweep", "optimizer.learning_rate", "test_accuracy", "initializer")
    figure = sweep_figure(points)
    drawn = sorted((float(x), float(y), c.get_label()) for c in figure.axes[0].collections for x, y in c.get_offsets())
    expected = sorted((r[2], r[4], r[1]) for r in _from_sql(sweep_db))
    assert np.allclose([(x, y) for x, y, _ in drawn], [(x, y) for x, y, _ in expected])
    assert sorted(label for _, _, label in drawn) == sorted(label for _, _, label in expected)
    assert figure.axes[0].get_xscale() == "log"  # 0.01 to 0.3: more than a decade
    decades = SweepPoints("e", "lr", "test_accuracy", None, [1, 2], [1e-4, 1e-1], [0.5, 0.6], [])
    narrow = SweepPoints("e", "lr", "test_accuracy", None, [1, 2], [0.002, 0.01], [0.5, 0.6], [])
    assert not narrow.log_x and sweep_figure(narrow).axes[0].get_xscale() == "linear"
    assert decades.log_x and sweep_figure(decades).axes[0].get_xscale() == "log"
    one_line_error(
        run_cli("plot", "sweep", "sweep", "--x", "lr", "--out", str(out), "--db", str(sweep_db)), "--x lr: no such field"
    )
    one_line_error(run_cli("plot", "sweep", "sweep", "--out", str(out), "--db", str(sweep_db)), "plot sweep needs --x FIELD")
