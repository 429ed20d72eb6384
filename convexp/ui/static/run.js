// convexp ui, run page: training curves, the filter grid at any recorded step, one filter over time, live updates.
"use strict";

const RUN = JSON.parse(document.getElementById("run-data").textContent);
const LIVE = ["queued", "running"];
const CACHE_BYTES = 64 * 1024 * 1024;  // snapshots kept in the page for scrubbing back and forth
const PLAY_CHUNK = 64;                 // snapshots fetched ahead while playing

const state = {
  status: RUN.row.status, metrics: {}, lastMetricStep: -1,
  layer: null, shape: null, steps: [], epochs: new Map(), index: 0, grid: null, snapshot: null,
  cache: new Map(), cachedBytes: 0, limit: 1, playing: false, selected: null, analysisTimer: null,
};
const $ = (id) => document.getElementById(id);

// --- training curves -------------------------------------------------------------------------------

const charts = {};
function chartGroups() {
  const names = Object.keys(state.metrics);
  const loss = names.filter((n) => n.endsWith("loss"));
  const accuracy = names.filter((n) => n.endsWith("accuracy"));
  const other = names.filter((n) => !loss.includes(n) && !accuracy.includes(n));
  return { loss, accuracy, other };
}

// other runs of the experiment drawn on the same charts, dashed (run id -> its metrics); in the URL as ?overlay=
const overlays = new Map();

// --- the x axis: steps, epochs or wall time ------------------------------------------------------------

const xAxis = () => $("x-axis").value;
// the axis of a choice: steps, epochs, time, or another metric ("metric:NAME": each value against that metric's value
// at the same step, a metric-against-metric plot)
function axisOf(choice) {
  if (AXES[choice]) return AXES[choice];
  return { label: choice.slice("metric:".length), integer: false, format: (x) => String(Number(x.toPrecision(6))) };
}
// every metric recorded is a choice of x axis; the address's (x=metric:NAME) is taken once that metric is there
function addMetricAxes() {
  const select = $("x-axis"), have = new Set([...select.options].map((o) => o.value));
  for (const name of Object.keys(state.metrics).sort()) {
    if (!have.has(`metric:${name}`)) select.add(new Option(`${name} (a metric)`, `metric:${name}`));
  }
  const wanted = given.get("x");
  if (wanted && wanted.startsWith("metric:") && select.value === "step" && state.metrics[wanted.slice(7)] && !addMetricAxes.taken) {
    select.value = wanted; addMetricAxes.taken = true;
  }
}

// A run's steps as fractional epochs: a step k steps into epoch e (1-based) of n steps is e - 1 + k / n. Each
// epoch's end is the last step recorded with it (its per-epoch metrics sit there); the epoch under way is as long
// as the one before it (or as planned). null when the run records no epochs.
function epochScale(metrics, live, planned) {
  const ends = new Map();
  for (const m of Object.values(metrics)) m.epochs.forEach((e, i) => { if (!(ends.get(e) >= m.steps[i])) ends.set(e, m.steps[i]); });
  const epochs = [...ends.keys()].sort((a, b) => a - b);
  if (!epochs.length || epochs.every((e) => e === 0)) return null;
  const start = new Map(), length = new Map();
  let previousEnd = 0, previousLength = null;
  epochs.forEach((e, k) => {
    let n = ends.get(e) - previousEnd;
    if (k === epochs.length - 1 && live) n = previousLength || planned || n;
    start.set(e, previousEnd); length.set(e, Math.max(1, n));
    previousEnd = ends.get(e); previousLength = n;
  });
  return (step, epoch) => length.has(epoch) ? epoch - 1 + (step - start.get(epoch)) / length.get(epoch) : null;
}

// The x values of one metric of a run (`all`: every metric of that run) on the chosen axis; null where unknown.
function xsOf(all, metric, live, planned) {
  const axis = xAxis();
  if (axis === "epoch") {
    const scale = epochScale(all, live, planned);
    return scale ? metric.steps.map((s, i) => scale(s, metric.epochs[i])) : metric.steps.map(() => null);
  }
  if (axis === "time") {
    let first = Infinity;
    for (const m of Object.values(all)) for (const t of m.times || []) if (t !== null && t < first) first = t;
    return (metric.times || metric.steps.map(() => null)).map((t) => (t === null || !isFinite(first) ? null : t - first));
  }
  if (axis.startsWith("metric:")) {  // the other metric's value at each step both were recorded at
    const other = all[axis.slice("metric:".length)];
    if (!other) return metric.steps.map(() => null);
    const at = new Map(other.steps.map((s, i) => [s, other.values[i]]));
    return metric.steps.map((s) => at.has(s) ? at.get(s) : null);
  }
  return metric.steps;
}

// what the address said when the page opened (the page keeps its choices there: CX.setParam)
const given = new URLSearchParams(location.search);

