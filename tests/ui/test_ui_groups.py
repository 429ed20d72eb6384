"""convexp ui's grid views in a real browser (the system Chromium through playwright): the runs page by
parameters, the experiment page's groups with their bands, a run page's overlays, each view's state in
its URL; the numbers drawn checked against `convexp summary` and SQL over the database."""

from __future__ import annotations

import json
import shutil
import sqlite3
from urllib.parse import parse_qs, urlparse

import pytest

from tests.conftest import TINY_DIGITS, run_cli, write_experiments
from tests.ui.test_ui_api import browsing
from tests.ui.test_ui_browser import hover_value

pytest.importorskip("starlette", reason="convexp ui needs the ui extra: pip install 'convexp[ui]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("Chromium is not installed (Debian: apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """`grid`: 2 initializers x 3 seeds (runs 1-6), every-step conv1, 2 epochs; `single` (run 7: two
    conv layers, every step, 3 epochs); a `convexp ui` serving them; a browser."""
    folder = tmp_path_factory.mktemp("ui-groups")
    db = folder / "ui.db"
    grid = {
        **TINY_DIGITS,
        "initializer": ["glorot_uniform", "he_normal"],
        "seed": [0, 1, 2],
        "epochs": 2,
        "snapshots": {"every": 1},
    }
    two_convs = {
        **TINY_DIGITS,
        "layers": [
            {"type": "conv", "filters": 4, "kernel_size": 3, "activation": "relu"},
            {"type": "conv", "filters": 6, "kernel_size": 3, "activation": "relu"},
            {"type": "flatten"},
            {"type": "dense", "units": 10},
        ],
        "snapshots": {"every": 1},
        "epochs": 3,
    }
    experiments = write_experiments(folder / "experiments.yaml", {"grid": grid, "single": two_convs})
    for name in ("grid", "single"):
        assert run_cli("run", str(experiments), "-e", name, "--db", str(db)).returncode == 0
    with browsing(db) as session:
        yield {"db": db, **session}


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
    # comparisons, as convexp runs --where takes them, against SQL over the recorded specs
    for text, sql in [
        ("seed<2", "json_extract(spec, '$.seed') < 2"),
        (
            "seed>=1 initializer!=he_normal",
            "json_extract(spec, '$.seed') >= 1 AND json_extract(spec, '$.initializer') != 'he_normal'",
        ),
        ("seed<=0.5", "json_extract(spec, '$.seed') <= 0.5"),
    ]:
        page.fill("#filter-where", text)
        page.press("#filter-where", "Enter")
        assert sorted(_shown(page), key=int) == _ids(world["db"], f"experiment = 'grid' AND {sql}"), text
        cli = run_cli(
            "runs", "-e", "grid", *[a for w in text.split() for a in ("--where", w)], "-f", "json", "--db", str(world["db"])
        )
        assert sorted(_shown(page), key=int) == [str(r["id"]) for r in json.loads(cli.stdout)], text
    page.fill("#filter-where", "seed<low")
    page.press("#filter-where", "Enter")
    assert "< compares numbers, and 'low' is not one" in page.text_content("#where-error")
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
        ("by=initializer&measure=edge_share&layer=conv1", ["--measure", "edge_share", "--layer", "conv1"]),
        ("by=initializer&measure=similarity&layer=conv1", ["--measure", "similarity", "--layer", "conv1"]),
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


def _open_run_7(world, layer: str = "conv1", view: str | None = None):
    """A page on run 7 (two conv layers) showing ``layer``, in ``view`` if given."""
    page = world["new_page"]()
    page.goto(f"{world['url']}runs/7")
    page.wait_for_function("() => document.getElementById('kernel-canvas').dataset.layer === 'conv1'")
    if layer != "conv1":
        page.select_option("#layer", layer)
        page.wait_for_function(f"() => document.getElementById('kernel-canvas').dataset.layer === '{layer}'")
    if view is not None:
        page.select_option("#view", view)
    return page


def test_the_hover_readout_names_its_layer_and_is_cleared_when_the_layer_changes(world):
    """Issue 28, bug 3: after switching from conv1 to conv2 the readout still showed conv1's value."""
    page = _open_run_7(world)
    shown = hover_value(page, 1, 0, 1, 1)
    assert shown["layer"] == "conv1" and page.text_content("#readout").startswith("conv1 · step ")
    page.mouse.move(0, 0)
    page.select_option("#layer", "conv2")
    page.wait_for_function("() => document.getElementById('kernel-canvas').dataset.layer === 'conv2'")
    assert page.text_content("#readout") == "" and "layer" not in page.evaluate(
        "() => Object.assign({}, document.getElementById('readout').dataset)"
    )
    assert hover_value(page, 0, 0, 0, 0)["layer"] == "conv2"
    page.close()


def test_pause_then_play_runs_one_play_loop_not_two(world):
    """Issue 28, bug 2: a Pause then Play while a frame was loading left the old loop stepping too, and
    10 fps played at about 20. Frames drawn in 1.5 s after Play, Pause, Play (quicker than a frame) are
    compared with those after one Play, on the same page: a second loop would double them."""
    page = _open_run_7(world)
    page.select_option("#speed", "10")
    page.evaluate("() => window.cxRun.state.index = 0")
    page.evaluate(
        """() => {
            window.frames_drawn = 0;
            new MutationObserver(() => window.frames_drawn++).observe(
                document.getElementById('kernel-canvas'), { attributes: true, attributeFilter: ['data-step'] });
        }"""
    )

    def frames_after(clicks: int) -> int:
        page.evaluate("() => window.frames_drawn = 0")
        for _ in range(clicks):
            page.click("#play")
        page.wait_for_timeout(1500)
        frames = page.evaluate("() => window.frames_drawn")
        page.click("#play")  # pause
        page.wait_for_timeout(300)
        return frames

    one = frames_after(1)
    again = frames_after(3)  # Play, Pause, Play
    assert one >= 3 and again <= 1.4 * one + 1, (one, again)  # one loop: about the same; two loops: about twice
    page.close()


def test_charts_of_quantities_that_are_never_negative_stay_above_zero_and_one_point_sits_mid_axis(world):
    """Issue 28, bug 6: loss and drift axes went below zero (the padding), and a one-point series got
    the x ticks 469 469 470 470 470 with its point on the edge."""
    page = world["new_page"]()
    page.goto(f"{world['url']}runs/7")
    page.wait_for_function("() => window.cxRun.charts.loss && window.cxRun.charts.loss.frame")
    assert page.evaluate("() => window.cxRun.charts.loss.frame.e.y0") >= 0  # train and test loss: never negative
    one = page.evaluate(
        """() => {
            const chart = new LineChart(document.body, { title: "one point" });
            chart.setSeries([{ name: "test_accuracy", xs: [469], ys: [0.97] }]);
            const f = chart.frame;
            return { ticks: chart.xTicks, x: f.px(469), middle: (f.left + f.W - f.right) / 2, y0: f.e.y0 };
        }"""
    )
    assert one["ticks"] == sorted(set(one["ticks"])) and 469 in one["ticks"]
    assert abs(one["x"] - one["middle"]) < 1 and one["y0"] >= 0
    page.close()


def test_the_mean_view_takes_its_colour_scale_from_the_means_it_draws(world):
    """Issue 28, bug 4: one cell per filter (the mean over input channels) was coloured on the scale of
    the largest single weight, so a deep layer's means were almost colourless."""
    import numpy as np

    from tests.conftest import stored_kernel

    page = _open_run_7(world, "conv2", "filters")
    step = int(page.get_attribute("#kernel-canvas", "data-step"))
    kernel = stored_kernel(world["db"], 7, "conv2", step).astype(np.float64)
    limit = float(page.get_attribute("#kernel-canvas", "data-limit"))
    assert limit == pytest.approx(np.abs(kernel.mean(axis=1)).max(), rel=1e-6)
    assert limit < 0.9 * np.abs(kernel).max()  # the old scale: the largest single weight
    page.select_option("#view", "channels")
    assert float(page.get_attribute("#kernel-canvas", "data-limit")) == pytest.approx(np.abs(kernel).max(), rel=1e-6)
    page.close()


def test_a_filter_clicked_in_the_mean_view_shows_its_mean_and_any_channel_on_demand(world):
    """Issue 28, bug 5: clicking a cell of the mean view showed "channel 0" values beside a cell that
    showed the mean, and no other channel could be chosen."""
    import numpy as np

    from tests.conftest import stored_kernel

    page = _open_run_7(world, "conv2", "filters")
    hover_value(page, 3, 0, 1, 1)
    page.mouse.down()
    page.mouse.up()
    page.wait_for_selector("#filter-detail:not([hidden]) #trajectory canvas")
    step = int(page.get_attribute("#detail-values", "data-step"))
    kernel = stored_kernel(world["db"], 7, "conv2", step).astype(np.float64)

    def shown():
        return np.array(page.eval_on_selector_all("#detail-values td", "cells => cells.map(c => Number(c.dataset.value))"))

    assert page.text_content("#detail-title") == f"filter 3, mean over 4 channels at step {step}"
    assert np.allclose(shown(), kernel[3].mean(axis=0).ravel(), rtol=1e-12, atol=0)
    page.select_option("#detail-channel", "2")
    assert page.text_content("#detail-title") == f"filter 3, channel 2 at step {step}"
    assert np.array_equal(shown(), kernel[3, 2].ravel())
    page.close()


def test_the_weight_trajectory_legend_fits_and_covers_no_curve(world):
    """Issue 28, bug 7: a 3x3 filter's legend (w[0,0] ... w[2,2]) ran off the chart's right edge and
    was drawn over the highest curve."""
    page = _open_run_7(world)
    hover_value(page, 1, 0, 1, 1)
    page.mouse.down()
    page.mouse.up()
    page.wait_for_selector("#filter-detail:not([hidden]) #trajectory canvas")
    chart = page.evaluate(
        """() => { const c = window.cxRun.trajectoryCharts()[0];
                   return { boxes: c.legendBoxes, top: c.frame.top, width: c.canvas.width }; }"""
    )
    assert [b["name"] for b in chart["boxes"]] == [f"w[{i},{j}]" for i in range(3) for j in range(3)]
    assert all(b["x"] + b["w"] <= chart["width"] for b in chart["boxes"])
    assert max(b["y"] for b in chart["boxes"]) + 6 <= chart["top"]  # every legend row above the plot area
    page.close()


@pytest.mark.parametrize("width", [800, 1400])
def test_no_page_is_wider_than_the_window(world, width):
    """Issue 28, bug 8: compare was 1,692 px wide in a 1,400 px window; at 800 px the run page was 936 px."""
    page = world["new_page"]()
    page.set_viewport_size({"width": width, "height": 900})
    for path in ("", "runs/7", "runs/1", "experiments/grid?by=initializer", "compare?runs=1,2,3", "query?sql=SELECT+*+FROM+runs"):
        page.goto(world["url"] + path)
        page.wait_for_load_state("networkidle")
        wide = page.evaluate("() => document.documentElement.scrollWidth")
        assert wide <= width, f"/{path} is {wide} px wide in a {width} px window"
    page.close()


def test_a_training_run_shows_its_progress_by_steps_its_time_so_far_and_left(world):
    """Issue 28, bug 10: the progress bar moved once an epoch (empty at step 414 of 469), and seconds was
    blank while a run trained. A run of `single` (3 epochs of 23 steps) is made to stand at step 30,
    owned by this process, as a live run would."""
    from datetime import datetime, timedelta, timezone

    from convexp.store import MetricRecord, Store

    with Store(str(world["db"])) as store:
        spec = store.get_run(7).spec
        fields = {
            k: getattr(store.get_run(7), k) for k in ("backend", "seed", "dataset", "kernel_initializer", "bias_initializer")
        }
        fields.update(convexp_version="0.1.0", backend_version="0.1.0", framework="numpy", framework_version="2")
        started = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=60)
        run_id = store.create_run(experiment="live", spec=spec, started_at=started, **fields)
        store.record(run_id, [MetricRecord(23, 1, "test_accuracy", 0.5)], [], epochs_completed=1, steps_completed=30)
        try:
            page = world["new_page"]()
            page.goto(world["url"])
            page.wait_for_selector(f"#runs-table tr[data-run='{run_id}']")
            row = f"#runs-table tr[data-run='{run_id}']"
            assert float(page.get_attribute(f"{row} .progress", "data-share")) == pytest.approx(30 / 69)
            cells = page.eval_on_selector_all(
                f"{row} td[data-key]", "cells => Object.fromEntries(cells.map(c => [c.dataset.key, c.textContent]))"
            )
            assert cells["test_accuracy"] == "0.5000" and float(cells["seconds"]) >= 60  # test accuracy so far; seconds so far
            left = page.text_content(f"{row} .time-left").strip()  # 60 s for 30 of 69 steps: 78 s more, and the seconds since
            assert left.startswith("~") and left.endswith(" s left") and 78 <= int(left[1:-7]) <= 89, left
            page.close()
        finally:
            store.mark_stopped(run_id, "interrupted", "the test is over")
            store.delete_runs([run_id])


def test_the_analysis_never_passes_off_another_steps_table_and_says_what_it_measures(world):
    """Issue 28, bug 9: the analysis table could describe step 469 beside a grid at step 235 with no sign
    of loading, and for a deep layer it matched 3x3 operators against channel means without saying so."""
    page = world["new_page"]()
    page.goto(f"{world['url']}runs/7")
    last = page.evaluate(
        "() => new Promise(r => { const t = setInterval(() => { const c = document.getElementById('kernel-canvas'); if (c.dataset.step) { clearInterval(t); r(c.dataset.step); } }, 50); })"
    )
    page.wait_for_function(f"() => document.getElementById('analysis-table').dataset.step === '{last}'")
    for index in (0, 30, 5):
        seen = page.evaluate(
            """async (i) => {
                await window.cxRun.show(i);
                const table = document.getElementById('analysis-table');
                const grid = document.getElementById('kernel-canvas').dataset.step;
                return { grid, table: table.dataset.step, stale: table.classList.contains('stale'),
                         state: document.getElementById('analysis-state').textContent };
            }""",
            index,
        )
        assert seen["table"] == seen["grid"] or (seen["stale"] and seen["state"] == f"analysing step {seen['grid']}…"), seen
        page.wait_for_function(
            "g => { const t = document.getElementById('analysis-table'); return t.dataset.step === g && !t.classList.contains('stale'); }",
            arg=seen["grid"],
        )
    page.select_option("#layer", "conv2")
    page.wait_for_function(
        "() => document.getElementById('analysis-summary').textContent.includes('mean over its 4 input channels')"
    )
    page.close()


def test_keys_and_the_step_box_move_through_the_steps_and_the_trajectory_marks_the_shown_step(world):
    """Issue 28, stepping: space plays and pauses, arrows step one snapshot, shift+arrows ten, a box takes
    a step to go to, and the filter's trajectory charts mark the step the grid shows."""
    page = _open_run_7(world)
    page.wait_for_function("() => window.cxRun.state.snapshot !== null")
    last = page.evaluate("() => window.cxRun.state.steps.length - 1")

    def shown() -> tuple[int, int]:
        page.wait_for_function(
            "() => String(window.cxRun.state.snapshot.step) === document.getElementById('kernel-canvas').dataset.step"
        )
        return page.evaluate("() => [window.cxRun.state.index, Number(document.getElementById('kernel-canvas').dataset.step)]")

    page.locator("h1").click()  # the page, not a box, has the focus
    page.keyboard.press("ArrowLeft")
    assert shown()[0] == last - 1
    page.keyboard.press("Shift+ArrowLeft")
    assert shown()[0] == last - 11
    page.keyboard.press("ArrowRight")
    assert shown()[0] == last - 10
    page.keyboard.press("Space")
    assert page.evaluate("() => Boolean(window.cxRun.state.playing)")
    page.keyboard.press("Space")
    assert not page.evaluate("() => Boolean(window.cxRun.state.playing)")
    page.fill("#step-box", "30")
    page.press("#step-box", "Enter")
    page.wait_for_function("() => document.getElementById('kernel-canvas').dataset.step === '30'")
    hover_value(page, 1, 0, 1, 1)
    page.mouse.down()
    page.mouse.up()
    page.wait_for_selector("#filter-detail:not([hidden]) #trajectory canvas")
    assert page.evaluate("() => window.cxRun.trajectoryCharts().map(c => c.marker)") == [30, 30]
    page.locator("h1").click()
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => window.cxRun.trajectoryCharts()[0].marker === 31")
    page.close()


def _ema(values: list[float], weight: float) -> list[float]:
    """TensorBoard's debiased exponential moving average, computed here from the recorded values."""
    out, last = [], 0.0
    for count, value in enumerate(values, start=1):
        last = last * weight + (1 - weight) * value
        out.append(last / (1 - weight**count))
    return out


def test_smoothing_draws_the_moving_average_of_the_recorded_curve_over_the_curve_itself(world):
    """Issue 28: smoothing of the per-step curves, with a slider, the raw values faint behind, the
    setting in the URL; the drawn curve equals the average computed from the metrics table."""
    with sqlite3.connect(world["db"]) as connection:
        recorded = connection.execute(
            "SELECT step, value FROM metrics WHERE run_id = 7 AND name = 'train_loss' ORDER BY step"
        ).fetchall()
    steps, values = [s for s, _ in recorded], [v for _, v in recorded]
    page = world["new_page"]()
    page.goto(f"{world['url']}runs/7?smoothing=0.9")
    page.wait_for_function("() => window.cxRun.charts.loss && window.cxRun.charts.loss.frame")
    assert page.input_value("#smoothing") == "0.9" and page.text_content("#smoothing-value") == "0.90"
    drawn = page.evaluate(
        "() => window.cxRun.charts.loss.series.map(s => ({name: s.name, xs: s.xs, ys: s.ys, faint: !!s.faint}))"
    )
    raw = [s for s in drawn if s["name"] == "train_loss"]
    smoothed = [s for s in drawn if s["name"] == "train_loss (smoothed 0.9)"]
    assert raw and raw[0]["faint"] and raw[0]["ys"] == values and raw[0]["xs"] == steps
    assert smoothed and not smoothed[0]["faint"] and smoothed[0]["xs"] == steps
    expected = _ema(values, 0.9)
    assert max(abs(a - b) for a, b in zip(smoothed[0]["ys"], expected)) <= 1e-12 * max(map(abs, expected))
    test_loss = [s for s in drawn if s["name"] == "test_loss"]  # per-epoch metrics are drawn as recorded
    assert test_loss and not test_loss[0]["faint"] and len([s for s in drawn if s["name"].startswith("test_loss")]) == 1
    page.fill("#smoothing", "0")
    page.dispatch_event("#smoothing", "input")
    drawn = page.evaluate("() => window.cxRun.charts.loss.series.map(s => ({name: s.name, ys: s.ys, faint: !!s.faint}))")
    assert [s["name"] for s in drawn if s["name"].startswith("train_loss")] == ["train_loss"] and not any(
        s["faint"] for s in drawn
    )
    assert "smoothing" not in page.url
    page.close()


def test_export_the_curves_as_csv_and_the_filters_at_a_step_as_png(world, tmp_path):
    """Issue 28: export. The CSV equals the metrics table; the PNG decodes to the grid as drawn."""
    import csv
    import io
    import urllib.request

    import matplotlib.image

    page = world["new_page"]()
    page.goto(f"{world['url']}runs/7")
    page.wait_for_function("() => window.cxRun.state.steps.length > 0 && window.cxRun.state.snapshot")
    href = page.get_attribute("#curves-csv", "href")
    with urllib.request.urlopen(world["url"].rstrip("/") + href) as response:
        assert response.headers["Content-Type"].startswith("text/csv")
        assert 'filename="run-7-curves.csv"' in response.headers["Content-Disposition"]
        rows = list(csv.reader(io.StringIO(response.read().decode())))
    with sqlite3.connect(world["db"]) as connection:
        table = connection.execute(
            "SELECT step, epoch, name, value, wall_time FROM metrics WHERE run_id = 7 ORDER BY name, step"
        ).fetchall()
    assert rows[0] == ["step", "epoch", "name", "value", "wall_time"]
    # every value as recorded, bit for bit, with the time it was logged
    assert [(int(a), int(b), c, float(d), float(t)) for a, b, c, d, t in rows[1:]] == table
    with page.expect_download() as download:
        page.click("#grid-png")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    step = page.evaluate("() => window.cxRun.state.steps[window.cxRun.state.index]")
    assert saved.name == f"run-7-conv1-step-{step}.png"
    image = matplotlib.image.imread(saved)
    size = page.evaluate(
        "() => [document.getElementById('kernel-canvas').height, document.getElementById('kernel-canvas').width]"
    )
    assert list(image.shape[:2]) == size and image.std() > 0  # the grid as drawn, not a blank canvas
    page.close()


def test_the_experiment_page_takes_where_as_convexp_summary_does(world):
    summary = run_cli(
        "summary",
        "grid",
        "--by",
        "initializer",
        "--metric",
        "test_accuracy",
        "--where",
        "seed<2",
        "--db",
        str(world["db"]),
        "-f",
        "json",
    )
    assert summary.returncode == 0, summary.stderr
    rows = {r["initializer"]: r for r in json.loads(summary.stdout)}
    assert {r["n"] for r in rows.values()} == {2}  # seeds 0 and 1 of each initializer
    page = world["new_page"]()
    page.goto(f"{world['url']}experiments/grid?by=initializer&metric=test_accuracy")
    page.wait_for_selector("body[data-drawn='true']")
    page.fill("#where", "seed<2")
    page.click("#experiment-controls button")
    page.wait_for_url("**where=seed%3C2**")
    page.wait_for_selector("body[data-drawn='true']")
    view = json.loads(page.text_content("#experiment-data"))
    assert view["where"] == ["seed<2"] and page.input_value("#where") == "seed<2"
    expected = _ids(world["db"], "experiment = 'grid' AND json_extract(spec, '$.seed') < 2")
    assert sorted(str(i) for g in view["curves"]["groups"] for i in g["runs"]) == expected
    for row in view["summary"]["rows"]:
        assert row["n"] == rows[row["initializer"]]["n"] and row["mean"] == pytest.approx(rows[row["initializer"]]["mean"])
    answer = page.request.get(f"{world['url']}api/experiments/grid?by=initializer&where=seed%3E9")
    assert (
        answer.status == 400 and answer.json()["error"] == "no run of experiment 'grid' meets where seed>9"
    )  # the page's parameter, not the CLI's option
    page.close()
