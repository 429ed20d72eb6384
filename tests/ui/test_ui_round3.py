"""convexp ui, round 3, in a real browser (the system Chromium through playwright): the runs table keeps its key
columns in view at 800 px (sticky id and name, long names cut short, parameter groups collapsed, a column chooser),
field labels never break inside a word, charts name their x axis and tick round values, a live run's page drops its
empty chart when metrics come and says when it ended, and the compare page says which column is which run."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from urllib.parse import parse_qs, urlparse

import pytest

from tests.conftest import TINY_DIGITS, run_cli, write_experiments
from tests.ui.test_ui_api import browsing

pytest.importorskip("starlette", reason="convexp ui needs the ui extra: pip install 'convexp[ui]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
    pytest.skip("Chromium is not installed (Debian: apt-get install chromium)", allow_module_level=True)

LONG_NAME = "a run whose name says everything about it: " + "wider filters, a lower learning rate, seed one " * 2
LONG_NAME = LONG_NAME[:100]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Runs 1-2 (`small`: one conv layer, seeds 0 and 1), run 3 (`wide`: two conv layers and a long description,
    seed 1), run 2 named with 100 characters; a `convexp ui` serving them, a browser."""
    folder = tmp_path_factory.mktemp("ui-round3")
    db = folder / "ui.db"
    small = {**TINY_DIGITS, "seed": [0, 1], "snapshots": {"every": 5}}
    wide = {
        **TINY_DIGITS,
        "description": "A second architecture with two conv layers, described at length " * 6,
        "layers": [
            {"type": "conv", "filters": 4, "kernel_size": 3, "activation": "relu"},
            {"type": "conv", "filters": 6, "kernel_size": 3, "padding": "same", "activation": "tanh"},
            {"type": "flatten"},
            {"type": "dense", "units": 10},
        ],
        "seed": 1,
        "snapshots": {"every": 5},
    }
    experiments = write_experiments(folder / "experiments.yaml", {"small": small, "wide": wide})
    ran = run_cli("run", str(experiments), "-e", "small", "-e", "wide", "--db", str(db))
    assert ran.returncode == 0, ran.stderr
    assert run_cli("name", "2", LONG_NAME, "--db", str(db)).returncode == 0
    with browsing(db) as session:
        yield {"db": db, **session}


def _right_edges(page, selector: str) -> dict[str, float]:
    return page.eval_on_selector_all(
        selector, "ths => Object.fromEntries(ths.map(th => [th.dataset.key, th.getBoundingClientRect().right]))"
    )


def test_the_runs_table_keeps_its_key_columns_in_view_at_800_px(world):
    page = world["new_page"](viewport={"width": 800, "height": 900})
    page.goto(world["url"] + "?where=seed%3D1")  # two experiments: their layers differ in many fields
    page.wait_for_selector("#runs-table tbody tr")
    width = page.evaluate("() => window.innerWidth")
    edges = _right_edges(page, "#runs-table thead th[data-key]")
    for key in ("id", "name", "status", "steps", "test_accuracy"):
        assert edges[key] <= width, (key, edges)
    # the layers.* fields that differ are one column until opened
    group = page.text_content("#runs-table th.param-group[data-group='layers']")
    assert group.startswith("layers.* (") and int(group.split("(")[1].split(")")[0]) >= 4
    assert page.eval_on_selector_all("#runs-table th.param", "ths => ths.map(th => th.textContent)") == []
    # a long name is cut short, all of it on hover
    name = page.locator("#runs-table tr[data-run='2'] td[data-key='name']")
    assert name.get_attribute("title") == LONG_NAME and name.bounding_box()["width"] < 300
    # scrolled sideways, id and name stay where they were
    before = {k: page.locator(f"#runs-table tr[data-run='3'] td[data-key='{k}']").bounding_box()["x"] for k in ("id", "name")}
    scrolled = page.evaluate(
        "() => { const t = document.getElementById('runs-table'); t.scrollLeft = t.scrollWidth; return t.scrollLeft; }"
    )
    assert scrolled > 0  # the table is wider than the window, so this is a real scroll
    page.wait_for_function("() => document.getElementById('runs-table').scrollLeft > 0")
    after = {k: page.locator(f"#runs-table tr[data-run='3'] td[data-key='{k}']").bounding_box()["x"] for k in ("id", "name")}
    assert after == pytest.approx(before, abs=1)
    # opened, each field is a column, and the view is in the URL
    page.click("#runs-table th.param-group[data-group='layers']")
    fields = page.eval_on_selector_all("#runs-table th.param", "ths => ths.map(th => th.dataset.key)")
    assert len(fields) >= 4 and all(f.startswith("p:layers.") for f in fields)
    assert parse_qs(urlparse(page.url).query)["open"] == ["layers"]
    page.click("#runs-table button.ungroup")
    assert page.locator("#runs-table th.param-group[data-group='layers']").count() == 1
    # the column chooser takes a column out, and the URL keeps it out
    page.click("#column-chooser summary")
    page.uncheck("#column-list input[data-key='experiment']")
    assert page.locator("#runs-table thead th[data-key='experiment']").is_hidden()
    assert page.locator("#runs-table td[data-key='experiment']").count() == 0
    page.goto(page.url)
    page.wait_for_selector("#runs-table tbody tr")
    assert parse_qs(urlparse(page.url).query)["hide"] == ["experiment"]
    assert page.locator("#runs-table td[data-key='experiment']").count() == 0
    page.close()