function drawCharts() {
  const groups = chartGroups(), axis = axisOf(xAxis());
  const live = LIVE.includes(state.status);
  const planned = RUN.row.steps_planned && RUN.row.epochs_planned ? RUN.row.steps_planned / RUN.row.epochs_planned : null;
  const empty = xAxis() === "time" ? "no wall times: recorded before convexp kept them" : xAxis() === "epoch" ? "this run records no epochs"
    : xAxis().startsWith("metric:") ? `no step where ${xAxis().slice(7)} was recorded too` : null;
  for (const [title, names] of Object.entries(groups)) {
    if (!names.length) continue;
    const fresh = !charts[title];
    if (fresh) charts[title] = new LineChart($("charts"), { title, log: $("log-scale").checked, smoothing: smoothing() });
    charts[title].options.empty = empty;
    if (charts[title].options.xLabel !== axis.label) charts[title].setAxis(axis.label, axis.format, axis.integer);
    if (fresh) {  // its log scale and zoom as the address says (chart.TITLE=log,x0,x1), and kept there
      charts[title].applyState(given.get(`chart.${title}`));
      charts[title].options.onState = (chart) => CX.setParam(`chart.${title}`, chart.state());
    }
    // per-step metrics (train_*) are the noisy ones the smoothing slider is for
    const smooth = (n) => n.startsWith("train_");
    const series = names.map((n, k) => ({ name: n, xs: xsOf(state.metrics, state.metrics[n], live, planned), steps: state.metrics[n].steps,
      ys: state.metrics[n].values, colour: PALETTE[k % PALETTE.length], smooth: smooth(n) }));
    let k = names.length;
    for (const [id, metrics] of overlays) {
      for (const n of names) {
        if (metrics[n]) series.push({ name: `${n} · run ${id}`, xs: xsOf(metrics, metrics[n], false, null), steps: metrics[n].steps,
          ys: metrics[n].values, colour: PALETTE[k % PALETTE.length], dash: true, smooth: smooth(n) });
        k++;
      }
    }
    charts[title].setSeries(series);
  }
  if (!Object.keys(state.metrics).length && !charts.empty) {
    charts.empty = new LineChart($("charts"), { title: "metrics" });
    charts.empty.setSeries([]);
  } else if (Object.keys(state.metrics).length && charts.empty) {  // the first metrics came: their charts replace it
    charts.empty.box.remove();
    delete charts.empty;
  }
  layoutCharts();
}

// The charts share the width of the page: as many side by side as fit at 420 px or more, each as wide as its share.
function layoutCharts() {
  const width = $("charts").clientWidth, gap = 16;
  const columns = Math.max(1, Math.min(3, Math.floor((width + gap) / (420 + gap))));
  const each = Math.floor((width - (columns - 1) * gap) / columns) - 2;  // its border
  for (const chart of Object.values(charts)) chart.resize(Math.min(each, width - 2));
}
new ResizeObserver(() => layoutCharts()).observe($("charts"));
if (given.get("x") in AXES) $("x-axis").value = given.get("x");
$("x-axis").addEventListener("change", () => {
  CX.setParam("x", xAxis() !== "step" ? xAxis() : null);
  drawCharts();
});

async function loadMetrics() {
  const body = await CX.json(`/api/runs/${RUN.id}/metrics?after=${state.lastMetricStep}`);
  for (const [name, m] of Object.entries(body.metrics)) {
    const into = state.metrics[name] || (state.metrics[name] = { steps: [], epochs: [], values: [], times: [] });
    into.steps.push(...m.steps); into.epochs.push(...m.epochs); into.values.push(...m.values); into.times.push(...m.times);
  }
  state.lastMetricStep = Math.max(state.lastMetricStep, body.last_step);
  addMetricAxes();
  if (Object.keys(body.metrics).length || !Object.keys(charts).length) drawCharts();
  showRow(body.run);
}

function showRow(row) {
  state.status = row.status;
  const badge = $("run-status");
  badge.textContent = row.status; badge.dataset.status = row.status;
  $("run-progress").textContent = `${row.epochs} of ${row.epochs_planned} epoch(s), ${row.steps}` +
    (row.steps_planned ? ` of ${row.steps_planned}` : "") + " steps" +
    (row.test_accuracy !== null ? `, test accuracy ${CX.fmt(row.test_accuracy, 4)}` : "") +
    (row.status === "running" && row.seconds_left !== null ? `, about ${CX.duration(row.seconds_left)} left` : "") +
    (row.message ? ` · ${row.message}` : "");
  $("run-ended").textContent = row.ended ? `; ended ${row.ended}` : "";
}

if (given.get("log") === "1") $("log-scale").checked = true;
$("log-scale").addEventListener("change", (e) => {
  CX.setParam("log", e.target.checked ? "1" : null);
  Object.values(charts).forEach((c) => c.setLog(e.target.checked));
});

