"""convexp ui in a real browser (the system Chromium through playwright), as a person uses it.

One `convexp ui` server process serves a database with finished, stale and (later) running runs;
every number the pages show is checked against the database read directly with sqlite3.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, TINY_DIGITS, run_cli, sha256, stored_kernel, write_experiments
from tests.ui.test_ui_api import start_ui

pytest.importorskip("starlette", reason="convexp ui needs the ui extra: pip install 'convexp[ui]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("Chromium is not installed (Debian: apt-get install chromium)", allow_module_level=True)

#: Set to write the run page's screenshot into docs/images/ for the docs.
DOCS_IMAGES_ENV = "CONVEXP_WRITE_DOCS_IMAGES"


def stored(db: Path, run_id: int, layer: str, step: int) -> np.ndarray:
    """A kernel as stored, read with sqlite3 alone."""
    return stored_kernel(db, run_id, layer, step)


def refused_query(message) -> bool:
    """The browser's note that the query page answered 400, as it does when it refuses a statement on purpose."""
    return "/query?sql=DELETE" in (message.location.get("url") or "") and "400" in message.text


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A database with two finished every-step runs (1, 2) and a stale one (3), a `convexp ui` serving it, and a browser."""
    folder = tmp_path_factory.mktemp("ui-browser")
    db = folder / "ui.db"
    experiments = write_experiments(
        folder / "experiments.yaml",
        {
            "tiny": {**TINY_DIGITS, "seed": [0, 1], "snapshots": {"every": 1}, "epochs": 2},
            "forever": {**TINY_DIGITS, "snapshots": {"every": 1}, "epochs": 100_000},
        },
    )
    assert run_cli("run", str(experiments), "-e", "tiny", "--db", str(db)).returncode == 0
    from convexp.store import Store

    gone = subprocess.Popen(["true"])  # a process that has ended: a run it owned is stale
    gone.wait()
    with Store(db) as store:
        first = store.get_run(1)
        store.create_run(
            experiment="crashed",
            backend="numpy",
            seed=0,
            dataset="digits",
            kernel_initializer="glorot_uniform",
            bias_initializer="zeros",
            spec=first.spec,
            convexp_version="0.1.0",
            backend_version="0.1.0",
            framework="numpy",
            framework_version=np.__version__,
            pid=gone.pid,
        )
    server, url = start_ui("--db", str(db))
    requested: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        context = browser.new_context(viewport={"width": 1300, "height": 1000})
        context.set_default_timeout(120_000)  # a bound on a broken page, not a timing
        errors: list[str] = []

        def new_page():
            page = context.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on(
                "console",
                lambda message: (
                    errors.append(f"{message.location.get('url')}: {message.text}")
                    if message.type == "error" and not refused_query(message)
                    else None
                ),
            )
            return page

        yield {"db": db, "url": url, "experiments": experiments, "new_page": new_page, "requested": requested, "errors": errors}
        browser.close()
    server.send_signal(signal.SIGINT)
    _, log = server.communicate(timeout=600)
    assert "Traceback" not in log, log


def test_runs_page_shows_finished_and_stale_runs_and_sorts(world):
    page = world["new_page"]()
    page.goto(world["url"])
    page.wait_for_selector("#runs-table tbody tr")
    rows = page.eval_on_selector_all("#runs-table tbody tr", "rows => rows.map(r => [r.dataset.run, r.dataset.status])")
    assert rows == [["1", "finished"], ["2", "finished"], ["3", "stale"]]
    page.click("th[data-key=id]")  # sort descending
    assert page.eval_on_selector_all("#runs-table tbody tr", "rows => rows.map(r => r.dataset.run)") == ["3", "2", "1"]
    page.select_option("#filter-status", "stale")
    assert page.eval_on_selector_all("#runs-table tbody tr", "rows => rows.map(r => r.dataset.run)") == ["3"]
    page.close()


def scrub_to(page, index: int) -> int:
    """Move the step slider to position ``index`` as a user drags it; returns the step it shows once drawn."""
    step = page.evaluate("i => window.cxRun.state.steps[i]", index)
    page.evaluate(
        """i => { const s = document.getElementById('step-slider'); s.value = i;
                      s.dispatchEvent(new Event('input', {bubbles: true})); }""",
        index,
    )
    page.wait_for_function("s => document.getElementById('kernel-canvas').dataset.step == String(s)", arg=step)
    return step


def hover_value(page, filter_index: int, channel: int, row: int, col: int) -> dict:
    """Hover the mouse over one kernel value of the grid and read the readout's data attributes."""
    centre = page.evaluate("a => window.cxRun.state.grid.centre(...a)", [filter_index, channel, row, col])
    page.locator("#kernel-canvas").scroll_into_view_if_needed()
    box = page.locator("#kernel-canvas").bounding_box()
    size = page.evaluate(
        "() => [document.getElementById('kernel-canvas').width, document.getElementById('kernel-canvas').height]"
    )
    page.mouse.move(box["x"] + centre["x"] * box["width"] / size[0], box["y"] + centre["y"] * box["height"] / size[1])
    return page.evaluate("() => Object.assign({}, document.getElementById('readout').dataset)")