@pytest.mark.parametrize("width", [800, 1400])
def test_field_labels_never_break_inside_a_word_and_the_parameter_table_shows_every_column(world, width):
    page = world["new_page"](viewport={"width": width, "height": 900})
    page.goto(world["url"] + "runs/3")
    page.wait_for_selector("#kernel-canvas[data-step]")
    lines = page.eval_on_selector_all(
        "table.kv th",
        "ths => ths.map(th => { const r = document.createRange(); r.selectNodeContents(th); return [th.textContent, r.getClientRects().length]; })",
    )
    assert lines and all(count == 1 for _, count in lines), lines
    table = page.locator("#parameter-table")
    assert table.evaluate("t => t.scrollWidth <= t.clientWidth + 1")  # no column hidden behind a scroll
    assert table.bounding_box()["x"] + table.bounding_box()["width"] <= width
    page.close()


def test_charts_name_their_x_axis_and_tick_round_values_on_decades_when_log(world):
    page = world["new_page"]()
    page.goto(world["url"] + "runs/2")
    page.wait_for_function("() => Object.keys(window.cxRun.charts).length > 0")
    inked = page.evaluate(
        """() => Object.values(window.cxRun.charts).map(chart => {
             const c = chart.canvas, data = c.getContext('2d').getImageData(c.width / 4, c.height - 12, c.width / 2, 12).data;
             let ink = 0; for (let i = 3; i < data.length; i += 4) ink += data[i] > 0;
             return [chart.options.xLabel, ink];
           })"""
    )
    assert inked and all(label == "step" and ink > 10 for label, ink in inked), inked
    for chart_ticks in page.evaluate("() => Object.values(window.cxRun.charts).map(c => c.yTicks)"):
        assert _round_and_even(chart_ticks), chart_ticks
    page.check("#log-scale")
    for values in page.evaluate("() => Object.values(window.cxRun.charts).map(c => c.yTicks.map(t => Math.pow(10, t)))"):
        # a log axis ticks 1, 2 and 5 (or each digit) times its decades; over less than that, round values between
        digits = [v / 10 ** math.floor(math.log10(v) + 1e-9) for v in values]
        assert all(abs(d - round(d)) < 1e-6 for d in digits) or _round_and_even(values), values
    page.close()


def _round_and_even(ticks: list[float]) -> bool:
    """Whether ticks are evenly spaced by 1, 2 or 5 times a power of ten, each a multiple of that gap."""
    gaps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
    if len(ticks) < 2 or len(gaps) != 1:
        return False
    gap = gaps.pop()
    mantissa = gap / 10 ** math.floor(math.log10(gap) + 1e-9)
    return round(mantissa, 6) in (1, 2, 5) and all(abs(t / gap - round(t / gap)) < 1e-6 for t in ticks)


def test_the_compare_page_says_which_column_is_which_run_and_fits_the_window(world):
    page = world["new_page"](viewport={"width": 1400, "height": 900})
    page.goto(world["url"] + "compare?runs=2,3")
    page.wait_for_selector("#spec-differences")
    heads = page.eval_on_selector_all("#spec-differences thead th", "ths => ths.map(th => th.textContent)")
    assert heads == ["field", f"run 2 ({LONG_NAME})", "run 3"]
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    description = page.locator("#spec-differences tr:has(th:text-is('description')) td").nth(1)
    assert description.get_attribute("title").startswith("A second architecture") and description.bounding_box()["width"] < 400
    page.close()