// smoothing of the per-step curves: 0 draws the recorded values; in the URL as ?smoothing=
function smoothing() { return Number($("smoothing").value) || 0; }
{
  const chosen = Number(given.get("smoothing"));
  if (chosen > 0 && chosen < 1) $("smoothing").value = String(chosen);
  $("smoothing-value").textContent = smoothing().toFixed(2);
}
$("smoothing").addEventListener("input", () => {
  $("smoothing-value").textContent = smoothing().toFixed(2);
  Object.values(charts).forEach((c) => c.setSmoothing(smoothing()));
  CX.setParam("smoothing", smoothing() > 0 ? smoothing() : null);
});

async function setOverlays(ids) {
  for (const id of [...overlays.keys()]) if (!ids.includes(id)) overlays.delete(id);
  for (const id of ids) if (!overlays.has(id)) overlays.set(id, (await CX.json(`/api/runs/${id}/metrics`)).metrics);
  CX.setParam("overlay", ids.length ? ids.join(",") : null);
  drawCharts();
  $("charts").dataset.overlays = ids.join(",");
}

if ($("overlay")) {
  const wanted = (given.get("overlay") || "").split(",").filter(Boolean);
  for (const option of $("overlay").options) option.selected = wanted.includes(option.value);
  $("overlay").addEventListener("change", () => setOverlays([...$("overlay").selectedOptions].map((o) => Number(o.value))));
  if (wanted.length) setOverlays(wanted.map(Number).filter((id) => RUN.siblings.some((s) => s.id === id)));
}

// --- the filter grid -------------------------------------------------------------------------------

function remember(snapshot) {
  if (state.cache.has(snapshot.step)) return;
  state.cache.set(snapshot.step, snapshot);
  state.cachedBytes += snapshot.values.byteLength;
  for (const [step, old] of state.cache) {  // oldest first
    if (state.cachedBytes <= CACHE_BYTES) break;
    state.cache.delete(step); state.cachedBytes -= old.values.byteLength;
  }
}

async function snapshotAt(index, ahead) {
  const step = state.steps[index];
  if (!state.cache.has(step)) {
    for (const s of await CX.kernels(RUN.id, state.layer, step, ahead || 1)) remember(s);
  }
  return state.cache.get(step);
}

function newGrid() {
  state.grid = new CX.KernelGrid($("kernel-canvas"), state.shape, $("view").value, null, 560, $("numbers").checked);
  if (state.snapshot) draw(state.snapshot);
}

function draw(snapshot) {
  state.snapshot = snapshot;
  if (!$("hold-scale").checked) state.limit = state.grid.maxAbs(snapshot.values);
  state.grid.draw(snapshot.values, state.limit);
  CX.colorbar($("colorbar"), $("scale-low"), $("scale-high"), state.limit);
  const canvas = $("kernel-canvas");
  canvas.dataset.step = snapshot.step; canvas.dataset.layer = state.layer; canvas.dataset.limit = state.limit;
  $("step-label").textContent = `step ${snapshot.step} (epoch ${snapshot.epoch}) · snapshot ${state.index + 1} of ${state.steps.length}`;
  trajectoryCharts.forEach((chart) => chart.setMarker(snapshot.step));  // the shown step on the filter's curves
  if (state.selected !== null) showValues();
  if (!state.playing) {
    scheduleAnalysis();
    CX.setParam("step", state.index === state.steps.length - 1 ? null : snapshot.step);  // the last step: no need to say
  }
}

// Show the snapshot at slider position `index` (the newest request wins if several are in flight).
async function show(index, ahead) {
  state.index = index;
  $("step-slider").value = index;
  try {
    const snapshot = await snapshotAt(index, ahead);
    if (state.index === index) draw(snapshot);
  } catch (error) {
    $("step-label").textContent = String(error.message || error);
  }
}

async function selectLayer(name) {
  state.layer = name; state.cache.clear(); state.cachedBytes = 0; state.selected = null; state.snapshot = null;
  $("filter-detail").hidden = true;
  const out = $("readout");  // a value read off the previous layer must not stand beside this one's grid
  out.textContent = ""; for (const key of Object.keys(out.dataset)) delete out.dataset[key];
  const body = await CX.json(`/api/runs/${RUN.id}/layers/${encodeURIComponent(name)}/steps`);
  state.shape = body.shape; state.steps = body.steps;
  // a layer over a colour image gets a view of its filters in colour, and starts in it
  const view = $("view"), colour = view.querySelector('option[value="colour"]');
  if (body.rgb && !colour) view.add(new Option("in colour (red, green, blue weights)", "colour"));
  if (!body.rgb && colour) colour.remove();
  view.value = body.rgb ? "colour" : state.shape[1] === 1 ? "filters" : "channels";
  $("step-slider").max = Math.max(0, state.steps.length - 1);
  newGrid();
  spread.body = null; spread.first = null; spread.histogram = null;
  loadDistribution().catch((error) => { $("dist-status").textContent = String(error.message || error); });
  CX.setParam("layer", name === RUN.conv_layers[0].layer ? null : name);
  CX.setParam("filter", null);  // a filter of another layer
  await show(state.steps.length - 1);
}

