// convexp ui, compare page: each run's filters at the compared step, in the order of the Hungarian matching; one
// slider scrubs every run together, the colour scale is shared by a layer or each run's own, the runs sit in a
// grid or one row.
"use strict";

const COMPARISON = JSON.parse(document.getElementById("compare-data").textContent);
const $ = (id) => document.getElementById(id);
const RUNS = COMPARISON.run_rows;
const params = new URLSearchParams(location.search);

// per layer: its section, canvases, the matching orders, each run's recorded steps and the snapshots shown
const layers = COMPARISON.layers.map((layer) => {
  const row = document.querySelector(`.compare-row[data-layer="${CSS.escape(layer.layer)}"]`);
  return { layer, row, canvases: [...row.querySelectorAll("canvas")], steps: null, shown: [], grids: [], cache: new Map() };
});
let allSteps = [];

// The snapshots the page came with (each run's at its compared step): drawn without asking the app again.
layers.forEach((L) => (COMPARISON.kernels[L.layer.layer] || []).forEach((s, k) => {
  const bytes = Uint8Array.from(atob(s.kernel), (c) => c.charCodeAt(0)), view = new DataView(bytes.buffer);
  const values = new Float32Array(bytes.length / 4);
  for (let i = 0; i < values.length; i++) values[i] = view.getFloat32(4 * i, true);  // little-endian, as stored
  L.cache.set(`${k}:${s.step}`, Promise.resolve({ step: s.step, epoch: s.epoch, shape: s.shape, values }));
}));

// run k's filter matched to each of the first run's filters 0, 1, ...: the matching convexp compare reports
const orderOf = (layer, k) => layer.matches[k].slice().sort((a, b) => a.filter - b.filter).map((m) => m.matched_filter);

// The recorded step of a run shown at slider step `step`: the last one at or before it (else its first).
function stepAt(steps, step) {
  let best = steps[0];
  for (const s of steps) { if (s <= step) best = s; else break; }
  return best;
}

async function snapshot(L, k, step) {
  const key = `${k}:${step}`;
  if (!L.cache.has(key)) {
    if (L.cache.size > 256) L.cache.delete(L.cache.keys().next().value);
    L.cache.set(key, CX.kernels(RUNS[k].id, L.layer.layer, step, 1).then((s) => s[0]));
  }
  return L.cache.get(key);
}

function width(L) {  // one row: every run fits the page's width; a grid: 360 px each, wrapping
  if ($("layout").value !== "row") return 360;
  const available = L.row.clientWidth - 24 * (RUNS.length - 1);
  return Math.max(120, Math.floor(available / RUNS.length));
}

async function drawLayer(L, steps) {
  const snapshots = await Promise.all(steps.map((s, k) => snapshot(L, k, s)));
  L.shown = snapshots;
  L.grids = snapshots.map((s, k) => new CX.KernelGrid(L.canvases[k], s.shape, "filters", orderOf(L.layer, k), width(L), $("numbers").checked));
  const limits = L.grids.map((g, k) => g.maxAbs(snapshots[k].values));  // what each run draws
  const shared = Math.max(...limits), perRun = $("scale-mode").value === "run";
  L.row.dataset.limit = shared;
  snapshots.forEach((s, k) => {
    const limit = perRun ? limits[k] : shared;
    L.grids[k].draw(s.values, limit);
    const canvas = L.canvases[k], caption = canvas.nextElementSibling;
    Object.assign(canvas.dataset, { order: orderOf(L.layer, k).join(","), step: s.step, limit });
    caption.querySelector(".shown-step").textContent = `step ${s.step}`;
    caption.querySelector(".scale").textContent = perRun ? `scale ±${limit.toPrecision(4)}` : "";
  });
  const bar = L.row.nextElementSibling;
  bar.hidden = perRun;  // a shared scale has one colour bar; each run's own is in its caption
  if (!perRun) CX.colorbar(bar.querySelector("canvas"), bar.querySelector(".scale-low"), bar.querySelector(".scale-high"), shared);
  L.row.dataset.drawn = "true";
}

function readout(L, k, event) {
  const grid = L.grids[k], s = L.shown[k];
  if (!grid || !s) return;
  const p = CX.canvasPoint(L.canvases[k], event), hit = grid.hit(p.x, p.y);
  if (!hit) return;
  const order = orderOf(L.layer, k), position = order.indexOf(hit.filter);
  const value = grid.cellValue(s.values, hit.filter, hit.channel, hit.i, hit.j);
  $("compare-readout").textContent = `run ${RUNS[k].id} · step ${s.step} · filter ${hit.filter} (matched to run ${RUNS[0].id}'s filter ${position}, ` +
    `cosine ${L.layer.matches[k][position].cosine} at step ${L.layer.steps[0]}) · row ${hit.i}, col ${hit.j} · ${value.toPrecision(9)}`;
}

