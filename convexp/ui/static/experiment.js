// convexp ui, experiment page: each group's mean curve with its 95% band, single runs on demand; the view lives in the URL.
"use strict";

const VIEW = JSON.parse(document.getElementById("experiment-data").textContent);
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
$("single-runs").checked = params.get("runs") === "1";

const chart = new LineChart($("group-chart"), { title: VIEW.curves.quantity, width: 900, height: 380 });
chart.canvas.id = "group-canvas";

function draw() {
  const series = [];
  VIEW.curves.groups.forEach((g, n) => {
    const colour = PALETTE[n % PALETTE.length];
    if ($("single-runs").checked) {
      for (const [id, run] of Object.entries(g.runs)) {
        series.push({ name: `run ${id}`, xs: run.steps, ys: run.values, colour: colour, width: 0.6, faint: true, legend: false });
      }
    }
    series.push({ name: g.label, xs: g.steps, ys: g.mean, lows: g.ci_low, highs: g.ci_high, ns: g.n, colour: colour, width: 2 });
  });
  chart.setSeries(series);
}

// the form's choices, kept in the URL so that a view can be shared
function go() {
  const next = new URLSearchParams();
  const by = [...$("by").selectedOptions].map((o) => o.value);
  if (by.length) next.set("by", by.join(","));
  for (const key of ["metric", "measure", "layer"]) if ($(key).value) next.set(key, $(key).value);
  if ($("where").value.trim()) next.set("where", $("where").value.trim());
  if ($("single-runs").checked) next.set("runs", "1");
  location.search = next.toString();
}

$("experiment-controls").addEventListener("submit", (event) => { event.preventDefault(); go(); });
$("metric").addEventListener("change", () => { if ($("metric").value) $("measure").value = ""; });
$("measure").addEventListener("change", () => { if ($("measure").value) $("metric").value = ""; });
$("single-runs").addEventListener("change", () => {
  const next = new URLSearchParams(location.search);
  if ($("single-runs").checked) next.set("runs", "1"); else next.delete("runs");
  history.replaceState(null, "", `${location.pathname}?${next}`);
  draw();
});
draw();
document.body.dataset.drawn = "true";
window.cxReadyAt = performance.now();  // ms since the navigation began: when the page is drawn (benchmarks/ui.py)