function readout(event) {
  if (!state.snapshot) return;
  const p = CX.canvasPoint($("kernel-canvas"), event);
  const hit = state.grid.hit(p.x, p.y);
  const out = $("readout");
  if (!hit) return;
  const value = state.grid.cellValue(state.snapshot.values, hit.filter, hit.channel, hit.i, hit.j);
  const where = hit.channel === null ? `mean over ${state.shape[1]} channels` : `channel ${hit.channel}`;
  out.textContent = `${state.layer} · step ${state.snapshot.step} · filter ${hit.filter} · ${where} · row ${hit.i}, col ${hit.j} · ${value.toPrecision(9)}`;
  Object.assign(out.dataset, { layer: state.layer, step: state.snapshot.step, filter: hit.filter, channel: hit.channel === null ? "mean" : hit.channel,
    row: hit.i, col: hit.j, value: String(value) });
}

// --- one filter ----------------------------------------------------------------------------------

// The selected filter's values at the shown step, for the chosen channel or the mean over its channels
// (what its cell shows in the one-cell-per-filter view).
function showValues() {
  const [, inC, kh, kw] = state.shape, f = state.selected.filter, c = state.selected.channel;
  const table = $("detail-values");
  table.innerHTML = "";
  for (let i = 0; i < kh; i++) {
    const tr = table.insertRow();
    for (let j = 0; j < kw; j++) {
      const td = tr.insertCell();
      const v = state.grid.cellValue(state.snapshot.values, f, c, i, j);
      td.textContent = v.toPrecision(6); td.dataset.value = String(v);
    }
  }
  table.dataset.step = state.snapshot.step;
  table.dataset.channel = c === null ? "mean" : c;
  const which = c === null ? `mean over ${inC} channels` : `channel ${c}`;
  $("detail-title").textContent = `filter ${f}, ${which} at step ${state.snapshot.step}`;
}

let trajectoryCharts = [], trajectory = null;
async function selectFilter(hit) {
  const [, inC] = state.shape;
  state.selected = { filter: hit.filter, channel: hit.channel };
  CX.setParam("filter", hit.filter);
  const choice = $("detail-channel");
  choice.replaceChildren(...(inC > 1 ? [new Option(`mean over ${inC} channels`, "mean")] : []),
    ...Array.from({ length: inC }, (_, c) => new Option(`channel ${c}`, String(c))));
  choice.value = hit.channel === null ? "mean" : String(hit.channel);
  choice.parentElement.hidden = inC === 1;  // one channel: nothing to choose
  $("filter-detail").hidden = false;
  showValues();
  trajectory = await CX.json(`/api/runs/${RUN.id}/layers/${encodeURIComponent(state.layer)}/filters/${hit.filter}`);
  drawTrajectory();
}

function drawTrajectory() {
  const body = trajectory, [inC, kh, kw] = body.shape, c = state.selected.channel;
  const weights = [];
  for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) {
    const at = (v, ch) => v[(ch * kh + i) * kw + j];
    const ys = body.values.map((v) => c !== null ? at(v, c) : Array.from({ length: inC }, (_, ch) => at(v, ch)).reduce((a, b) => a + b, 0) / inC);
    weights.push({ name: `w[${i},${j}]`, xs: body.steps, ys });
  }
  $("trajectory").innerHTML = "";
  const which = c === null ? `mean over ${inC} channels` : `channel ${c}`;
  trajectoryCharts = [
    new LineChart($("trajectory"), { title: `filter ${body.filter}, ${which}: weights over steps`, width: 420, height: 200, legend: kh * kw <= 9 }),
    new LineChart($("trajectory"), { title: `filter ${body.filter}: drift ||w_t - w_0|| / ||w_0|| (all ${inC} channels)`, width: 420, height: 160 }),
  ];
  trajectoryCharts[0].setSeries(weights);
  trajectoryCharts[1].setSeries([{ name: "drift", xs: body.steps, ys: body.drift }]);
  if (state.snapshot) trajectoryCharts.forEach((chart) => chart.setMarker(state.snapshot.step));
}

// --- analysis of the shown step ------------------------------------------------------------------------