// Every layer at slider step `step` (null: each run's compared step, as the page was asked for).
async function drawAll(step) {
  await Promise.all(layers.map((L) => drawLayer(L, step === null ? L.layer.steps : L.steps.map((steps) => stepAt(steps, step)))));
  $("sync-label").textContent = step === null ? `the compared step of each run` : `step ${step}`;
}

function saveState() {
  for (const [id, fallback] of [["scale-mode", "shared"], ["layout", "grid"]]) CX.setParam(id, $(id).value !== fallback ? $(id).value : null);
  const slider = $("sync-slider");  // the slider's step, once moved: a reload comes back to it
  CX.setParam("at", slider.dataset.moved && allSteps.length ? allSteps[Number(slider.value)] : null);
}

// One chart per metric any compared run recorded, a line per run in the run's colour.
const curveCharts = {};
async function drawCurves() {
  const metrics = await Promise.all(RUNS.map(async (r) => (await CX.json(`/api/runs/${r.id}/metrics`)).metrics));
  const names = [...new Set(metrics.flatMap((m) => Object.keys(m)))].sort();
  const width = Math.max(320, Math.min(460, Math.floor(($("compare-charts").clientWidth - 32) / 3)));
  for (const name of names) {
    const chart = curveCharts[name] || (curveCharts[name] = new LineChart($("compare-charts"), { title: name, width, height: 220 }));
    chart.setSeries(RUNS.map((r, k) => metrics[k][name] && {
      name: `run ${r.id}`, run: r.id, xs: metrics[k][name].steps, ys: metrics[k][name].values, colour: CX.runColour(r.id),
      smooth: name.startsWith("train_"),
    }).filter(Boolean));
  }
  if (!names.length) $("compare-charts").textContent = "no metrics recorded in these runs";
}

async function start() {
  if (params.get("scale-mode") === "run") $("scale-mode").value = "run";
  if (params.get("layout") === "row") $("layout").value = "row";
  document.body.classList.toggle("compare-one-row", $("layout").value === "row");
  layers.forEach((L) => L.canvases.forEach((canvas, k) => canvas.addEventListener("mousemove", (e) => readout(L, k, e))));
  await drawAll(null);
  window.cxReadyAt = performance.now();  // ms since the navigation began: every run drawn (benchmarks/ui.py)
  // the slider runs over every step any compared run recorded, in any layer
  await Promise.all(layers.map(async (L) => {
    L.steps = await Promise.all(RUNS.map(async (r) => (await CX.json(`/api/runs/${r.id}/layers/${encodeURIComponent(L.layer.layer)}/steps`)).steps));
  }));
  allSteps = [...new Set(layers.flatMap((L) => L.steps.flat()))].sort((a, b) => a - b);
  const slider = $("sync-slider");
  slider.max = Math.max(0, allSteps.length - 1);
  slider.value = allSteps.indexOf(Math.max(...layers[0] ? layers[0].layer.steps : [0]));
  if (slider.value < 0) slider.value = slider.max;
  const at = allSteps.indexOf(Number(params.get("at")));
  if (params.has("at") && at >= 0) {  // the slider's step of the address: where it was left
    slider.value = at; slider.dataset.moved = "1"; await drawAll(allSteps[at]);
  }
  slider.addEventListener("input", () => { slider.dataset.moved = "1"; saveState(); drawAll(allSteps[Number(slider.value)]); });
  const redraw = () => {
    saveState();
    document.body.classList.toggle("compare-one-row", $("layout").value === "row");
    drawAll(slider.dataset.moved ? allSteps[Number(slider.value)] : null);
  };
  for (const id of ["scale-mode", "layout", "numbers"]) $(id).addEventListener("change", redraw);
  window.addEventListener("resize", () => { if ($("layout").value === "row") redraw(); });
  document.body.dataset.compareReady = "true";
}

start().catch((error) => { $("compare-readout").textContent = String(error.message || error); });
drawCurves().catch((error) => { $("compare-charts").textContent = String(error.message || error); });
window.cxCompare = { layers, drawAll, allSteps: () => allSteps, curveCharts };