def test_the_slider_shows_the_stored_float32_values_of_any_step(world):
    page = world["new_page"]()
    page.goto(world["url"] + "runs/1")
    page.wait_for_function("() => document.getElementById('kernel-canvas').dataset.step == '46'")  # opens at the last step
    assert page.eval_on_selector("#parameter-table tr.total", "r => r.innerText").split() == ["total", "396", "14", "410"]
    for index in (0, 17, 46, 5):
        step = scrub_to(page, index)
        kernel = stored(world["db"], 1, "conv1", step)
        for filter_index, row, col in ((0, 0, 0), (3, 2, 1), (1, 1, 2)):
            shown = hover_value(page, filter_index, 0, row, col)
            assert (int(shown["step"]), int(shown["filter"]), int(shown["row"]), int(shown["col"])) == (
                step,
                filter_index,
                row,
                col,
            )
            assert float(shown["value"]) == float(kernel[filter_index, 0, row, col])  # bit for bit: a float32 read as a double
    # clicking a filter lists its values at the shown step and draws its trajectory
    hover_value(page, 2, 0, 1, 1)
    page.mouse.down()
    page.mouse.up()
    page.wait_for_selector("#filter-detail:not([hidden]) #trajectory canvas")
    values = page.eval_on_selector_all("#detail-values td", "cells => cells.map(c => Number(c.dataset.value))")
    assert np.array_equal(np.asarray(values, dtype=np.float32), stored(world["db"], 1, "conv1", 5)[2, 0].ravel())
    # the analysis of the shown step is convexp filters' for that step
    page.wait_for_function("() => document.getElementById('analysis-summary').dataset.step == '5'")
    filters = json.loads(run_cli("filters", "1", "--step", "5", "--db", str(world["db"]), "--format", "json").stdout)
    shown = page.eval_on_selector_all("#analysis-table tbody tr", "rows => rows.map(r => r.cells[1].innerText)")
    assert shown == [f["best_operator"] for f in filters["filters"]]
    assert world["errors"] == []
    page.close()


def test_play_runs_through_the_snapshots(world):
    page = world["new_page"]()
    page.goto(world["url"] + "runs/2")
    page.wait_for_function("() => document.getElementById('kernel-canvas').dataset.step == '46'")
    page.select_option("#speed", "60")
    page.click("#play")  # from the end, play starts over at step 0
    page.wait_for_function("() => document.getElementById('play').textContent == 'Play'", timeout=120_000)
    assert page.eval_on_selector("#kernel-canvas", "c => c.dataset.step") == "46"
    page.close()


def test_the_patches_panel_draws_convexp_filters_patches(world):
    expected = json.loads(
        run_cli("filters", "1", "--patches", "--top", "4", "--step", "20", "--format", "json", "--db", str(world["db"])).stdout
    )
    page = world["new_page"]()
    page.goto(world["url"] + "runs/1")
    page.wait_for_function("() => document.getElementById('kernel-canvas').dataset.step == '46'")
    scrub_to(page, 20)
    page.select_option("#patches-top", "4")
    page.click("#patches-button")
    page.wait_for_function("() => document.getElementById('patches-status').dataset.step == '20'", timeout=120_000)
    assert "3x3 receptive field, 360 test images searched" in page.inner_text("#patches-status")
    # hover filter 0's strongest patch: the first box of the first cell
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(10):  # the page may still shift as it lays out (slowly, on a busy machine): aim again
        page.locator("#patches-canvas").scroll_into_view_if_needed()
        box = page.locator("#patches-canvas").bounding_box()
        width = page.evaluate("() => document.getElementById('patches-canvas').width")
        for nudge in (0, 1):  # a second move makes sure the canvas sees the pointer move
            page.mouse.move(box["x"] + (3 + nudge) * box["width"] / width, box["y"] + (19 + nudge) * box["width"] / width)
        try:
            page.wait_for_function("() => document.getElementById('patches-readout').textContent.length > 0", timeout=3_000)
            break
        except PlaywrightTimeout:
            assert attempt < 9, "hovering the first patch never showed its readout"
    best = expected["filters"][0]["patches"][0]
    readout = page.inner_text("#patches-readout")
    assert readout.startswith(f"filter 0, #1: test image {best['image']} (label {best['label']})"), readout
    page.close()