// The table always says which step it describes: while the shown step's analysis is on its way, the
// table is marked stale (greyed, "analysing step N") instead of passing off another step's as this one's.
function scheduleAnalysis() {
  clearTimeout(state.analysisTimer);
  const table = $("analysis-table");
  if (state.snapshot && table.dataset.step !== String(state.snapshot.step)) {
    table.classList.add("stale");
    $("analysis-state").textContent = `analysing step ${state.snapshot.step}…`;
  }
  state.analysisTimer = setTimeout(loadAnalysis, 150);
}

async function loadAnalysis() {
  if (!state.snapshot) return;
  // the shown step on the spread's chart: redrawn once scrubbing rests, like the analysis, not on every move
  if (spread.chart) spread.chart.setMarker(state.snapshot.step);
  loadHistogram().catch((error) => { $("histogram-readout").textContent = String(error.message || error); });
  const step = state.snapshot.step, layer = state.layer;
  const body = await CX.json(`/api/runs/${RUN.id}/layers/${encodeURIComponent(layer)}/analysis?step=${step}`);
  if (!state.snapshot || state.snapshot.step !== step || state.layer !== layer) return;
  const table = $("analysis-table"), tbody = table.tBodies[0];
  tbody.innerHTML = "";
  table.dataset.step = step; table.classList.remove("stale");
  $("analysis-state").textContent = `step ${step}`;
  if (body.unavailable) { $("analysis-summary").textContent = body.unavailable; return; }
  const pct = (x) => `${Math.round(100 * x)}%`;
  const channels = state.shape[1];
  // for a layer with several input channels, say what is compared: the mean over them, which for a deep
  // layer says little (its top patches, below, show what a filter responds to)
  $("analysis-summary").textContent = (channels > 1 ? `Each filter's mean over its ${channels} input channels, compared with ` +
    `${state.shape[2]}x${state.shape[3]} operators (for a layer on feature maps this says little of what a filter responds to: see its top patches below). ` : "") +
    `Edge-like (best match an edge operator with correlation >= 0.8): ` +
    `step ${body.first_step}: ${body.first_edge_like}/${body.filters_count} (${pct(body.first_edge_share)}), ` +
    `step ${body.step}: ${body.edge_like}/${body.filters_count} (${pct(body.edge_share)})`;
  $("analysis-summary").dataset.step = body.step;
  const gabor = body.filters.some((f) => f.gabor);
  $("analysis-table").querySelector("th.gabor").hidden = !gabor;
  for (const f of body.filters) {
    const tr = tbody.insertRow();
    const cells = [f.filter, f.best_operator, f.correlation, f.edge_like ? "yes" : "", f.norm, f.orientation_deg];
    if (gabor) cells.push(f.gabor ? `${f.gabor.orientation_deg}°, λ ${f.gabor.wavelength}, R² ${f.gabor.r2}` : "");
    for (const v of cells) tr.insertCell().textContent = v;
  }
}

// --- the spread of the layer's values over steps, and at the shown step -----------------------------------

const spread = { chart: null, body: null, histogram: null, first: null, loadedAt: 0 };
const BANDS = [[0, 8, "min–max"], [1, 7, "6.7–93.3%"], [2, 6, "15.9–84.1%"], [3, 5, "30.9–69.1%"]];

async function loadDistribution() {
  const layer = state.layer;
  spread.loadedAt = Date.now();
  const body = await CX.json(`/api/runs/${RUN.id}/layers/${encodeURIComponent(layer)}/distribution`);
  if (layer !== state.layer) return;
  spread.body = body;
  $("dist-status").textContent = body.steps.length < body.recorded
    ? `${body.steps.length} of ${body.recorded} recorded steps, evenly spread` : `all ${body.recorded} recorded steps`;
  drawDistribution();
}

function drawDistribution() {
  const body = spread.body, which = $("dist-of").value, of = which === "kernel" ? "weights" : "biases";
  if (!spread.chart) spread.chart = new LineChart($("distribution"), { title: "", width: 560, height: 240 });
  const chart = spread.chart;
  chart.options.title = `${state.layer} ${of} over steps`;
  const d = body && body[which];
  chart.options.empty = body && !d ? `${state.layer} has no bias` : "loading…";
  const column = (k) => d.values.map((v) => v[k]);
  const colour = which === "kernel" ? "#1f77b4" : "#d62728";
  chart.setSeries(!d ? [] : [
    ...BANDS.map(([low, high, name]) => ({ name, xs: body.steps, ys: body.steps.map(() => null), lows: column(low), highs: column(high), colour, legend: false })),
    { name: "median", xs: body.steps, ys: column(4), colour, width: 1.6 },
  ]);
  if (state.snapshot) chart.setMarker(state.snapshot.step);
  $("distribution").dataset.layer = state.layer; $("distribution").dataset.of = which;
}

