// convexp ui: small line charts on canvas, with a hover readout and a log-scale option.
"use strict";

// TensorBoard's smoothing: an exponential moving average, debiased so the first points are not pulled
// towards zero; weight 0 is the values themselves. Non-finite values are left out of the average.
function emaSmooth(ys, weight) {
  if (!(weight > 0)) return ys.slice();
  const out = new Array(ys.length);
  let last = 0, count = 0;
  for (let i = 0; i < ys.length; i++) {
    const v = ys[i];
    if (v === null || !isFinite(v)) { out[i] = v; continue; }
    last = last * weight + (1 - weight) * v;
    count++;
    out[i] = last / (1 - Math.pow(weight, count));
  }
  return out;
}

// Up to about `count` ticks from x0 to x1 at round values (1, 2 or 5 times a power of ten); whole numbers
// only when `integer` (steps). Each tick is where its value is.
function niceTicks(x0, x1, count, integer) {
  const raw = (x1 - x0) / Math.max(1, count);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  let step = [1, 2, 5, 10].map((m) => m * power).find((v) => v >= raw) || 10 * power;
  if (integer) step = Math.max(1, Math.round(step));
  const ticks = [];
  for (let v = Math.ceil(x0 / step) * step; v <= x1 + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

// Ticks of a log axis, in log10 units from l0 to l1: the decades, else 1, 2 and 5 times them, else every digit,
// else round values between; at most about `count` of them.
function logTicks(l0, l1, count) {
  for (const digits of [[1], [1, 2, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]]) {
    let ticks = [];
    for (let k = Math.floor(l0); k <= Math.ceil(l1); k++) for (const d of digits) {
      const t = k + Math.log10(d);
      if (t >= l0 - 1e-9 && t <= l1 + 1e-9) ticks.push(t);
    }
    if (ticks.length > count && digits.length === 1) {  // many decades: every n-th
      const every = Math.ceil(ticks.length / count);
      ticks = ticks.filter((t) => Math.round(t) % every === 0);
    }
    if (ticks.length >= 2) return ticks;
  }
  return niceTicks(Math.pow(10, l0), Math.pow(10, l1), count, false).filter((v) => v > 0).map(Math.log10);
}

// A tick's value as written: the shortest of its round value.
function tickText(v) { return String(Number(v.toPrecision(6))); }

// The x axes training curves are drawn against (the run and experiment pages): steps, epochs (a step k steps
// into an epoch of n at k/n of it), and wall seconds since the first value.
const AXES = {
  step: { label: "step", integer: true, format: (x) => String(x) },
  epoch: { label: "epoch", integer: false, format: (x) => String(Number(x.toPrecision(6))) },
  time: { label: "seconds", integer: false, format: (x) => x < 120 ? `${Number(x.toPrecision(4))} s` : x < 7200 ? `${Number((x / 60).toPrecision(3))} min` : `${Number((x / 3600).toPrecision(3))} h` },
};

const PALETTE = CX.RUN_COLOURS;  // common.js: series without a colour of their own take these in turn

class LineChart {
  // series: [{name, xs, ys, colour?, width?, dash?, lows?, highs?, ns?, faint?, legend?, smooth?}]: lows/highs draw
  // a band around the line (an interval), faint series are drawn pale and left out of the legend and the readout;
  // a smooth series is drawn as its moving average (options.smoothing, 0 = none) over its raw values, faint;
  // options: {title, log, xLabel, width, height, legend, smoothing}
  // options.xFormat: how an x value is written (ticks, readout); options.xInteger: x values are whole numbers (steps)
  constructor(parent, options) {
    this.options = Object.assign({ width: 420, height: 230, xLabel: "step", legend: true, xInteger: true }, options);
    this.box = document.createElement("div");
    this.box.className = "chart";
    // its own log scale and zoom: drag across the plot to zoom in on x, shift+drag to pan, double-click to see all
    const bar = document.createElement("div");
    bar.className = "chart-bar";
    const log = document.createElement("label");
    this.logBox = document.createElement("input"); this.logBox.type = "checkbox"; this.logBox.className = "chart-log";
    this.logBox.checked = !!this.options.log;
    this.logBox.addEventListener("change", () => this.setLog(this.logBox.checked));
    log.append(this.logBox, " log");
    this.resetButton = document.createElement("button");
    this.resetButton.className = "chart-reset"; this.resetButton.textContent = "see all"; this.resetButton.hidden = true;
    this.resetButton.title = "undo the zoom (or double-click the chart)";
    this.resetButton.addEventListener("click", () => this.setView(null));
    const hint = document.createElement("span");
    hint.className = "muted"; hint.textContent = "drag: zoom · shift+drag: pan";
    const png = document.createElement("button");
    png.className = "chart-png"; png.textContent = "PNG"; png.title = "save this chart as drawn (a PNG file)";
    png.addEventListener("click", () => { this.draw(); CX.savePng(this.canvas, `${(this.options.title || "chart").replace(/[^\w.-]+/g, "_")}.png`); });
    const svg = document.createElement("button");
    svg.className = "chart-svg"; svg.textContent = "SVG"; svg.title = "save this chart as a vector picture (an SVG file)";
    svg.addEventListener("click", () => CX.saveSvg(this, `${(this.options.title || "chart").replace(/[^\w.-]+/g, "_")}.svg`));
    bar.append(log, this.resetButton, png, svg, hint);
    this.canvas = document.createElement("canvas");
    this.canvas.width = this.options.width; this.canvas.height = this.options.height;
    this.tip = document.createElement("div");
    this.tip.className = "tip"; this.tip.hidden = true;
    this.box.append(bar, this.canvas, this.tip);
    parent.append(this.box);
    this.series = [];
    this.given = [];
    this.off = new Set();  // the series a click on their legend entry hid (by their given name)
    this.view = null;  // the x range shown when zoomed: {x0, x1}; null: everything
    this.canvas.addEventListener("mousedown", (e) => this.press(e));
    this.canvas.addEventListener("mousemove", (e) => this.drag ? this.dragTo(e) : this.hover(e));
    window.addEventListener("mouseup", (e) => this.release(e));
    this.canvas.addEventListener("dblclick", () => this.setView(null));
    this.canvas.addEventListener("mouseleave", () => { this.tip.hidden = true; if (!this.drag) this.draw(); });
  }

  // The x range to show (zoomed in), or null for all of it; the y axis fits what lies in the range.
  setView(view) {
    this.view = view && view.x1 > view.x0 ? view : null;
    this.resetButton.hidden = this.view === null;
    this.draw();
    this.changed();
  }
  // What a reader chose on this chart, as text for a page's address ("log", "x0,x1", "log,x0,x1"; null: nothing),
  // and back: options.onState(chart) hears of each change.
  state() {
    const parts = [...(this.options.log ? ["log"] : []), ...(this.view ? [this.view.x0, this.view.x1] : [])];
    return parts.length ? parts.join(",") : null;
  }
  applyState(text) {
    if (!text) return;
    const parts = text.split(","), log = parts[0] === "log", range = parts.slice(log ? 1 : 0).map(Number);
    this.options.log = log; this.logBox.checked = log;
    this.view = range.length === 2 && range.every(isFinite) && range[1] > range[0] ? { x0: range[0], x1: range[1] } : null;
    this.resetButton.hidden = this.view === null;
    this.draw();
  }
  changed() { if (this.options.onState) this.options.onState(this); }
  // A new width in canvas pixels (the page resized): the chart is drawn again at that size.
  resize(width) {
    width = Math.max(240, Math.round(width));
    if (width === this.canvas.width) return;
    this.canvas.width = width; this.options.width = width;
    this.draw();
  }
  xValue(event) {
    const { e, left, right, W } = this.frame;
    const x = CX.canvasPoint(this.canvas, event).x;
    return e.x0 + (x - left) / (W - left - right) * (e.x1 - e.x0);
  }
  // The series drawn: all but those hidden from the legend.
  shown() { return this.series.filter((s) => !this.off.has(s.key)); }
  // Hide or show a series (its given name), as a click on its legend entry does.
  toggle(key) {
    if (this.off.has(key)) this.off.delete(key); else this.off.add(key);
    this.draw();
  }
  press(event) {
    if (event.button !== 0) return;
    const p = CX.canvasPoint(this.canvas, event);
    const entry = (this.legendBoxes || []).find((b) => p.x >= b.x && p.x <= b.x + b.w && p.y >= b.y - 4 && p.y <= b.y + 9);
    if (entry) { event.preventDefault(); this.toggle(entry.key); return; }
    if (!this.frame) return;
    event.preventDefault();
    const startX = CX.canvasPoint(this.canvas, event).x;
    this.drag = { from: this.xValue(event), to: this.xValue(event), pan: event.shiftKey, view: this.frame.e, startX };
  }
  dragTo(event) {
    const d = this.drag;
    if (d.pan) {  // move the shown range by what the pointer moved, on the scale the drag began with
      const { left, right, W } = this.frame;
      const x = CX.canvasPoint(this.canvas, event).x;
      const shift = (d.startX - x) / (W - left - right) * (d.view.x1 - d.view.x0);
      this.setView({ x0: d.view.x0 + shift, x1: d.view.x1 + shift });
      return;
    }
    d.to = this.xValue(event);
    this.draw();
    const ctx = this.canvas.getContext("2d"), { px, top } = this.frame;
    ctx.fillStyle = CX.theme().accent; ctx.globalAlpha = 0.15;
    ctx.fillRect(Math.min(px(d.from), px(d.to)), top, Math.abs(px(d.to) - px(d.from)), this.canvas.height - top - 28);
    ctx.globalAlpha = 1;
  }
  release() {
    const d = this.drag;
    if (!d) return;
    this.drag = null;
    if (d.pan) return;
    const pixels = this.frame ? Math.abs(this.frame.px(d.to) - this.frame.px(d.from)) : 0;
    if (pixels >= 4) this.setView({ x0: Math.min(d.from, d.to), x1: Math.max(d.from, d.to) });  // a click is not a zoom
    else this.draw();
  }

  setSeries(series) { this.given = series.filter((s) => s.xs.length); this.smoothen(); }
  // How x is measured (a new axis: step, epoch, wall time): its label, format and whether it is whole numbers; the zoom is undone.
  setAxis(xLabel, xFormat, xInteger) {
    Object.assign(this.options, { xLabel, xFormat, xInteger });
    this.view = null; this.resetButton.hidden = true;
    this.changed();
  }
  fmtX(x) { return this.options.xFormat ? this.options.xFormat(x) : String(x); }
  setSmoothing(weight) { this.options.smoothing = weight; this.smoothen(); }
  // the series drawn: each smooth one, when smoothing, as its raw values (faint) under their moving average
  smoothen() {
    const weight = this.options.smoothing || 0;
    this.series = [];
    this.given.forEach((s, n) => {
      // a band of a quantity that is never negative (a loss, a share) is drawn from 0 up: a t interval of few
      // runs can reach below zero, the quantity cannot (the readout still says the interval)
      if (s.lows) s.bandFloor = s.ys.every((v) => v === null || !(v < 0)) ? 0 : -Infinity;
      if (!s.smooth || !(weight > 0)) { this.series.push(Object.assign({}, s, { key: s.name, colour: s.colour || PALETTE[n % PALETTE.length] })); return; }
      const colour = s.colour || PALETTE[n % PALETTE.length];
      this.series.push(Object.assign({}, s, { key: s.name, colour, faint: true, lows: undefined, highs: undefined }));  // the band once
      this.series.push(Object.assign({}, s, { key: s.name, colour, ys: emaSmooth(s.ys, weight), name: `${s.name} (smoothed ${weight})` }));
    });
    this.draw();
  }
  // A step marked by a dashed vertical line (the step the page shows); null removes it.
  setMarker(x) { this.marker = x; this.draw(); }
  setLog(log) { this.options.log = log; this.logBox.checked = log; this.draw(); this.changed(); }

  y(v) { return this.options.log ? (v > 0 ? Math.log10(v) : NaN) : v; }

  extent() {
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    const view = this.view;
    for (const s of this.shown()) for (let i = 0; i < s.xs.length; i++) {
      if (s.xs[i] === null || (view && (s.xs[i] < view.x0 || s.xs[i] > view.x1))) continue;  // zoomed: y fits what is shown
      for (const v of [s.ys[i], s.lows && s.lows[i] !== null ? Math.max(s.bandFloor, s.lows[i]) : null, s.highs ? s.highs[i] : null]) {
        const y = this.y(v);
        if (v === null || !isFinite(y)) continue;
        x0 = Math.min(x0, s.xs[i]); x1 = Math.max(x1, s.xs[i]); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      }
    }
    if (view) {
      if (!isFinite(y0)) { y0 = 0; y1 = 1; }  // nothing recorded in the range: an empty plot, not "nothing recorded"
      x0 = view.x0; x1 = view.x1;
    }
    if (!isFinite(x0)) return null;
    if (x1 === x0) { x0 -= 1; x1 += 1; }  // one step: its point in the middle, not on the edge
    // a quantity that is never negative (a loss, a drift, a share) gets no axis below zero from the padding
    const floor = !this.options.log && y0 >= 0 ? 0 : -Infinity;
    if (y1 === y0) { const half = Math.abs(y0) / 2 || 0.5; y0 -= half; y1 += half; }  // one value: in the middle
    const pad = (y1 - y0) * 0.05;
    return { x0, x1, y0: Math.max(floor, y0 - pad), y1: y1 + pad };
  }

  // Draw the chart (with the hover line at hoverX) on its canvas, or into another 2-D context (svg.js's SvgContext).
  draw(hoverX, context) {
    const ctx = context || this.canvas.getContext("2d"), W = this.canvas.width, H = this.canvas.height;
    const left = 52, right = 8, bottom = 34;
    const theme = CX.theme();
    ctx.clearRect(0, 0, W, H);
    ctx.font = "11px sans-serif"; ctx.fillStyle = theme.fg;
    ctx.fillText(this.options.title + (this.options.log ? " (log scale)" : ""), left, 13);
    // the legend in rows of its own above the plot, wrapped to the width: it never covers a curve, nor runs off the edge
    const entries = this.options.legend ? this.series.map((s, n) => ({ s, n })).filter(({ s }) => s.legend !== false && !s.faint).slice(0, 12) : [];
    const boxes = [];
    let lx = left, ly = 18;
    for (const { s, n } of entries) {
      const w = 18 + ctx.measureText(s.name).width;
      if (lx + w > W - right && lx > left) { lx = left; ly += 13; }
      boxes.push({ x: lx, y: ly, w, name: s.name, key: s.key, colour: s.colour || PALETTE[n % PALETTE.length] });
      lx += w;
    }
    const top = boxes.length ? ly + 10 : 20;
    this.legendBoxes = boxes;
    const e = this.extent();
    this.frame = null;
    if (!e) { ctx.fillStyle = theme.muted; ctx.fillText(this.options.empty || "nothing recorded yet", left + 10, H / 2); return; }
    const px = (x) => left + (x - e.x0) / (e.x1 - e.x0) * (W - left - right);
    const py = (y) => top + (1 - (y - e.y0) / (e.y1 - e.y0)) * (H - top - bottom);
    this.frame = { e, px, left, right, W, top };
    ctx.strokeStyle = theme.line; ctx.fillStyle = theme.muted; ctx.lineWidth = 1;
    const yCount = Math.max(3, Math.min(6, Math.floor((H - top - bottom) / 28)));
    this.yTicks = this.options.log ? logTicks(e.y0, e.y1, yCount) : niceTicks(e.y0, e.y1, yCount, false);
    for (const yv of this.yTicks) {  // round values: 0.2, 0.25 -> 0.2, 0.4; a log axis on its decades
      const y = py(yv);
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(W - right, y); ctx.stroke();
      ctx.fillText(tickText(this.options.log ? Math.pow(10, yv) : yv), 2, y + 3);
    }
    const xTicks = niceTicks(e.x0, e.x1, Math.max(3, Math.floor((W - left - right) / 90)), this.options.xInteger);
    this.xTicks = xTicks;
    for (const xv of xTicks) {
      const x = px(xv);
      ctx.textAlign = x - left < 15 ? "left" : W - right - x < 15 ? "right" : "center";
      ctx.fillText(this.fmtX(xv), x, H - 20);
      ctx.textAlign = "left";
    }
    // the x axis's name under its ticks, outside the plot's clip
    ctx.textAlign = "center"; ctx.fillText(this.options.xLabel, left + (W - left - right) / 2, H - 4); ctx.textAlign = "left";
    ctx.save();  // lines and bands stay inside the plot when zoomed
    ctx.beginPath(); ctx.rect(left, top - 2, W - left - right, H - bottom - top + 4); ctx.clip();
    this.shown().forEach((s, n) => {  // bands first, under every line: each run of steps with an interval is one polygon
      if (!s.lows) return;
      ctx.fillStyle = s.colour || PALETTE[n % PALETTE.length]; ctx.globalAlpha = 0.2;
      let run = [];
      const flush = () => {
        if (run.length > 1) {
          ctx.beginPath();
          run.forEach((i, k) => { const x = px(s.xs[i]), y = py(this.y(s.highs[i])); if (k) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
          for (let k = run.length - 1; k >= 0; k--) ctx.lineTo(px(s.xs[run[k]]), py(this.y(Math.max(s.bandFloor, s.lows[run[k]]))));
          ctx.closePath(); ctx.fill();
        }
        run = [];
      };
      for (let i = 0; i < s.xs.length; i++) {
        const low = s.lows[i] === null ? null : Math.max(s.bandFloor, s.lows[i]);
        if (low === null || s.highs[i] === null || s.xs[i] === null || !isFinite(this.y(low)) || !isFinite(this.y(s.highs[i]))) flush();
        else run.push(i);
      }
      flush();
      ctx.globalAlpha = 1;
    });
    this.shown().forEach((s, n) => {
      ctx.strokeStyle = s.colour || PALETTE[n % PALETTE.length]; ctx.lineWidth = s.width || 1.2;
      ctx.globalAlpha = s.faint ? 0.3 : 1;
      ctx.setLineDash(s.dash ? [5, 3] : []);
      ctx.beginPath();
      let pen = false;
      const [a0, a1] = this.visible(s);
      const stride = Math.max(1, Math.floor((a1 - a0 + 1) / (2 * W)));  // at most ~2 points per pixel shown
      const indices = [];
      const [first, last] = this.visible(s);
      for (let i = first; i <= last; i += stride) indices.push(i);
      if (indices[indices.length - 1] !== last) indices.push(last);
      for (const i of indices) {
        const y = this.y(s.ys[i]);
        if (s.ys[i] === null || s.xs[i] === null || !isFinite(y)) { pen = false; continue; }
        if (pen) ctx.lineTo(px(s.xs[i]), py(y)); else ctx.moveTo(px(s.xs[i]), py(y));
        pen = true;
      }
      ctx.stroke();
      ctx.globalAlpha = 1; ctx.setLineDash([]);
      if (s.xs.length < 60 && !s.faint) {  // few points (per-epoch metrics): mark them
        ctx.fillStyle = ctx.strokeStyle;
        for (let i = 0; i < s.xs.length; i++) { const y = this.y(s.ys[i]); if (isFinite(y) && s.xs[i] !== null) ctx.fillRect(px(s.xs[i]) - 2, py(y) - 2, 4, 4); }
      }
    });
    ctx.restore();
    for (const b of boxes) {  // a hidden series' entry stays, pale and struck through: click it to bring the series back
      ctx.globalAlpha = this.off.has(b.key) ? 0.35 : 1;
      ctx.fillStyle = b.colour; ctx.fillRect(b.x, b.y + 1, 10, 3);
      ctx.fillStyle = theme.fg; ctx.fillText(b.name, b.x + 13, b.y + 6);
      if (this.off.has(b.key)) { ctx.fillRect(b.x + 13, b.y + 3, b.w - 16, 1); }
      ctx.globalAlpha = 1;
    }
    if (this.marker !== null && this.marker !== undefined && this.marker >= e.x0 && this.marker <= e.x1) {
      ctx.strokeStyle = theme.fg; ctx.setLineDash([3, 3]);
      ctx.beginPath(); ctx.moveTo(px(this.marker), top); ctx.lineTo(px(this.marker), H - bottom); ctx.stroke();
      ctx.setLineDash([]);
    }
    if (hoverX !== undefined) {
      ctx.strokeStyle = theme.muted; ctx.beginPath(); ctx.moveTo(px(hoverX), top); ctx.lineTo(px(hoverX), H - bottom); ctx.stroke();
    }
  }

  // The indices of a series' first and last points in the shown x range (its xs ascend).
  visible(s) {
    if (!this.view) return [0, s.xs.length - 1];
    let first = 0, last = s.xs.length - 1;
    while (first < last && !(s.xs[first] >= this.view.x0)) first++;
    while (last > first && !(s.xs[last] <= this.view.x1)) last--;
    // one point beyond each edge, so that a line runs to the edge of the plot
    return [Math.max(0, first - 1), Math.min(s.xs.length - 1, last + 1)];
  }

  hover(event) {
    if (!this.frame) return;
    const { W } = this.frame;
    const x = CX.canvasPoint(this.canvas, event).x;
    const xv = this.xValue(event);
    const lines = [];
    let shownX = null;
    for (const s of this.shown().filter((s) => !s.faint).slice(0, 12)) {
      let best = -1, dist = Infinity;
      for (let i = 0; i < s.xs.length; i++) {
        if (s.xs[i] === null) continue;
        const d = Math.abs(s.xs[i] - xv); if (d < dist) { dist = d; best = i; }
      }
      if (best < 0) continue;
      if (shownX === null) shownX = s.xs[best];
      const band = s.lows && s.lows[best] !== null ? ` [${CX.fmt(s.lows[best], 6)}, ${CX.fmt(s.highs[best], 6)}]` : "";
      const n = s.ns ? ` n=${s.ns[best]}` : "";
      // the x once at the end when every series is read at it; else each line says its own
      const step = s.steps && this.options.xLabel !== "step" ? `, step ${s.steps[best]}` : "";  // x by epoch or time: the step too
      lines.push({ text: `${s.name} ${CX.fmt(s.ys[best], 6)}${band}${n}`, at: `${this.options.xLabel} ${this.fmtX(s.xs[best])}${step}` });
    }
    if (shownX === null) return;
    this.draw(shownX);
    const shared = lines.every((l) => l.at === lines[0].at);
    this.tip.textContent = shared ? [...lines.map((l) => l.text), `at ${lines[0].at}`].join("\n") : lines.map((l) => `${l.text} (${l.at})`).join("\n");
    this.tip.hidden = false;
    // beside the pointer, on the side where it fits inside this chart: never over the neighbouring one
    const width = this.tip.offsetWidth, rendered = this.canvas.getBoundingClientRect().width || W;
    const at = x * rendered / W;
    const left = at + 12 + width <= rendered ? at + 12 : Math.max(0, at - 12 - width);
    this.tip.style.left = left + "px";
    this.tip.style.maxWidth = rendered + "px";
    this.tip.style.top = "20px";
  }
}