def test_compare_orders_filters_as_convexp_compare_matches(world):
    expected = json.loads(run_cli("compare", "1", "2", "--matches", "--format", "json", "--db", str(world["db"])).stdout)
    page = world["new_page"]()
    page.goto(world["url"] + "compare?runs=1,2")
    page.wait_for_selector(".compare-row[data-drawn=true]")
    orders = page.eval_on_selector_all(".compare-canvas", "cs => cs.map(c => c.dataset.order)")
    matches = expected["layers"][0]["matches"]
    assert orders == [",".join(str(m["matched_filter"]) for m in run) for run in matches]
    assert orders[0] == "0,1,2,3" and sorted(orders[1].split(",")) == ["0", "1", "2", "3"]
    page.close()


def test_the_query_box_refuses_delete_and_changes_nothing(world):
    before = sha256(world["db"])
    page = world["new_page"]()
    page.goto(world["url"] + "query")
    page.fill("#sql", "DELETE FROM kernel_snapshots")
    page.click("#run-query")
    page.wait_for_selector("#query-error")
    assert "read-only, and the statement would delete kernel_snapshots" in page.inner_text("#query-error")
    page.fill("#sql", "SELECT run_id, count(*) AS snapshots FROM kernel_snapshots GROUP BY run_id")
    page.click("#run-query")
    page.wait_for_selector("#query-result")
    assert page.eval_on_selector_all("#query-result tbody tr", "rows => rows.map(r => r.innerText.split('\\t'))") == [
        ["1", "47"],
        ["2", "47"],
    ]
    assert page.get_attribute("#csv-link", "href").startswith("/query.csv?sql=")
    page.close()
    assert sha256(world["db"]) == before


def test_a_run_started_elsewhere_appears_and_advances_without_a_reload(world):
    page = world["new_page"]()
    page.goto(world["url"])
    page.wait_for_selector("#runs-table tbody tr")
    training = subprocess.Popen(
        [sys.executable, "-m", "convexp", "run", str(world["experiments"]), "-e", "forever", "--db", str(world["db"])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        page.wait_for_selector("#runs-table tr[data-run='4'][data-status='running']", timeout=120_000)
        first = int(page.get_attribute("#runs-table tr[data-run='4']", "data-steps"))
        page.wait_for_function(
            f"() => Number(document.querySelector(\"#runs-table tr[data-run='4']\").dataset.steps) > {first}", timeout=15_000
        )
        page.click("#runs-table tr[data-run='4'] a")
        page.wait_for_selector("#kernel-canvas[data-step]", timeout=120_000)
        shown = int(page.get_attribute("#kernel-canvas", "data-step"))
        page.wait_for_function(f"() => Number(document.getElementById('kernel-canvas').dataset.step) > {shown}", timeout=120_000)
        later = int(page.get_attribute("#kernel-canvas", "data-step"))
        assert np.array_equal(
            page.evaluate("() => Array.from(window.cxRun.state.snapshot.values)"),
            stored(world["db"], 4, "conv1", later).ravel().tolist(),
        )
        assert page.evaluate("() => performance.getEntriesByType('navigation').length") == 1  # never reloaded
    finally:
        training.send_signal(signal.SIGINT)
        training.communicate(timeout=600)
    page.wait_for_function("() => document.getElementById('run-status').dataset.status == 'interrupted'", timeout=120_000)
    page.close()


def test_every_request_went_to_the_app_itself_and_no_page_failed(world):
    assert world["requested"], "no page was opened"
    assert all(url.startswith(world["url"]) or url.startswith("data:") for url in world["requested"]), [
        u for u in world["requested"] if not u.startswith(world["url"])
    ]
    assert world["errors"] == []


def test_a_screenshot_of_the_run_page(world):
    """The docs' picture of the UI: the quickstart's page, taken here (CONVEXP_WRITE_DOCS_IMAGES=1 writes it to docs/images)."""
    assert run_cli("run", "--epochs", "3", "--db", str(world["db"]), cwd=REPO).returncode == 0  # quickstart, 32 filters
    with sqlite3.connect(world["db"]) as connection:  # the run just made (5 after the module's other tests)
        (run_id,) = connection.execute("SELECT max(id) FROM runs").fetchone()
    page = world["new_page"]()
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(world["url"] + f"runs/{run_id}")
    page.wait_for_function("() => document.getElementById('analysis-summary').dataset.step == '135'")
    scrub_to(page, 60)
    hover_value(page, 5, 0, 1, 1)
    page.mouse.down()
    page.mouse.up()
    page.wait_for_selector("#filter-detail:not([hidden]) #trajectory canvas")
    page.wait_for_timeout(300)
    out = world["db"].parent / "ui-run.png"
    page.screenshot(path=str(out), full_page=True)
    page.close()
    assert out.stat().st_size > 50_000
    if os.environ.get(DOCS_IMAGES_ENV):
        shutil.copyfile(out, REPO / "docs" / "images" / "ui-run.png")