async function loadHistogram() {
  if (!state.snapshot) return;
  const step = state.snapshot.step, layer = state.layer, url = `/api/runs/${RUN.id}/layers/${encodeURIComponent(layer)}/histogram`;
  const [shown, first] = await Promise.all([CX.json(`${url}?step=${step}`), spread.first && spread.first.layer === layer ? spread.first : CX.json(`${url}?step=first`)]);
  if (!state.snapshot || state.snapshot.step !== step || state.layer !== layer) return;
  spread.histogram = shown; spread.first = first;
  drawHistogram();
}

// The shown step's histogram as bars, the first step's as an outline, on one x range; hover reads a bin.
function drawHistogram() {
  const canvas = $("histogram"), ctx = canvas.getContext("2d"), theme = CX.theme(), which = $("dist-of").value;
  const shown = spread.histogram && spread.histogram[which], first = spread.first && spread.first[which];
  const W = canvas.width, H = canvas.height, left = 44, right = 8, top = 18, bottom = 26;
  ctx.clearRect(0, 0, W, H);
  ctx.font = "11px sans-serif"; ctx.fillStyle = theme.fg;
  if (!shown) { ctx.fillStyle = theme.muted; ctx.fillText(spread.histogram ? `${state.layer} has no bias` : "", left, H / 2); return; }
  ctx.fillText(`${state.layer} ${which === "kernel" ? "weights" : "biases"} at step ${spread.histogram.step} (${shown.size} values)` +
    (first ? `; outline: step ${spread.first.step}` : ""), left, 12);
  const all = [shown, first].filter(Boolean);
  const x0 = Math.min(...all.map((h) => h.edges[0])), x1 = Math.max(...all.map((h) => h.edges[h.edges.length - 1]));
  const y1 = Math.max(1, ...all.flatMap((h) => h.counts));
  const span = x1 > x0 ? x1 - x0 : 1;
  const px = (x) => left + (x - x0) / span * (W - left - right), py = (c) => H - bottom - c / y1 * (H - top - bottom);
  ctx.strokeStyle = theme.line; ctx.beginPath(); ctx.moveTo(left, H - bottom); ctx.lineTo(W - right, H - bottom); ctx.stroke();
  ctx.fillStyle = which === "kernel" ? "#1f77b4" : "#d62728"; ctx.globalAlpha = 0.75;
  shown.counts.forEach((c, i) => ctx.fillRect(px(shown.edges[i]), py(c), Math.max(1, px(shown.edges[i + 1]) - px(shown.edges[i]) - 1), H - bottom - py(c)));
  ctx.globalAlpha = 1;
  if (first) {
    ctx.strokeStyle = theme.fg; ctx.beginPath(); ctx.moveTo(px(first.edges[0]), py(0));
    first.counts.forEach((c, i) => { ctx.lineTo(px(first.edges[i]), py(c)); ctx.lineTo(px(first.edges[i + 1]), py(c)); });
    ctx.lineTo(px(first.edges[first.edges.length - 1]), py(0)); ctx.stroke();
  }
  ctx.fillStyle = theme.muted;
  for (const x of niceTicks(x0, x1, 5, false)) { ctx.textAlign = "center"; ctx.fillText(String(Number(x.toPrecision(3))), px(x), H - 10); }
  ctx.textAlign = "right"; ctx.fillText(String(y1), left - 4, top + 4); ctx.fillText("0", left - 4, H - bottom); ctx.textAlign = "left";
  canvas.dataset.step = spread.histogram.step; canvas.dataset.of = which;
  spread.frame = { px, x0, span, left, right, W, shown };
}

$("histogram") && $("histogram").addEventListener("mousemove", (event) => {
  const f = spread.frame;
  if (!f) return;
  const x = f.x0 + (CX.canvasPoint($("histogram"), event).x - f.left) / (f.W - f.left - f.right) * f.span;
  const i = f.shown.edges.findIndex((e, k) => k < f.shown.counts.length && x >= e && x <= f.shown.edges[k + 1]);
  if (i < 0) return;
  $("histogram-readout").textContent = `[${f.shown.edges[i].toPrecision(6)}, ${f.shown.edges[i + 1].toPrecision(6)}${i === f.shown.counts.length - 1 ? "]" : ")"}: ${f.shown.counts[i]} values`;
});

// --- top patches ---------------------------------------------------------------------------------------

const PATCH_ZOOM = 3;     // screen pixels per input pixel
const PATCH_COLUMNS = 8;  // filters per row

async function loadPatches() {
  if (!state.snapshot) return;
  const step = state.snapshot.step, layer = state.layer, top = $("patches-top").value;
  $("patches-status").textContent = `replaying ${layer} at step ${step} over the test images...`;
  $("patches-button").disabled = true;
  try {
    const body = await CX.json(`/api/runs/${RUN.id}/layers/${encodeURIComponent(layer)}/patches?step=${step}&top=${top}`);
    drawPatches(body);
    $("patches-status").textContent = `${layer} at step ${body.step}: ${body.receptive_field.size.join("x")} receptive field, ` +
      `${body.images_searched} test images searched; hover a patch`;
    $("patches-status").dataset.step = body.step;
  } catch (error) {
    $("patches-status").textContent = error.message;
  } finally {
    $("patches-button").disabled = false;
  }
}

