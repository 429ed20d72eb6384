// convexp ui, experiment page: each group's mean curve with its 95% band, single runs on demand; the view lives in the URL.
"use strict";

const VIEW = JSON.parse(document.getElementById("experiment-data").textContent);
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
$("single-runs").checked = params.get("runs") === "1";

const smoothing = () => Number($("smoothing").value) || 0;
{
  const given = Number(params.get("smoothing"));
  if (given > 0 && given < 1) $("smoothing").value = String(given);
  $("smoothing-value").textContent = smoothing().toFixed(2);
}
const chart = new LineChart($("group-chart"), { title: VIEW.curves.quantity, width: 900, height: 380, smoothing: smoothing() });
chart.canvas.id = "group-canvas";

// x by step, by epoch or by wall time (?x=epoch, ?x=time), through each group's clock from the app
if (["epoch", "time"].includes(params.get("x"))) $("x-axis").value = params.get("x");
function xsOf(steps, clock) {
  const axis = $("x-axis").value;
  if (axis === "epoch") {  // a step k steps into epoch e of n steps: e - 1 + k / n
    const ends = clock.epoch_ends;
    return steps.map((s) => {
      if (s === 0) return 0;
      const k = ends.findIndex(([, end]) => end >= s);
      if (k < 0) return null;
      const before = k ? ends[k - 1][1] : 0, [epoch, end] = ends[k];
      return epoch - 1 + (s - before) / (end - before);
    });
  }
  if (axis === "time") {  // the mean seconds since each run's first value, between the steps that logged one
    const at = clock.seconds;
    return steps.map((s) => {
      const k = at.findIndex(([step]) => step >= s);
      if (k < 0 || (k === 0 && at[0][0] !== s)) return null;
      if (at[k][0] === s) return at[k][1];
      const [s0, t0] = at[k - 1], [s1, t1] = at[k];
      return t0 + (t1 - t0) * (s - s0) / (s1 - s0);
    });
  }
  return steps;
}

function draw() {
  const series = [], axis = AXES[$("x-axis").value];
  if (chart.options.xLabel !== axis.label) chart.setAxis(axis.label, axis.format, axis.integer);
  VIEW.curves.groups.forEach((g, n) => {
    const colour = PALETTE[n % PALETTE.length], clock = VIEW.clocks[g.label];
    if ($("single-runs").checked) {
      for (const [id, run] of Object.entries(g.runs)) {
        series.push({ name: `run ${id}`, xs: xsOf(run.steps, clock), steps: run.steps, ys: run.values, colour: colour, width: 0.6, faint: true, legend: false });
      }
    }
    series.push({ name: g.label, xs: xsOf(g.steps, clock), steps: g.steps, ys: g.mean, lows: g.ci_low, highs: g.ci_high, ns: g.n, colour: colour, width: 2, smooth: true });
  });
  chart.setSeries(series);
}
$("x-axis").addEventListener("change", () => {
  CX.setParam("x", $("x-axis").value !== "step" ? $("x-axis").value : null);
  draw();
});

// the form's choices, kept in the URL so that a view can be shared
function go() {
  const next = new URLSearchParams();
  const by = [...$("by").selectedOptions].map((o) => o.value);
  if (by.length) next.set("by", by.join(","));
  for (const key of ["metric", "measure", "layer"]) if ($(key).value) next.set(key, $(key).value);
  if ($("where").value.trim()) next.set("where", $("where").value.trim());
  if ($("single-runs").checked) next.set("runs", "1");
  if (smoothing() > 0) next.set("smoothing", String(smoothing()));
  if ($("x-axis").value !== "step") next.set("x", $("x-axis").value);
  if (params.get("sweep-x")) next.set("sweep-x", params.get("sweep-x"));
  location.search = next.toString();
}

$("experiment-controls").addEventListener("submit", (event) => { event.preventDefault(); go(); });
$("smoothing").addEventListener("input", () => {
  $("smoothing-value").textContent = smoothing().toFixed(2);
  chart.setSmoothing(smoothing());
  CX.setParam("smoothing", smoothing() > 0 ? smoothing() : null);
});
$("metric").addEventListener("change", () => { if ($("metric").value) $("measure").value = ""; });
$("measure").addEventListener("change", () => { if ($("measure").value) $("metric").value = ""; });
$("single-runs").addEventListener("change", () => {
  CX.setParam("runs", $("single-runs").checked ? "1" : null);
  draw();
});
draw();

// a sweep seen whole: parallel coordinates (brushing an axis keeps a range of runs) and a scatter, linked
window.cxExperiment = { chart: chart };
if (VIEW.sweep) {
  const selection = $("sweep-selection");
  const total = VIEW.sweep.rows.length;
  const scatter = new ScatterChart($("scatter-chart"), VIEW.sweep, { width: 640, height: 340 });
  const showSelection = (ids) => {
    selection.dataset.count = String(ids.length);
    selection.textContent = ids.length === total ? `all ${total} runs; ` : `${ids.length} of ${total} runs: `;
    [...ids].sort((a, b) => a - b).forEach((id, n) => {
      const link = document.createElement("a");
      link.href = `/runs/${id}`; link.textContent = String(id);
      selection.append(n ? ", " : "", link);
    });
    scatter.setKept(ids.length === total ? null : ids);
  };
  const parallel = new ParallelChart($("parallel-chart"), VIEW.sweep, { width: 900, height: 340, onSelect: showSelection });
  const chosen = params.get("sweep-x");
  if (chosen && VIEW.sweep.fields.includes(chosen)) { $("scatter-x").value = chosen; scatter.setField(chosen); }
  $("scatter-x").addEventListener("change", () => {
    scatter.setField($("scatter-x").value);
    const next = new URLSearchParams(location.search);
    next.set("sweep-x", $("scatter-x").value);
    history.replaceState(null, "", `${location.pathname}?${next}`);
  });
  showSelection(parallel.selected());
  Object.assign(window.cxExperiment, { parallel: parallel, scatter: scatter });
}
document.body.dataset.drawn = "true";
window.cxReadyAt = performance.now();  // ms since the navigation began: when the page is drawn (benchmarks/ui.py)
