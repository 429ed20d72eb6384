"""The experiment page's view of a sweep in a real browser (the system Chromium through playwright): parallel
coordinates with one line per run through its swept values to the objective, brushing an axis to keep a range,
and the scatter of a parameter against the objective -- every drawn value checked against SQL over the database."""

from __future__ import annotations

import math
import shutil
import sqlite3

import pytest

from tests.conftest import TINY_DIGITS, run_cli, write_experiments
from tests.ui.test_ui_api import browsing

pytest.importorskip("starlette", reason="convexp ui needs the ui extra: pip install 'convexp[ui]'")
pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytest.importorskip("optuna", reason="the sweep prunes: pip install 'convexp[sweeps]'")
if (shutil.which("chromium") or shutil.which("chromium-browser")) is None:
    pytest.skip("Chromium is not installed (Debian: apt-get install chromium)", allow_module_level=True)

TRIALS = 10


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A random search of 10 trials over a log-uniform learning rate and conv1's filters, pruning by the median
    rule; a `convexp ui` serving it; a browser."""
    folder = tmp_path_factory.mktemp("ui-sweep")
    db = folder / "ui.db"
    body = {
        **TINY_DIGITS,
        "epochs": 3,
        "sweep": {
            "method": "random",
            "trials": TRIALS,
            "seed": 2,
            "parameters": {
                "optimizer.learning_rate": {"loguniform": [1e-5, 1.0]},
                "layers.0.filters": {"choice": [2, 4, 8]},
            },
            "prune": {"startup_trials": 2},
        },
    }
    experiments = write_experiments(folder / "experiments.yaml", {"lr": body})
    result = run_cli("run", str(experiments), "--db", str(db))
    assert result.returncode == 0, result.stderr
    with browsing(db) as session:
        yield {"db": db, **session}


def _truth(db) -> dict[int, dict]:
    """Each trial's status, learning rate, filters and test accuracy at its last recorded step, by SQL."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT r.id, r.status, json_extract(r.spec, '$.optimizer.learning_rate'), "
            "json_extract(r.spec, '$.layers[0].filters'), "
            "(SELECT m.value FROM metrics m WHERE m.run_id = r.id AND m.name = 'test_accuracy' ORDER BY m.step DESC LIMIT 1) "
            "FROM runs r ORDER BY r.id"
        ).fetchall()
    return {i: {"status": s, "optimizer.learning_rate": lr, "layers.0.filters": f, "test_accuracy": a} for i, s, lr, f, a in rows}


def _open(world):
    page = world["new_page"]()
    page.goto(world["url"] + "experiments/lr")
    page.wait_for_function("() => document.body.dataset.drawn === 'true'")
    return page


def _unit_value(scale: dict, unit: float) -> float:
    if scale["log"]:
        return math.exp(math.log(scale["min"]) + unit * (math.log(scale["max"]) - math.log(scale["min"])))
    return scale["min"] + unit * (scale["max"] - scale["min"])


def test_parallel_coordinates_draw_every_run_through_its_database_values(world):
    page = _open(world)
    truth = _truth(world["db"])
    drawn = page.evaluate(
        "() => { const c = window.cxExperiment.parallel; return {axes: c.axes, scales: c.scales, lines: c.lines,"
        " top: c.unitY(1), bottom: c.unitY(0)}; }"
    )
    assert drawn["axes"] == ["layers.0.filters", "optimizer.learning_rate", "test_accuracy"]
    assert sorted(line["id"] for line in drawn["lines"]) == sorted(truth)  # finished and pruned: one line each
    assert {t["status"] for t in truth.values()} == {"finished", "pruned"}
    scales = dict(zip(drawn["axes"], drawn["scales"]))
    assert scales["optimizer.learning_rate"]["log"] and not scales["test_accuracy"]["log"]
    height = drawn["bottom"] - drawn["top"]
    for line in drawn["lines"]:
        expected = truth[line["id"]]
        assert line["status"] == expected["status"]
        for field, point in zip(drawn["axes"], line["points"]):
            unit = (drawn["bottom"] - point[1]) / height
            scale = scales[field]
            if scale["kind"] == "category":
                categories = [int(c) for c in scale["categories"]]
                assert categories[round(unit * (len(categories) - 1))] == expected[field]
            else:  # the value the drawn position stands for is the database's (to float precision)
                assert math.isclose(_unit_value(scale, unit), expected[field], rel_tol=1e-9, abs_tol=1e-12)


def test_brushing_an_axis_keeps_the_runs_in_its_range_and_the_scatter_shows_them(world):
    page = _open(world)
    truth = _truth(world["db"])
    geometry = page.evaluate(
        "() => { const c = window.cxExperiment.parallel; const i = c.axes.indexOf('optimizer.learning_rate');"
        " return {x: c.axisX(i), top: c.unitY(1), bottom: c.unitY(0), scale: c.scales[i],"
        " width: c.canvas.width, height: c.canvas.height}; }"
    )
    canvas = page.locator("#parallel-chart canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    sx, sy = box["width"] / geometry["width"], box["height"] / geometry["height"]
    span = geometry["bottom"] - geometry["top"]
    y_high, y_low = geometry["top"] + 0.2 * span, geometry["top"] + 0.75 * span  # the top of the drag, the bottom
    page.mouse.move(box["x"] + geometry["x"] * sx, box["y"] + y_low * sy)
    page.mouse.down()
    page.mouse.move(box["x"] + geometry["x"] * sx, box["y"] + (y_low + y_high) / 2 * sy, steps=4)
    page.mouse.move(box["x"] + geometry["x"] * sx, box["y"] + y_high * sy, steps=4)
    page.mouse.up()
    low = _unit_value(geometry["scale"], (geometry["bottom"] - y_low) / span)
    high = _unit_value(geometry["scale"], (geometry["bottom"] - y_high) / span)
    expected = sorted(i for i, t in truth.items() if low <= t["optimizer.learning_rate"] <= high)
    assert 0 < len(expected) < len(truth), (low, high, truth)  # the brush keeps some runs, not all
    page.wait_for_function("n => document.getElementById('sweep-selection').dataset.count == n", arg=str(len(expected)))
    shown = page.eval_on_selector_all("#sweep-selection a", "links => links.map(a => Number(a.textContent))")
    assert shown == expected
    kept = page.evaluate("() => window.cxExperiment.parallel.lines.filter(l => l.kept).map(l => l.id).sort((a, b) => a - b)")
    assert kept == expected
    # the scatter: learning rate against test accuracy, the brushed runs drawn strong
    page.select_option("#scatter-x", "optimizer.learning_rate")
    points = page.evaluate("() => window.cxExperiment.scatter.points")
    assert sorted(p["id"] for p in points) == sorted(truth)
    for point in points:
        assert point["x"] == truth[point["id"]]["optimizer.learning_rate"]
        assert point["y"] == truth[point["id"]]["test_accuracy"]
    assert page.evaluate("() => [...window.cxExperiment.scatter.kept].sort((a, b) => a - b)") == expected
    assert "sweep-x=optimizer.learning_rate" in page.url  # the chosen x is kept in the URL, to share
    # a click on the axis clears its brush: every run again
    page.mouse.click(box["x"] + geometry["x"] * sx, box["y"] + (geometry["top"] + 0.5 * span) * sy)
    page.wait_for_function("n => document.getElementById('sweep-selection').dataset.count == n", arg=str(len(truth)))