function drawPatches(body) {
  const [h, w] = body.receptive_field.size;
  const top = body.filters[0].patches.length, per = Math.ceil(Math.sqrt(top));
  const cellW = per * (w * PATCH_ZOOM + 1) + 6, cellH = Math.ceil(top / per) * (h * PATCH_ZOOM + 1) + 18;
  const canvas = $("patches-canvas");
  const rows = Math.ceil(body.filters.length / PATCH_COLUMNS);
  canvas.width = PATCH_COLUMNS * cellW; canvas.height = rows * cellH; canvas.hidden = false;
  canvas.dataset.layer = body.layer; canvas.dataset.step = body.step; $("patches-png").hidden = false;
  const ctx = canvas.getContext("2d");
  const theme = CX.theme();
  ctx.fillStyle = theme.bg; ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.font = "11px sans-serif"; ctx.fillStyle = theme.fg;
  const boxes = [];
  body.filters.forEach((f, k) => {
    const x0 = (k % PATCH_COLUMNS) * cellW, y0 = Math.floor(k / PATCH_COLUMNS) * cellH;
    ctx.fillStyle = theme.fg; ctx.fillText(String(f.filter), x0 + 2, y0 + 12);
    f.patches.forEach((p, r) => {
      const px = x0 + (r % per) * (w * PATCH_ZOOM + 1), py = y0 + 16 + Math.floor(r / per) * (h * PATCH_ZOOM + 1);
      const image = ctx.createImageData(w * PATCH_ZOOM, h * PATCH_ZOOM);
      for (let y = 0; y < h * PATCH_ZOOM; y++) for (let x = 0; x < w * PATCH_ZOOM; x++) {
        const v = Math.round(255 * Math.min(1, Math.max(0, p.pixels[Math.floor(y / PATCH_ZOOM) * w + Math.floor(x / PATCH_ZOOM)])));
        const o = 4 * (y * w * PATCH_ZOOM + x);
        image.data[o] = image.data[o + 1] = image.data[o + 2] = v; image.data[o + 3] = 255;
      }
      ctx.putImageData(image, px, py);
      boxes.push({ x: px, y: py, w: w * PATCH_ZOOM, h: h * PATCH_ZOOM, filter: f.filter, rank: r, patch: p });
    });
  });
  canvas.onmousemove = (e) => {
    const rect = canvas.getBoundingClientRect();
    const x = (e.clientX - rect.left) * canvas.width / rect.width, y = (e.clientY - rect.top) * canvas.height / rect.height;
    const box = boxes.find((b) => x >= b.x && x < b.x + b.w && y >= b.y && y < b.y + b.h);
    $("patches-readout").textContent = box ? `filter ${box.filter}, #${box.rank + 1}: test image ${box.patch.image} ` +
      `(label ${box.patch.label}), unit (${box.patch.row}, ${box.patch.col}), window at (${box.patch.top}, ${box.patch.left}), ` +
      `response ${box.patch.response.toPrecision(5)}` : "";
  };
}

// --- playing -----------------------------------------------------------------------------------------

async function play() {
  // each play is its own loop: a Pause then Play while the last frame is still loading ends the old
  // loop at its next turn instead of leaving two loops stepping (which doubled the speed)
  const loop = {};
  state.playing = loop;
  $("play").textContent = "Pause";
  if (state.index >= state.steps.length - 1) state.index = -1;
  let next = performance.now();
  while (state.playing === loop && state.index < state.steps.length - 1) {
    const interval = 1000 / Number($("speed").value);
    await show(state.index + 1, PLAY_CHUNK);
    next += interval;
    const wait = next - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait)); else next = performance.now();
  }
  if (state.playing === loop) stop();
}

function stop() {
  state.playing = null;
  $("play").textContent = "Play";
  scheduleAnalysis();
}

// --- live updates ------------------------------------------------------------------------------------

async function poll() {
  const wasLive = LIVE.includes(state.status);
  try {
    await loadMetrics();
    if (state.layer) {
      const last = state.steps.length ? state.steps[state.steps.length - 1] : -1;
      const body = await CX.json(`/api/runs/${RUN.id}/layers/${encodeURIComponent(state.layer)}/steps?after=${last}`);
      if (body.steps.length) {
        const atEnd = state.index >= state.steps.length - 1;
        state.steps.push(...body.steps);
        $("step-slider").max = state.steps.length - 1;
        if (Date.now() - spread.loadedAt > 5000) loadDistribution().catch(() => {});  // a live run: its spread, every few seconds
        if (atEnd && $("follow").checked && !state.playing) await show(state.steps.length - 1);
        else $("step-label").textContent = $("step-label").textContent.replace(/of \d+$/, `of ${state.steps.length}`);
      }
    } else if (RUN.conv_layers.length === 0) {
      const detail = await CX.json(`/api/runs/${RUN.id}`);
      if (detail.conv_layers.length) location.reload();  // the first snapshots arrived: build the filter section
    }
  } catch (error) { /* the next poll tries again */ }
  if (wasLive && LIVE.includes(state.status)) setTimeout(poll, 1000);
}

