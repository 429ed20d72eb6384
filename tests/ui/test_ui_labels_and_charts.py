"""convexp ui's labels and charts in a real browser (the system Chromium through playwright): tags, names and
notes; charts by epoch and wall time, zoomed, panned, per-chart log and resized; the spread of a layer's
weights and biases; filter numbers; the compare page's shared slider, scales and layouts; a GIF of a step
range; dark mode. Every number drawn is checked against the database, read with SQL and numpy."""

from __future__ import annotations

import io
import shutil
import sqlite3

import numpy as np
import pytest

from tests.conftest import TINY_DIGITS, run_cli, stored_kernel, stored_kernels, write_experiments
from tests.ui.test_ui_api import browsing

pytest.importorskip("starlette", reason="convexp ui needs the ui extra: pip install 'convexp[ui]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("Chromium is not installed (Debian: apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Run 1 (`tagged`: two conv layers, every step, 2 epochs of 23 steps, tags and notes from the YAML), runs
    2-3 (`pair`: one conv layer, seeds 0 and 1, every 2 steps), a `convexp ui` serving them, a browser."""
    folder = tmp_path_factory.mktemp("ui-round2")
    db = folder / "ui.db"
    two_convs = {
        **TINY_DIGITS,
        "layers": [
            {"type": "conv", "filters": 4, "kernel_size": 3, "activation": "relu"},
            {"type": "conv", "filters": 6, "kernel_size": 3, "activation": "relu"},
            {"type": "flatten"},
            {"type": "dense", "units": 10},
        ],
        "snapshots": {"every": 1},
        "epochs": 2,
        "tags": ["baseline", "two-convs"],
        "notes": "the first try\nwith two layers",
    }
    pair = {**TINY_DIGITS, "seed": [0, 1], "snapshots": {"every": 2}, "epochs": 2}
    experiments = write_experiments(folder / "experiments.yaml", {"tagged": two_convs, "pair": pair})
    ran = run_cli("run", str(experiments), "-e", "tagged", "-e", "pair", "--db", str(db))
    assert ran.returncode == 0, ran.stderr
    assert run_cli("name", "1", "two layers", "--db", str(db)).returncode == 0
    assert run_cli("tag", "3", "baseline", "--db", str(db)).returncode == 0
    with browsing(db) as session:
        yield {"db": db, **session}


def _query(db, sql, *args):
    with sqlite3.connect(db) as connection:
        return connection.execute(sql, args).fetchall()


def _open_run(world, run_id: int, query: str = ""):
    page = world["new_page"]()
    page.goto(f"{world['url']}runs/{run_id}{query}")
    page.wait_for_function("() => window.cxRun.charts.loss && window.cxRun.charts.loss.frame && window.cxRun.state.snapshot")
    return page


def _series(page, chart: str, name: str) -> dict:
    return page.evaluate(
        "([c, n]) => { const s = window.cxRun.charts[c].series.find(s => s.name === n); return {xs: s.xs, ys: s.ys, steps: s.steps}; }",
        [chart, name],
    )


def test_tags_names_and_notes_are_shown_and_a_tag_filters_the_runs(world):
    page = world["new_page"]()
    page.goto(world["url"])
    page.wait_for_selector("#runs-table tbody tr")
    shown = lambda: page.eval_on_selector_all("#runs-table tbody tr", "rows => rows.map(r => Number(r.dataset.run))")  # noqa: E731
    assert shown() == [1, 2, 3]
    page.click("#runs-table tr[data-run='3'] a.tag")  # clicking a tag filters by it
    tagged = [
        i
        for (i,) in _query(
            world["db"], "SELECT runs.id FROM runs, json_each(runs.tags) AS t WHERE t.value = 'baseline' ORDER BY runs.id"
        )
    ]
    assert shown() == tagged == [1, 3]
    assert "tags=baseline" in page.url
    page.fill("#filter-tags", "baseline two-convs")
    page.press("#filter-tags", "Enter")
    assert shown() == [1]
    page.goto(f"{world['url']}?tags=two-convs")  # the view from its URL
    page.wait_for_selector("#runs-table tbody tr")
    assert shown() == [1]
    cells = page.eval_on_selector_all(
        "#runs-table tr[data-run='1'] td[data-key]",
        "cells => Object.fromEntries(cells.map(c => [c.dataset.key, c.textContent.trim()]))",
    )
    assert cells["name"] == "two layers" and "baseline" in cells["tags"] and "two-convs" in cells["tags"]
    page.goto(f"{world['url']}runs/1")
    assert page.text_content("#run-name") == "two layers"
    assert page.eval_on_selector_all("#run-tags a.tag", "tags => tags.map(t => t.textContent)") == ["baseline", "two-convs"]
    assert page.inner_text("#run-notes") == "the first try\nwith two layers"
    page.close()


def test_the_x_axis_by_epoch_and_by_wall_time_places_every_value_where_the_table_says(world):
    page = _open_run(world, 1, "?x=epoch")
    assert page.input_value("#x-axis") == "epoch"
    rows = _query(
        world["db"], "SELECT step, epoch, value, wall_time FROM metrics WHERE run_id = 1 AND name = 'train_loss' ORDER BY step"
    )
    ends = dict(_query(world["db"], "SELECT epoch, max(step) FROM metrics WHERE run_id = 1 GROUP BY epoch"))
    assert ends == {1: 23, 2: 46}
    expected = [e - 1 + (s - (ends[e - 1] if e > 1 else 0)) / (ends[e] - (ends[e - 1] if e > 1 else 0)) for s, e, _, _ in rows]
    drawn = _series(page, "loss", "train_loss")
    assert drawn["ys"] == [v for _, _, v, _ in rows] and drawn["steps"] == [s for s, *_ in rows]
    assert max(abs(a - b) for a, b in zip(drawn["xs"], expected)) < 1e-12
    assert _series(page, "accuracy", "test_accuracy")["xs"] == [1, 2]  # per-epoch values sit at the epochs' ends
    page.select_option("#x-axis", "time")
    assert "x=time" in page.url
    first = min(t for (t,) in _query(world["db"], "SELECT wall_time FROM metrics WHERE run_id = 1"))
    drawn = _series(page, "loss", "train_loss")
    assert max(abs(a - (t - first)) for a, (_, _, _, t) in zip(drawn["xs"], rows)) < 1e-9
    assert drawn["xs"] == sorted(drawn["xs"]) and drawn["xs"][-1] > 0
    assert page.evaluate("() => window.cxRun.charts.loss.options.xLabel") == "seconds"
    page.close()


def _drag(page, chart: str, x0: float, x1: float, shift: bool = False) -> None:
    """Drag across a chart from x0 to x1 (fractions of the plot's width)."""
    box = page.locator("#charts .chart canvas").nth(["loss", "accuracy"].index(chart)).bounding_box()
    frame = page.evaluate(
        "c => { const f = window.cxRun.charts[c].frame; return {left: f.left, right: f.right, W: f.W}; }", chart
    )
    scale = box["width"] / frame["W"]
    at = lambda f: box["x"] + (frame["left"] + f * (frame["W"] - frame["left"] - frame["right"])) * scale  # noqa: E731
    y = box["y"] + box["height"] / 2
    if shift:
        page.keyboard.down("Shift")
    page.mouse.move(at(x0), y)
    page.mouse.down()
    page.mouse.move((at(x0) + at(x1)) / 2, y)
    page.mouse.move(at(x1), y)
    page.mouse.up()
    if shift:
        page.keyboard.up("Shift")


def test_a_chart_zooms_pans_resets_takes_its_own_log_scale_and_resizes_with_the_window(world):
    page = _open_run(world, 1)
    _drag(page, "loss", 0.25, 0.5)
    view = page.evaluate("() => window.cxRun.charts.loss.view")
    assert 10 <= view["x0"] < view["x1"] <= 25 and page.is_visible("#charts .chart-reset")
    # y fits the values inside the zoomed range
    rows = _query(world["db"], "SELECT step, value FROM metrics WHERE run_id = 1 AND name IN ('train_loss', 'test_loss')")
    inside = [v for s, v in rows if view["x0"] <= s <= view["x1"]]
    extent = page.evaluate("() => window.cxRun.charts.loss.frame.e")
    assert (
        extent["y0"] <= min(inside)
        and max(inside) <= extent["y1"]
        and extent["y1"] - extent["y0"] <= 1.2 * (max(inside) - min(inside))
    )
    assert page.evaluate("() => window.cxRun.charts.accuracy.view") is None  # the other chart keeps its view
    _drag(page, "loss", 0.6, 0.4, shift=True)  # pan to the right by a fifth of the range
    panned = page.evaluate("() => window.cxRun.charts.loss.view")
    width = view["x1"] - view["x0"]
    assert panned["x1"] - panned["x0"] == pytest.approx(width) and panned["x0"] == pytest.approx(
        view["x0"] + 0.2 * width, abs=0.3
    )
    page.dblclick("#charts .chart >> nth=0 >> canvas")
    assert page.evaluate("() => window.cxRun.charts.loss.view") is None
    page.check("#charts .chart >> nth=0 >> .chart-log")
    assert page.evaluate("() => [window.cxRun.charts.loss.options.log, window.cxRun.charts.accuracy.options.log]") == [
        True,
        False,
    ]
    page.check("#log-scale")  # the page's box sets every chart
    assert page.evaluate("() => [window.cxRun.charts.loss.options.log, window.cxRun.charts.accuracy.options.log]") == [True, True]
    wide = page.evaluate("() => window.cxRun.charts.loss.canvas.width")
    page.set_viewport_size({"width": 800, "height": 1000})
    # one chart a row now, as wide as the page allows (three a row at 1,400 px)
    page.wait_for_function(f"() => window.cxRun.charts.loss.canvas.width !== {wide}")
    widths = page.evaluate("() => [window.cxRun.charts.loss.canvas.width, document.getElementById('charts').clientWidth]")
    assert wide < 700 and widths[1] - 40 <= widths[0] <= widths[1]
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    page.close()


def _percentile(values: np.ndarray, q: float) -> float:
    """The q-th percentile by linear interpolation between order statistics, computed by hand."""
    ordered = np.sort(values.astype(np.float64).ravel())
    position = q / 100 * (len(ordered) - 1)
    low = int(np.floor(position))
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (position - low) * (ordered[high] - ordered[low]))


def test_the_spread_of_weights_and_biases_over_steps_and_at_the_shown_step_is_the_stored_values(world):
    page = _open_run(world, 1)
    page.select_option("#layer", "conv2")
    page.wait_for_function(
        "() => window.cxRun.spread.body && window.cxRun.spread.body.layer === 'conv2' && window.cxRun.spread.histogram"
    )
    body = page.evaluate("() => window.cxRun.spread.body")
    steps = [
        s for (s,) in _query(world["db"], "SELECT step FROM kernel_snapshots WHERE run_id = 1 AND layer = 'conv2' ORDER BY step")
    ]
    assert body["steps"] == steps and body["recorded"] == 47  # 47 snapshots: all of them
    for k in (0, 17, 46):
        kernel = stored_kernel(world["db"], 1, "conv2", steps[k])
        expected = [_percentile(kernel, q) for q in body["percentiles"]]
        assert body["kernel"]["values"][k] == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert body["kernel"]["mean"][k] == pytest.approx(float(kernel.astype(np.float64).mean()), rel=1e-9)
    (bias_blob,) = _query(world["db"], "SELECT bias FROM kernel_snapshots WHERE run_id = 1 AND layer = 'conv2' AND step = 46")[0]
    bias = np.frombuffer(bias_blob, "<f4")
    assert body["bias"]["values"][-1] == pytest.approx([_percentile(bias, q) for q in body["percentiles"]], rel=1e-12, abs=1e-15)
    # the chart: bands between the percentiles, the median as its line, the shown step marked
    series = page.evaluate("() => window.cxRun.spread.chart.series.map(s => ({name: s.name, lows: s.lows, ys: s.ys}))")
    assert [s["name"] for s in series] == ["min–max", "6.7–93.3%", "15.9–84.1%", "30.9–69.1%", "median"]
    assert series[-1]["ys"] == [v[4] for v in body["kernel"]["values"]]
    assert page.evaluate("() => window.cxRun.spread.chart.marker") == 46
    # the histogram at the shown step: counts of values in equal bins from the smallest to the largest
    shown = page.evaluate("() => window.cxRun.spread.histogram")
    kernel = stored_kernel(world["db"], 1, "conv2", 46).astype(np.float64).ravel()
    edges = shown["kernel"]["edges"]
    assert edges[0] == kernel.min() and edges[-1] == kernel.max() and len(edges) == 31
    counts = [
        int(((kernel >= a) & ((kernel < b) if i < 29 else (kernel <= b))).sum()) for i, (a, b) in enumerate(zip(edges, edges[1:]))
    ]
    assert shown["kernel"]["counts"] == counts and sum(counts) == kernel.size == 6 * 4 * 9
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("() => window.cxRun.spread.chart.marker === 45 && window.cxRun.spread.histogram.step === 45")
    page.select_option("#dist-of", "bias")
    assert page.get_attribute("#histogram", "data-of") == "bias"
    assert page.evaluate("() => window.cxRun.spread.chart.series.at(-1).ys") == [v[4] for v in body["bias"]["values"]]
    page.close()


def test_filter_numbers_stand_beside_the_cells_without_covering_a_kernel_value(world):
    page = _open_run(world, 1)
    grid = "window.cxRun.state.grid"
    assert page.evaluate(f"() => [{grid}.labelH, {grid}.hit(2, 2)]") == [12, None]  # above the first cell: its number
    centre = page.evaluate(f"() => {grid}.centre(0, 0, 0, 0)")
    assert page.evaluate(f"p => {grid}.hit(p.x, p.y)", centre) == {"filter": 0, "channel": 0, "i": 0, "j": 0}
    # the number's strip holds drawn text; with numbers off the grid is shorter and starts with the kernel
    inked = page.evaluate(
        """() => { const c = document.getElementById('kernel-canvas'); const d = c.getContext('2d').getImageData(0, 0, 12, 11).data;
                   let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 200) n++; return n; }"""
    )
    assert inked > 0
    height = page.evaluate("() => document.getElementById('kernel-canvas').height")
    page.uncheck("#numbers")
    assert page.evaluate(f"() => [{grid}.labelH, document.getElementById('kernel-canvas').height]") == [0, height - 2 * 12]
    page.close()


def test_compare_scrubs_every_run_together_with_a_shared_or_own_scale_in_a_grid_or_one_row(world):
    page = world["new_page"]()
    page.goto(f"{world['url']}compare?runs=2,3")
    page.wait_for_function("() => document.body.dataset.compareReady === 'true'")
    recorded = [
        s for (s,) in _query(world["db"], "SELECT DISTINCT step FROM kernel_snapshots WHERE run_id IN (2, 3) ORDER BY step")
    ]
    assert page.evaluate("() => window.cxCompare.allSteps()") == recorded
    index = recorded.index(20)
    page.fill("#sync-slider", str(index))
    page.dispatch_event("#sync-slider", "input")
    page.wait_for_function("() => [...document.querySelectorAll('.compare-canvas')].every(c => c.dataset.step === '20')")
    limits = []
    for run_id in (2, 3):
        kernel = stored_kernel(world["db"], run_id, "conv1", 20)
        limits.append(float(np.abs(kernel).max()))
    assert float(page.get_attribute(".compare-row", "data-limit")) == pytest.approx(max(limits), rel=1e-6)
    page.select_option("#scale-mode", "run")
    page.wait_for_function(
        "() => [...document.querySelectorAll('figcaption .scale')].every(s => s.textContent.startsWith('scale'))"
    )
    own = [float(page.get_attribute(f".compare-canvas[data-run='{r}']", "data-limit")) for r in (2, 3)]
    assert own == pytest.approx(limits, rel=1e-6) and "scale-mode=run" in page.url
    page.select_option("#layout", "row")
    page.wait_for_function("() => document.body.classList.contains('compare-one-row')")
    tops = page.eval_on_selector_all(".compare-canvas", "cs => cs.map(c => Math.round(c.getBoundingClientRect().top))")
    assert len(set(tops)) == 1 and page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    assert page.evaluate("() => document.querySelector('.compare-canvas').dataset.step") == "20"  # the slider's step stays
    page.close()


def test_a_gif_of_a_step_range_has_a_frame_per_recorded_step_on_one_scale(world):
    from PIL import Image

    page = _open_run(world, 1)
    page.fill("#gif-from", "3")
    page.fill("#gif-to", "9")
    with page.expect_download() as download:
        page.click("#gif-link")
    data = download.value.path().read_bytes()
    assert download.value.suggested_filename == "run-1-conv1-steps-3-9.gif"
    image = Image.open(io.BytesIO(data))
    assert image.format == "GIF" and image.n_frames == 7  # steps 3 to 9, every step recorded
    from convexp.analysis.animation import GridLayout
    from tests.analysis.test_animation import assert_gif_on_one_scale

    recorded = stored_kernels(world["db"], "conv1")  # read with sqlite3 and the documented recipe
    assert_gif_on_one_scale(data, np.stack([recorded[step] for step in range(3, 10)]), GridLayout.for_filters(4, 3, 3))
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"{world['url']}runs/1/layers/conv1/filters.gif?from=9&to=3")
    assert error.value.code == 400 and "the GIF&#39;s last step (3) comes before its first (9)" in error.value.read().decode()
    # the top patches as drawn, as a PNG too
    page.click("#patches-button")
    page.wait_for_selector("#patches-png:not([hidden])")
    with page.expect_download() as download:
        page.click("#patches-png")
    assert download.value.suggested_filename == "run-1-conv1-step-46-patches.png"
    picture = Image.open(io.BytesIO(download.value.path().read_bytes()))
    size = page.evaluate(
        "() => [document.getElementById('patches-canvas').width, document.getElementById('patches-canvas').height]"
    )
    assert picture.format == "PNG" and list(picture.size) == size
    page.close()


def test_dark_mode_follows_the_system_and_the_canvases_take_its_colours(world):
    page = world["new_page"](color_scheme="dark", viewport={"width": 1200, "height": 900})
    page.goto(f"{world['url']}runs/1")
    page.wait_for_function("() => window.cxRun.charts.loss && window.cxRun.charts.loss.frame && window.cxRun.state.snapshot")
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(21, 24, 29)"
    # the grid's gaps are the page's background, not white
    corner = page.evaluate(
        "() => Array.from(document.getElementById('kernel-canvas').getContext('2d').getImageData("
        "document.getElementById('kernel-canvas').width - 1, document.getElementById('kernel-canvas').height - 1, 1, 1).data)"
    )
    assert corner[:3] == [21, 24, 29]
    page.close()
