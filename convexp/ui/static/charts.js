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

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

class LineChart {
  // series: [{name, xs, ys, colour?, width?, dash?, lows?, highs?, ns?, faint?, legend?, smooth?}]: lows/highs draw
  // a band around the line (an interval), faint series are drawn pale and left out of the legend and the readout;
  // a smooth series is drawn as its moving average (options.smoothing, 0 = none) over its raw values, faint;
  // options: {title, log, xLabel, width, height, legend, smoothing}
  constructor(parent, options) {
    this.options = Object.assign({ width: 420, height: 230, xLabel: "step", legend: true }, options);
    this.box = document.createElement("div");
    this.box.className = "chart";
    this.canvas = document.createElement("canvas");
    this.canvas.width = this.options.width; this.canvas.height = this.options.height;
    this.tip = document.createElement("div");
    this.tip.className = "tip"; this.tip.hidden = true;
    this.box.append(this.canvas, this.tip);
    parent.append(this.box);
    this.series = [];
    this.canvas.addEventListener("mousemove", (e) => this.hover(e));
    this.canvas.addEventListener("mouseleave", () => { this.tip.hidden = true; this.draw(); });
  }

  setSeries(series) { this.given = series.filter((s) => s.xs.length); this.smoothen(); }
  setSmoothing(weight) { this.options.smoothing = weight; this.smoothen(); }
  // the series drawn: each smooth one, when smoothing, as its raw values (faint) under their moving average
  smoothen() {
    const weight = this.options.smoothing || 0;
    this.series = [];
    this.given.forEach((s, n) => {
      if (!s.smooth || !(weight > 0)) { this.series.push(s); return; }
      const colour = s.colour || PALETTE[n % PALETTE.length];
      this.series.push(Object.assign({}, s, { colour, faint: true }));
      this.series.push(Object.assign({}, s, { colour, ys: emaSmooth(s.ys, weight), name: `${s.name} (smoothed ${weight})` }));
    });
    this.draw();
  }
  // A step marked by a dashed vertical line (the step the page shows); null removes it.
  setMarker(x) { this.marker = x; this.draw(); }
  setLog(log) { this.options.log = log; this.draw(); }

  y(v) { return this.options.log ? (v > 0 ? Math.log10(v) : NaN) : v; }