LIVE_SCRIPT = """
import sys
import convexp

run = convexp.track("live-page", db=sys.argv[1], quiet=True)
print(run.run_id, flush=True)
sys.stdin.readline()  # the page is open: the metrics come
for step in range(1, 6):
    run.log_metrics({"train_loss": 1.0 / step}, step=step)
run.end_step()
run.flush()
print("logged", flush=True)
sys.stdin.readline()
run.finish()
"""


def test_a_live_runs_page_drops_its_empty_chart_when_metrics_come_and_says_when_it_ended(world, tmp_path):
    script = tmp_path / "live.py"
    script.write_text(LIVE_SCRIPT)
    loop = subprocess.Popen(
        [sys.executable, str(script), str(world["db"])], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        run_id = int(loop.stdout.readline())
        page = world["new_page"]()
        page.goto(f"{world['url']}runs/{run_id}")
        page.wait_for_function("() => window.cxRun.charts.empty !== undefined")  # nothing recorded yet
        assert page.text_content("#run-ended") == ""
        loop.stdin.write("go\n")
        loop.stdin.flush()
        assert loop.stdout.readline().strip() == "logged"
        page.wait_for_function("() => window.cxRun.charts.empty === undefined && Object.keys(window.cxRun.charts).length > 0")
        assert page.locator("#charts canvas").count() == len(page.evaluate("() => Object.keys(window.cxRun.charts)"))
        loop.stdin.write("end\n")
        loop.stdin.flush()
        assert loop.wait(timeout=600) == 0
        page.wait_for_function("() => document.getElementById('run-status').dataset.status == 'finished'")
        assert page.text_content("#run-ended").startswith("; ended 20")
        page.close()
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.wait()


def _swatch_colours(page, selector: str) -> dict[str, str]:
    return page.eval_on_selector_all(
        selector, "spans => Object.fromEntries(spans.map(s => [s.dataset.run, getComputedStyle(s).backgroundColor]))"
    )


def test_a_run_keeps_its_colour_across_pages_and_the_compare_page_overlays_their_curves_in_it(world):
    page = world["new_page"]()
    page.goto(world["url"])
    page.wait_for_selector("#runs-table tbody tr")
    table = _swatch_colours(page, "#runs-table .swatch")
    assert {"1", "2", "3"} <= set(table) and len({table[r] for r in "123"}) == 3  # three runs, three colours
    page.goto(world["url"] + "runs/3")
    assert _swatch_colours(page, "h1 .swatch") == {"3": table["3"]}
    page.goto(world["url"] + "compare?runs=2,3")
    page.wait_for_selector("body[data-compare-ready='true']")
    assert _swatch_colours(page, "figcaption .swatch") == {"2": table["2"], "3": table["3"]}
    page.wait_for_function("() => Object.keys(window.cxCompare.curveCharts).length > 0")
    drawn = page.evaluate(
        """() => Object.values(window.cxCompare.curveCharts).map(c => c.series.filter(s => !s.faint).map(s => {
             const probe = document.createElement('span'); probe.style.color = s.colour; document.body.append(probe);
             const colour = getComputedStyle(probe).color; probe.remove(); return [String(s.run), colour, s.xs.length];
           }))"""
    )
    assert drawn and all(colour == table[run] and points > 0 for chart in drawn for run, colour, points in chart), drawn
    assert {run for chart in drawn for run, _, _ in chart} == {"2", "3"}
    # the slider's step stays in the address: a reload shows the same step
    steps = page.evaluate("() => window.cxCompare.allSteps()")
    assert len(steps) >= 3
    page.eval_on_selector("#sync-slider", "(s) => { s.value = 1; s.dispatchEvent(new Event('input')); }")
    shown = f"() => document.querySelector('.compare-canvas').dataset.step == '{steps[1]}'"  # not a step shown at first
    page.wait_for_function(shown)
    assert parse_qs(urlparse(page.url).query)["at"] == [str(steps[1])]
    page.reload()
    page.wait_for_function(shown)
    assert page.input_value("#sync-slider") == "1"
    page.close()


def test_a_reload_keeps_the_run_pages_layer_step_filter_log_scale_and_zoom(world):
    page = world["new_page"]()
    page.goto(world["url"] + "runs/3")
    page.wait_for_selector("#kernel-canvas[data-step]")
    page.select_option("#layer", "conv2")
    page.wait_for_function("() => window.cxRun.state.layer == 'conv2' && window.cxRun.state.snapshot !== null")
    steps = page.evaluate("() => window.cxRun.state.steps")
    page.fill("#step-box", str(steps[1]))
    page.press("#step-box", "Enter")
    page.wait_for_function(f"() => document.getElementById('kernel-canvas').dataset.step == '{steps[1]}'")
    page.evaluate("() => window.cxRun.selectFilter({filter: 4, channel: null})")
    page.wait_for_selector("#filter-detail:not([hidden])")
    page.check("#log-scale")
    page.evaluate("() => window.cxRun.charts.loss.setView({x0: 5, x1: 15})")
    query = parse_qs(urlparse(page.url).query)
    assert query["layer"] == ["conv2"] and query["step"] == [str(steps[1])] and query["filter"] == ["4"]
    assert query["log"] == ["1"] and query["chart.loss"] == ["log,5,15"]
    page.reload()
    page.wait_for_function(f"() => document.getElementById('kernel-canvas').dataset.step == '{steps[1]}'")
    page.wait_for_selector("#filter-detail:not([hidden])")
    assert page.input_value("#layer") == "conv2" and page.is_checked("#log-scale")
    assert page.text_content("#detail-title").startswith("filter 4,")
    page.wait_for_function("() => window.cxRun.charts.loss !== undefined")
    assert page.evaluate("() => [window.cxRun.charts.loss.options.log, window.cxRun.charts.loss.view]") == [
        True,
        {"x0": 5, "x1": 15},
    ]
    page.close()


#: (page, width, colour scheme) of each of the docs' pictures of the UI at the two widths it is built for.
SCREENSHOTS = [("", 1400, "light"), ("", 800, "dark"), ("runs/3", 1400, "dark"), ("runs/3", 800, "light")]


@pytest.mark.parametrize("path, width, scheme", SCREENSHOTS)
def test_screenshots_of_the_runs_and_run_pages_at_800_and_1400_px_light_and_dark(world, path, width, scheme):
    """The docs' pictures (CONVEXP_WRITE_DOCS_IMAGES=1 writes them to docs/images, as scripts/docs_images.py does):
    nothing wider than the window, and the page in the scheme asked for."""
    import os

    from tests.conftest import REPO

    page = world["new_page"](viewport={"width": width, "height": 900}, color_scheme=scheme)
    page.goto(world["url"] + path + ("?where=seed%3D1" if not path else ""))
    page.wait_for_selector("#kernel-canvas[data-step]" if path else "#runs-table tbody tr")
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert (background == "rgb(255, 255, 255)") == (scheme == "light"), background
    name = f"ui-{'run' if path else 'runs'}-{width}-{scheme}.png"
    out = world["db"].parent / name
    page.screenshot(path=str(out), full_page=not path)
    page.close()
    assert out.stat().st_size > 10_000
    if os.environ.get("CONVEXP_WRITE_DOCS_IMAGES"):
        shutil.copyfile(out, REPO / "docs" / "images" / name)


def test_free_text_search_over_ids_names_experiments_tags_and_notes_and_a_chart_saved_as_png(world):
    import io

    from PIL import Image

    page = world["new_page"]()
    page.goto(world["url"])
    page.wait_for_selector("#runs-table tbody tr")
    shown = lambda: page.eval_on_selector_all("#runs-table tbody tr", "rows => rows.map(r => Number(r.dataset.run))")  # noqa: E731
    page.fill("#filter-text", "WIDER FILTERS")  # run 2's name, in any case
    page.wait_for_function("() => document.querySelectorAll('#runs-table tbody tr').length == 1")
    assert shown() == [2] and parse_qs(urlparse(page.url).query)["q"] == ["WIDER FILTERS"]
    page.fill("#filter-text", "small")  # the experiment's name
    page.wait_for_function("() => document.querySelectorAll('#runs-table tbody tr').length == 2")
    assert shown() == [1, 2]
    page.goto(world["url"] + "runs/3")
    page.wait_for_function("() => window.cxRun.charts.loss !== undefined")
    with page.expect_download() as download:
        page.locator(".chart-png").first.click()
    assert download.value.suggested_filename == "loss.png"
    picture = Image.open(io.BytesIO(download.value.path().read_bytes()))
    assert picture.format == "PNG" and picture.size == tuple(
        page.evaluate("() => [window.cxRun.charts.loss.canvas.width, window.cxRun.charts.loss.canvas.height]")
    )
    page.close()


def test_a_list_of_several_choices_takes_plain_clicks(world):
    page = world["new_page"]()
    page.goto(world["url"] + "runs/1")
    page.wait_for_selector("#overlay")
    page.click("#overlay option[value='2']")  # no ctrl: the click chooses it
    page.wait_for_function("() => document.getElementById('charts').dataset.overlays == '2'")
    assert parse_qs(urlparse(page.url).query)["overlay"] == ["2"]
    page.click("#overlay option[value='2']")  # and a second click lets it go
    page.wait_for_function("() => document.getElementById('charts').dataset.overlays == ''")
    page.close()


def test_a_click_on_a_legend_entry_hides_its_run_and_a_second_brings_it_back(world):
    page = world["new_page"]()
    page.goto(world["url"] + "compare?runs=2,3")
    page.wait_for_function("() => window.cxCompare.curveCharts.test_accuracy !== undefined")
    shown = "() => window.cxCompare.curveCharts.test_accuracy.shown().map(s => s.name)"
    assert page.evaluate(shown) == ["run 2", "run 3"]

    def click_entry(name: str) -> None:
        point = page.evaluate(
            """(name) => { const c = window.cxCompare.curveCharts.test_accuracy, b = c.legendBoxes.find(b => b.name === name);
                 const r = c.canvas.getBoundingClientRect(), k = r.width / c.canvas.width;
                 return [r.left + (b.x + 5) * k, r.top + (b.y + 3) * k]; }""",
            name,
        )
        page.mouse.click(*point)

    click_entry("run 2")
    assert page.evaluate(shown) == ["run 3"]
    click_entry("run 2")
    assert page.evaluate(shown) == ["run 2", "run 3"]
    page.close()


def test_a_metric_as_a_column_its_last_min_max_or_value_at_a_step_as_sql_gives_it(world):
    import sqlite3

    def sql(query: str) -> dict[str, float]:
        with sqlite3.connect(world["db"]) as connection:
            return {str(r): v for r, v in connection.execute(query).fetchall()}

    page = world["new_page"]()
    page.goto(world["url"])
    page.wait_for_selector("#runs-table tbody tr")
    page.click("#column-chooser summary")
    page.wait_for_selector("#metric-name option[value='train_loss']", state="attached")
    page.select_option("#metric-name", "test_loss")
    page.select_option("#metric-how", "min")
    page.click("#metric-add")
    page.wait_for_selector("#runs-table th.metric[data-key='m:test_loss:min']")
    page.select_option("#metric-name", "train_loss")
    page.select_option("#metric-how", "at")
    page.fill("#metric-step", "10")
    page.click("#metric-add")
    page.wait_for_selector("#runs-table th.metric[data-key='m:train_loss:at:10']")
    assert parse_qs(urlparse(page.url).query)["metrics"] == ["test_loss:min,train_loss:at:10"]
    page.reload()  # the columns come back from the address
    page.wait_for_selector("#runs-table td[data-key='m:train_loss:at:10']")
    cells = page.eval_on_selector_all(
        "#runs-table tbody tr",
        "rows => rows.map(r => [r.dataset.run, ...['m:test_loss:min', 'm:train_loss:at:10'].map(k => r.querySelector(`td[data-key='${k}']`).textContent)])",
    )
    least = sql("SELECT run_id, min(value) FROM metrics WHERE name = 'test_loss' GROUP BY run_id")
    at_ten = sql(
        "SELECT m.run_id, m.value FROM metrics m WHERE m.name = 'train_loss' AND m.step = "
        "(SELECT max(step) FROM metrics WHERE run_id = m.run_id AND name = 'train_loss' AND step <= 10)"
    )
    for run, shown_least, shown_at in cells:  # a run without the metric (a tracked one) has an empty cell
        assert (float(shown_least) if shown_least else None) == (pytest.approx(least[run], rel=1e-4) if run in least else None)
        assert (float(shown_at) if shown_at else None) == (pytest.approx(at_ten[run], rel=1e-4) if run in at_ten else None)
    assert {"1", "2", "3"} <= set(least) & set(at_ten)
    refused = page.request.get(world["url"] + "api/metric-column?name=train_loss&how=at")
    assert refused.status == 400 and "step" in refused.json()["error"]
    assert page.request.get(world["url"] + "api/metric-column?name=train_loss&how=best").status == 400
    page.close()


def test_the_experiment_page_smooths_its_curves_as_tensorboard_does_and_keeps_it_in_the_address(world):
    page = world["new_page"]()
    page.goto(world["url"] + "experiments/small?by=seed&metric=train_loss")
    page.wait_for_selector("body[data-drawn='true']")
    page.eval_on_selector("#smoothing", "s => { s.value = '0.6'; s.dispatchEvent(new Event('input')); }")
    assert parse_qs(urlparse(page.url).query)["smoothing"] == ["0.6"]
    drawn = page.evaluate(
        "() => window.cxExperiment.chart.series.map(s => ({name: s.name, ys: s.ys, faint: !!s.faint, band: !!s.lows}))"
    )
    view = page.evaluate("() => JSON.parse(document.getElementById('experiment-data').textContent).curves.groups")
    for group in view:
        smoothed = next(s for s in drawn if s["name"] == f"{group['label']} (smoothed 0.6)")
        last, count, expected = 0.0, 0, []
        for value in group["mean"]:  # TensorBoard's debiased exponential moving average, written out here
            last, count = last * 0.6 + 0.4 * value, count + 1
            expected.append(last / (1 - 0.6**count))
        assert smoothed["ys"] == pytest.approx(expected, rel=1e-12) and smoothed["band"]
        raw = next(s for s in drawn if s["name"] == group["label"])
        assert raw["faint"] and raw["ys"] == group["mean"] and not raw["band"]  # the values faint behind, the band once
    page.reload()
    page.wait_for_selector("body[data-drawn='true']")
    assert page.input_value("#smoothing") == "0.6"
    page.close()


def test_a_metric_against_another_metric_pairs_the_values_of_each_step(world):
    import sqlite3

    page = world["new_page"]()
    page.goto(world["url"] + "runs/3?x=metric:test_accuracy")
    page.wait_for_function("() => document.getElementById('x-axis').value == 'metric:test_accuracy'")
    page.wait_for_function("() => window.cxRun.charts.loss && window.cxRun.charts.loss.options.xLabel == 'test_accuracy'")
    drawn = page.evaluate("() => window.cxRun.charts.loss.series.find(s => s.name == 'test_loss')")
    with sqlite3.connect(world["db"]) as connection:
        pairs = connection.execute(
            "SELECT a.value, l.value FROM metrics l JOIN metrics a ON a.run_id = l.run_id AND a.step = l.step "
            "AND a.name = 'test_accuracy' WHERE l.run_id = 3 AND l.name = 'test_loss' ORDER BY l.step"
        ).fetchall()
    assert pairs and list(zip(drawn["xs"], drawn["ys"])) == [tuple(p) for p in pairs]
    page.close()


def test_pinned_runs_stay_pinned_across_reloads_and_filters_and_are_compared(world):
    page = world["new_page"]()
    page.goto(world["url"])
    page.wait_for_selector("#runs-table tbody tr")
    for run in ("2", "3"):
        page.check(f"#runs-table tr[data-run='{run}'] input[type=checkbox]")
    page.fill("#filter-text", "small")  # run 3 filtered out, and still pinned
    page.wait_for_function("() => !document.querySelector(\"#runs-table tr[data-run='3']\")")
    page.goto(world["url"] + "?pinned=1")
    page.wait_for_selector("#runs-table tbody tr")
    assert page.eval_on_selector_all("#runs-table tbody tr", "rows => rows.map(r => r.dataset.run)") == ["2", "3"]
    assert page.text_content("#compare-button") == "Compare 2 pinned runs"
    page.click("#compare-button")
    page.wait_for_selector("body[data-compare-ready='true']")
    assert parse_qs(urlparse(page.url).query)["runs"] == ["2,3"]
    page.goto(world["url"])
    page.wait_for_selector("#runs-table tbody tr")
    page.click("#unpin")
    assert page.eval_on_selector_all("#runs-table tbody input:checked", "ticks => ticks.length") == 0
    page.reload()
    page.wait_for_selector("#runs-table tbody tr")
    assert page.eval_on_selector_all("#runs-table tbody input:checked", "ticks => ticks.length") == 0
    page.close()


def test_a_chart_saved_as_svg_is_the_same_drawing_as_vectors(world):
    import re
    import xml.etree.ElementTree as ElementTree

    page = world["new_page"]()
    page.goto(world["url"] + "runs/3")
    page.wait_for_function("() => window.cxRun.charts.loss !== undefined")
    with page.expect_download() as download:
        page.locator(".chart-svg").first.click()
    assert download.value.suggested_filename == "loss.svg"
    root = ElementTree.fromstring(download.value.path().read_text())
    namespace = "{http://www.w3.org/2000/svg}"
    chart = page.evaluate(
        "() => { const c = window.cxRun.charts.loss; return {width: c.canvas.width, xTicks: c.xTicks, "
        "series: c.shown().map(s => ({colour: s.colour, points: s.xs.length}))}; }"
    )
    assert root.tag == f"{namespace}svg" and int(root.get("width")) == chart["width"]
    texts = [t.text for t in root.iter(f"{namespace}text")]
    assert "step" in texts and all(str(tick) in texts for tick in chart["xTicks"])  # the axis's name and its ticks
    lines = [p for p in root.iter(f"{namespace}path") if p.get("fill") == "none"]
    for series in chart["series"]:  # each series is one path in its colour through each of its points
        drawn = [p for p in lines if p.get("stroke") == series["colour"]]
        assert any(len(re.findall(r"[ML]", p.get("d"))) == series["points"] for p in drawn), series
    page.close()


def test_the_experiment_page_draws_its_groups_by_epoch_and_by_wall_time(world):
    import sqlite3

    page = world["new_page"]()
    page.goto(world["url"] + "experiments/small?by=seed&metric=train_loss&x=epoch")
    page.wait_for_selector("body[data-drawn='true']")
    assert page.input_value("#x-axis") == "epoch"
    drawn = page.evaluate("() => window.cxExperiment.chart.series.map(s => ({name: s.name, xs: s.xs, steps: s.steps}))")
    with sqlite3.connect(world["db"]) as connection:
        (last_step,) = connection.execute("SELECT max(step) FROM metrics WHERE run_id = 1 AND epoch = 1").fetchone()
        times = dict(connection.execute("SELECT step, min(wall_time) FROM metrics WHERE run_id = 1 GROUP BY step").fetchall())
    for series in drawn:  # one epoch of last_step steps: step s is at s / last_step of it
        assert series["xs"] == pytest.approx([s / last_step for s in series["steps"]], rel=1e-12)
    page.select_option("#x-axis", "time")
    assert parse_qs(urlparse(page.url).query)["x"] == ["time"]
    seed_zero = page.evaluate("() => window.cxExperiment.chart.series.find(s => s.name == '0')")  # run 1 alone
    first = min(times.values())
    assert seed_zero["xs"] == pytest.approx([times[s] - first for s in seed_zero["steps"]], abs=1e-9)
    assert page.evaluate("() => window.cxExperiment.chart.options.xLabel") == "seconds"
    page.close()


def test_a_charts_readout_stays_inside_its_chart_at_either_edge(world):
    page = world["new_page"](viewport={"width": 1400, "height": 900})
    page.goto(world["url"] + "runs/3")
    page.wait_for_function("() => window.cxRun.charts.loss !== undefined && window.cxRun.charts.loss.frame !== null")
    canvas = page.locator("#charts canvas").first
    box = canvas.bounding_box()
    for x in (box["x"] + 60, box["x"] + box["width"] - 5):  # near the left edge, then the right
        page.mouse.move(x, box["y"] + box["height"] / 2)
        page.wait_for_selector("#charts .chart:first-child .tip:not([hidden])")
        tip = page.locator("#charts .chart:first-child .tip").bounding_box()
        assert box["x"] - 1 <= tip["x"] and tip["x"] + tip["width"] <= box["x"] + box["width"] + 1, (x, tip, box)
    page.close()
