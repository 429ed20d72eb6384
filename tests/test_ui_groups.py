"""convexp ui's grid views in a real browser (the system Chromium through playwright): the runs page by
parameters, the experiment page's groups with their bands, a run page's overlays, each view's state in
its URL; the numbers drawn checked against `convexp summary` and SQL over the database."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
from urllib.parse import parse_qs, urlparse

import pytest

from tests.conftest import TINY_DIGITS, run_cli, write_experiments
from tests.test_ui import start_ui

pytest.importorskip("starlette", reason="convexp ui needs the ui extra: pip install 'convexp[ui]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("Chromium is not installed (Debian: apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """`grid`: 2 initializers x 3 seeds (runs 1-6), every-step conv1, 2 epochs; `single` (run 7); a
    `convexp ui` serving them; a browser."""
    folder = tmp_path_factory.mktemp("ui-groups")
    db = folder / "ui.db"
    grid = {
        **TINY_DIGITS,
        "initializer": ["glorot_uniform", "he_normal"],
        "seed": [0, 1, 2],
        "epochs": 2,
        "snapshots": {"every": 1},
    }
    experiments = write_experiments(folder / "experiments.yaml", {"grid": grid, "single": TINY_DIGITS})
    for name in ("grid", "single"):
        assert run_cli("run", str(experiments), "-e", name, "--db", str(db)).returncode == 0
    server, url = start_ui("--db", str(db))
    requested: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        errors: list[str] = []

        def new_page():
            page = context.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            return page

        yield {"db": db, "url": url, "new_page": new_page, "errors": errors, "requested": requested}
        browser.close()
    server.send_signal(signal.SIGINT)
    _, log = server.communicate(timeout=30)
    assert "Traceback" not in log, log
    assert not errors, errors
    assert all(r.startswith(url) or r.startswith("data:") for r in requested), [r for r in requested if not r.startswith(url)]


def _ids(db, where: str) -> list[str]:
    with sqlite3.connect(db) as connection:
        return [str(i) for (i,) in connection.execute(f"SELECT id FROM runs WHERE {where} ORDER BY id")]


def _shown(page) -> list[str]:
    return page.eval_on_selector_all("#runs-table tbody tr", "rows => rows.map(r => r.dataset.run)")


def _columns(page) -> list[str]:
    return page.eval_on_selector_all("#runs-table thead th.param", "ths => ths.map(th => th.textContent)")


def test_the_runs_page_shows_and_filters_parameters_and_keeps_its_view_in_the_url(world):
    page = world["new_page"]()
    page.goto(world["url"])
    page.wait_for_selector("#runs-table tbody tr")
    assert _columns(page) == []  # all experiments: no parameter columns, as `convexp runs` without -e
    page.select_option("#filter-experiment", "grid")
    assert _columns(page) == ["initializer", "seed"]
    assert _shown(page) == _ids(world["db"], "experiment = 'grid'")
    page.click("th[data-key='p:seed']")
    page.click("th[data-key='p:seed']")  # descending
    page.fill("#filter-where", "initializer=he_normal")
    page.press("#filter-where", "Enter")
    assert _columns(page) == ["seed"]
    assert _shown(page) == _ids(world["db"], "json_extract(spec, '$.initializer') = 'he_normal'")[::-1]  # seeds 2, 1, 0
    page.fill("#filter-where", "seed=1.0 initializer=he_normal")  # numbers as numbers
    page.press("#filter-where", "Enter")
    assert _shown(page) == _ids(
        world["db"], "json_extract(spec, '$.seed') = 1 AND json_extract(spec, '$.initializer') = 'he_normal'"
    )
    page.fill("#filter-where", "seed=1.0")
    page.press("#filter-where", "Enter")
    shared = page.url
    assert parse_qs(urlparse(shared).query) == {"experiment": ["grid"], "where": ["seed=1.0"], "sort": ["p:seed"], "desc": ["1"]}
    other = world["new_page"]()  # the shared link opens the same view
    other.goto(shared)
    other.wait_for_selector("#runs-table tbody tr")
    assert _shown(other) == _shown(page) and _columns(other) == _columns(page)
    assert other.input_value("#filter-experiment") == "grid"
    other.fill("#filter-where", "seeds=1")
    other.press("#filter-where", "Enter")
    assert "where seeds: no such field in these runs" in other.text_content("#where-error")
    other.click("#runs-table tbody tr a[href='/experiments/grid']")
    other.wait_for_selector("body[data-drawn='true']")
    assert urlparse(other.url).path == "/experiments/grid"
    page.close()
    other.close()


def _hover_last(page) -> list[str]:
    """The chart's readout with the mouse at the right end of the plot: each group's last step."""
    box = page.locator("#group-canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] - 10, box["y"] + box["height"] / 2)
    return page.text_content("#group-chart .tip").splitlines()


@pytest.mark.parametrize(
    "query, args",
    [
        ("by=initializer&metric=test_accuracy", ["--metric", "test_accuracy"]),
        ("by=initializer&measure=drift&layer=conv1", ["--measure", "drift", "--layer", "conv1"]),
    ],
)
def test_the_experiment_page_draws_each_groups_mean_and_band_as_convexp_summary_reports_them(world, query, args):
    summary = run_cli("summary", "grid", "--by", "initializer", *args, "--db", str(world["db"]), "-f", "json")
    assert summary.returncode == 0, summary.stderr
    rows = {r["initializer"]: r for r in json.loads(summary.stdout)}
    page = world["new_page"]()
    page.goto(f"{world['url']}experiments/grid?{query}")
    page.wait_for_selector("body[data-drawn='true']")
    view = json.loads(page.text_content("#experiment-data"))
    for group in view["curves"]["groups"]:
        row = rows[group["label"]]
        assert (group["n"][-1], group["mean"][-1], group["ci_low"][-1], group["ci_high"][-1]) == (
            row["n"],
            pytest.approx(row["mean"], rel=1e-12),
            pytest.approx(row["ci_low"], rel=1e-12),
            pytest.approx(row["ci_high"], rel=1e-12),
        )
    readout = _hover_last(page)
    for group, line in zip(view["curves"]["groups"], readout):
        row = rows[group["label"]]
        assert line.startswith(group["label"] + " "), readout
        mean, low, high = (
            float(x) for x in line.split(" ", 1)[1].split(" n=")[0].replace("[", "").replace("]", "").replace(",", "").split()
        )
        assert (mean, low, high) == (
            pytest.approx(row["mean"], rel=1e-5),
            pytest.approx(row["ci_low"], rel=1e-5),
            pytest.approx(row["ci_high"], rel=1e-5),
        ), line
        assert f"n={row['n']}" in line
    table = page.eval_on_selector_all("#summary-table tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    assert [t[0] for t in table] == ["glorot_uniform", "he_normal"]
    page.check("#single-runs")
    assert parse_qs(urlparse(page.url).query)["runs"] == ["1"]
    page.close()


def test_a_run_page_overlays_other_runs_of_its_experiment_from_its_url(world):
    page = world["new_page"]()
    page.goto(f"{world['url']}runs/1?overlay=4,5")
    page.wait_for_selector("#charts[data-overlays='4,5']")
    assert page.eval_on_selector_all("#overlay option:checked", "os => os.map(o => o.value)") == ["4", "5"]
    page.select_option("#overlay", ["2"])
    page.wait_for_selector("#charts[data-overlays='2']")
    assert parse_qs(urlparse(page.url).query) == {"overlay": ["2"]}
    options = page.eval_on_selector_all("#overlay option", "os => os.map(o => o.textContent)")
    with sqlite3.connect(world["db"]) as connection:
        specs = connection.execute(
            "SELECT id, json_extract(spec, '$.initializer'), json_extract(spec, '$.seed') FROM runs WHERE experiment = 'grid' AND id != 1"
        ).fetchall()
    assert options == [f"run {i} (initializer {init}, seed {seed}) finished" for i, init, seed in specs]
    page.close()