// --- wiring ------------------------------------------------------------------------------------------

if (RUN.conv_layers.length) {
  $("layer").addEventListener("change", (e) => selectLayer(e.target.value));
  $("patches-button").addEventListener("click", loadPatches);
  $("view").addEventListener("change", newGrid);
  $("numbers").addEventListener("change", newGrid);
  $("dist-of").addEventListener("change", () => { drawDistribution(); drawHistogram(); });
  $("detail-channel").addEventListener("change", (e) => {
    state.selected.channel = e.target.value === "mean" ? null : Number(e.target.value);
    showValues();
    if (trajectory) drawTrajectory();
  });
  $("hold-scale").addEventListener("change", () => state.snapshot && draw(state.snapshot));
  $("step-slider").addEventListener("input", (e) => { if (state.playing) stop(); show(Number(e.target.value)); });
  $("play").addEventListener("click", () => (state.playing ? stop() : play()));
  $("kernel-canvas").addEventListener("mousemove", readout);
  $("kernel-canvas").addEventListener("click", (e) => {
    const p = CX.canvasPoint($("kernel-canvas"), e);
    const hit = state.grid && state.grid.hit(p.x, p.y);
    if (hit) selectFilter(hit);
  });
  $("step-box").addEventListener("keydown", (e) => {
    if (e.key !== "Enter" || !state.steps.length) return;
    if (state.playing) stop();
    show(nearestIndex(Number(e.target.value)));
  });
  // keys work unless a box or a list has the focus (typing there is typing)
  document.addEventListener("keydown", (e) => {
    if (!state.steps.length || e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === " ") { e.preventDefault(); state.playing ? stop() : play(); return; }
    const by = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
    if (!by) return;
    e.preventDefault();
    if (state.playing) stop();
    show(Math.max(0, Math.min(state.steps.length - 1, state.index + by * (e.shiftKey ? 10 : 1))));
  });
  // the layer, step and filter the address names (a reload comes back to them), else the first layer's last step
  const layer = RUN.conv_layers.some((l) => l.layer === given.get("layer")) ? given.get("layer") : RUN.conv_layers[0].layer;
  $("layer").value = layer;
  selectLayer(layer).then(async () => {
    if (given.has("step") && state.steps.length) await show(nearestIndex(Number(given.get("step"))));
    const filter = Number(given.get("filter"));
    if (given.has("filter") && Number.isInteger(filter) && filter >= 0 && filter < state.shape[0]) {
      await selectFilter({ filter, channel: null });
    }
  });
}

// The position of the recorded step nearest to ``step`` (a thinned run lacks most steps).
function nearestIndex(step) {
  let best = 0;
  state.steps.forEach((s, i) => { if (Math.abs(s - step) < Math.abs(state.steps[best] - step)) best = i; });
  return best;
}
loadMetrics().then(() => { if (LIVE.includes(state.status)) setTimeout(poll, 1000); });
if ($("grid-png")) {
  $("grid-png").addEventListener("click", () => CX.savePng($("kernel-canvas"), `run-${RUN.id}-${state.layer}-step-${state.steps[state.index]}.png`));
  $("patches-png").addEventListener("click", () => {
    const canvas = $("patches-canvas");
    CX.savePng(canvas, `run-${RUN.id}-${canvas.dataset.layer}-step-${canvas.dataset.step}-patches.png`);
  });
}

// export: a GIF of the filter grid over a range of steps, made by the app (the link follows the boxes and the layer)
function gifLink() {
  const from = $("gif-from").value, to = $("gif-to").value, query = new URLSearchParams();
  if (from !== "") query.set("from", from);
  if (to !== "") query.set("to", to);
  $("gif-link").href = `/runs/${RUN.id}/layers/${encodeURIComponent(state.layer)}/filters.gif${query.toString() ? "?" + query : ""}`;
}
if ($("gif-link")) {
  for (const id of ["gif-from", "gif-to"]) $(id).addEventListener("input", gifLink);
  $("layer").addEventListener("change", gifLink);
  $("gif-link").addEventListener("click", gifLink);
}

window.cxRun = { state, show, selectLayer, selectFilter, charts, trajectoryCharts: () => trajectoryCharts, spread };