  extent() {
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const s of this.series) for (let i = 0; i < s.xs.length; i++) {
      for (const v of [s.ys[i], s.lows ? s.lows[i] : null, s.highs ? s.highs[i] : null]) {
        const y = this.y(v);
        if (v === null || !isFinite(y)) continue;
        x0 = Math.min(x0, s.xs[i]); x1 = Math.max(x1, s.xs[i]); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      }
    }
    if (!isFinite(x0)) return null;
    if (x1 === x0) { x0 -= 1; x1 += 1; }  // one step: its point in the middle, not on the edge
    if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
    const pad = (y1 - y0) * 0.05;
    // a quantity that is never negative (a loss, a drift, a share) gets no axis below zero from the padding
    const floor = !this.options.log && y0 >= 0 ? 0 : -Infinity;
    return { x0, x1, y0: Math.max(floor, y0 - pad), y1: y1 + pad };
  }

  draw(hoverX) {
    const ctx = this.canvas.getContext("2d"), W = this.canvas.width, H = this.canvas.height;
    const left = 52, right = 8, bottom = 28;
    ctx.clearRect(0, 0, W, H);
    ctx.font = "11px sans-serif"; ctx.fillStyle = "#1d232b";
    ctx.fillText(this.options.title + (this.options.log ? " (log scale)" : ""), left, 13);
    // the legend in rows of its own above the plot, wrapped to the width: it never covers a curve, nor runs off the edge
    const entries = this.options.legend ? this.series.map((s, n) => ({ s, n })).filter(({ s }) => s.legend !== false && !s.faint).slice(0, 12) : [];
    const boxes = [];
    let lx = left, ly = 18;
    for (const { s, n } of entries) {
      const w = 18 + ctx.measureText(s.name).width;
      if (lx + w > W - right && lx > left) { lx = left; ly += 13; }
      boxes.push({ x: lx, y: ly, w, name: s.name, colour: s.colour || PALETTE[n % PALETTE.length] });
      lx += w;
    }
    const top = boxes.length ? ly + 10 : 20;
    this.legendBoxes = boxes;
    const e = this.extent();
    this.frame = null;
    if (!e) { ctx.fillStyle = "#667085"; ctx.fillText("nothing recorded yet", left + 10, H / 2); return; }
    const px = (x) => left + (x - e.x0) / (e.x1 - e.x0) * (W - left - right);
    const py = (y) => top + (1 - (y - e.y0) / (e.y1 - e.y0)) * (H - top - bottom);
    this.frame = { e, px, left, right, W, top };
    ctx.strokeStyle = "#d9dee5"; ctx.fillStyle = "#667085"; ctx.lineWidth = 1;
    for (let k = 0; k <= 4; k++) {
      const yv = e.y0 + (e.y1 - e.y0) * k / 4, y = py(yv);
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(W - right, y); ctx.stroke();
      const label = this.options.log ? Number(Math.pow(10, yv)).toPrecision(2) : Number(yv).toPrecision(3);
      ctx.fillText(label, 2, y + 3);
    }
    const xTicks = [];  // steps are whole numbers: at most five distinct ticks, each where its value is
    for (let k = 0; k <= 4; k++) {
      const xv = Math.round(e.x0 + (e.x1 - e.x0) * k / 4);
      if (xv >= e.x0 && xv <= e.x1 && !xTicks.includes(xv)) xTicks.push(xv);
    }
    this.xTicks = xTicks;
    for (const xv of xTicks) {
      const x = px(xv);
      ctx.textAlign = x - left < 15 ? "left" : W - right - x < 15 ? "right" : "center";
      ctx.fillText(String(xv), x, H - 14);
      ctx.textAlign = "left";
    }
    ctx.fillText(this.options.xLabel, W - right - 30, H - 2);
    this.series.forEach((s, n) => {  // bands first, under every line: each run of steps with an interval is one polygon
      if (!s.lows) return;
      ctx.fillStyle = s.colour || PALETTE[n % PALETTE.length]; ctx.globalAlpha = 0.2;
      let run = [];
      const flush = () => {
        if (run.length > 1) {
          ctx.beginPath();
          run.forEach((i, k) => { const x = px(s.xs[i]), y = py(this.y(s.highs[i])); if (k) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
          for (let k = run.length - 1; k >= 0; k--) ctx.lineTo(px(s.xs[run[k]]), py(this.y(s.lows[run[k]])));
          ctx.closePath(); ctx.fill();
        }
        run = [];
      };
      for (let i = 0; i < s.xs.length; i++) {
        if (s.lows[i] === null || s.highs[i] === null || !isFinite(this.y(s.lows[i])) || !isFinite(this.y(s.highs[i]))) flush();
        else run.push(i);
      }
      flush();
      ctx.globalAlpha = 1;
    });
    this.series.forEach((s, n) => {
      ctx.strokeStyle = s.colour || PALETTE[n % PALETTE.length]; ctx.lineWidth = s.width || 1.2;
      ctx.globalAlpha = s.faint ? 0.3 : 1;
      ctx.setLineDash(s.dash ? [5, 3] : []);
      ctx.beginPath();
      let pen = false;
      const stride = Math.max(1, Math.floor(s.xs.length / (2 * W)));  // at most ~2 points per pixel
      const indices = [];
      for (let i = 0; i < s.xs.length; i += stride) indices.push(i);
      if (indices[indices.length - 1] !== s.xs.length - 1) indices.push(s.xs.length - 1);
      for (const i of indices) {
        const y = this.y(s.ys[i]);
        if (s.ys[i] === null || !isFinite(y)) { pen = false; continue; }
        if (pen) ctx.lineTo(px(s.xs[i]), py(y)); else ctx.moveTo(px(s.xs[i]), py(y));
        pen = true;
      }
      ctx.stroke();
      ctx.globalAlpha = 1; ctx.setLineDash([]);
      if (s.xs.length < 60 && !s.faint) {  // few points (per-epoch metrics): mark them
        ctx.fillStyle = ctx.strokeStyle;
        for (let i = 0; i < s.xs.length; i++) { const y = this.y(s.ys[i]); if (isFinite(y)) ctx.fillRect(px(s.xs[i]) - 2, py(y) - 2, 4, 4); }
      }
    });
    for (const b of boxes) {
      ctx.fillStyle = b.colour; ctx.fillRect(b.x, b.y + 1, 10, 3);
      ctx.fillStyle = "#1d232b"; ctx.fillText(b.name, b.x + 13, b.y + 6);
    }
    if (this.marker !== null && this.marker !== undefined && this.marker >= e.x0 && this.marker <= e.x1) {
      ctx.strokeStyle = "#1d232b"; ctx.setLineDash([3, 3]);
      ctx.beginPath(); ctx.moveTo(px(this.marker), top); ctx.lineTo(px(this.marker), H - bottom); ctx.stroke();
      ctx.setLineDash([]);
    }
    if (hoverX !== undefined) {
      ctx.strokeStyle = "#98a2b3"; ctx.beginPath(); ctx.moveTo(px(hoverX), top); ctx.lineTo(px(hoverX), H - bottom); ctx.stroke();
    }
  }

  hover(event) {
    if (!this.frame) return;
    const { e, left, right, W } = this.frame;
    const x = CX.canvasPoint(this.canvas, event).x;
    const xv = e.x0 + (x - left) / (W - left - right) * (e.x1 - e.x0);
    const lines = [];
    let shownX = null;
    for (const s of this.series.filter((s) => !s.faint).slice(0, 12)) {
      let best = -1, dist = Infinity;
      for (let i = 0; i < s.xs.length; i++) { const d = Math.abs(s.xs[i] - xv); if (d < dist) { dist = d; best = i; } }
      if (best < 0) continue;
      if (shownX === null) shownX = s.xs[best];
      const band = s.lows && s.lows[best] !== null ? ` [${CX.fmt(s.lows[best], 6)}, ${CX.fmt(s.highs[best], 6)}]` : "";
      const n = s.ns ? ` n=${s.ns[best]}` : "";
      lines.push(`${s.name} ${CX.fmt(s.ys[best], 6)}${band}${n} (${this.options.xLabel} ${s.xs[best]})`);
    }
    if (shownX === null) return;
    this.draw(shownX);
    this.tip.textContent = lines.join("\n");
    this.tip.hidden = false;
    this.tip.style.left = Math.min(x + 12, W - 160) + "px";
    this.tip.style.top = "20px";
  }
}
