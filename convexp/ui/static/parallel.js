// convexp ui: a sweep seen whole -- parallel coordinates (one line per run through its parameters to the
// objective; drag along an axis to keep the runs in a range) and a scatter of one parameter against the objective.
"use strict";

// How an axis maps its values to [0, 1] (bottom to top): numbers linearly, or on a log scale when the sweep drew
// them log-uniformly (or, not drawn by a sweep, positive numbers spanning a decade); anything else as categories.
function axisScale(field, values, distribution) {
  const numbers = values.filter((v) => v !== null && v !== undefined);
  const numeric = numbers.length > 0 && numbers.every((v) => typeof v === "number");
  if (!numeric) {
    const categories = [...new Set(values.map((v) => JSON.stringify(v)))].sort();
    return { field: field, kind: "category", categories: categories, log: false };
  }
  let min = Math.min(...numbers), max = Math.max(...numbers);
  const log = distribution === "loguniform" || (distribution !== "uniform" && min > 0 && max / min >= 10);
  return { field: field, kind: "number", min: min, max: max, log: log };
}

// A value's place on its axis, 0 (bottom) to 1 (top); null for a missing value.
function scaleUnit(scale, value) {
  if (value === null || value === undefined) return null;
  if (scale.kind === "category") {
    const n = scale.categories.length;
    return n === 1 ? 0.5 : scale.categories.indexOf(JSON.stringify(value)) / (n - 1);
  }
  const f = scale.log ? Math.log : (v) => v;
  const lo = f(scale.min), hi = f(scale.max);
  return hi === lo ? 0.5 : (f(value) - lo) / (hi - lo);
}

// The value at a place on a number axis (the inverse of scaleUnit).
function unitValue(scale, unit) {
  if (scale.kind === "category") return null;
  if (scale.log) return Math.exp(Math.log(scale.min) + unit * (Math.log(scale.max) - Math.log(scale.min)));
  return scale.min + unit * (scale.max - scale.min);
}

function formatValue(v) {
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : Number(v.toPrecision(4)).toString();
  return typeof v === "string" ? v : JSON.stringify(v);
}

// Blue (low) to red (high), for the objective's value at t in [0, 1].
function rampColour(t) {
  const a = [49, 54, 149], b = [215, 48, 39];
  const c = a.map((x, i) => Math.round(x + (b[i] - x) * (isFinite(t) ? t : 0.5)));
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

class ParallelChart {
  // data: {fields, objective, distributions: {field: kind}, rows: [{id, status, values: {field: value}, objective}]}
  // options: {width, height, onSelect(ids)}
  constructor(parent, data, options) {
    this.options = Object.assign({ width: 900, height: 340 }, options);
    this.data = data;
    this.axes = [...data.fields, data.objective];
    this.scales = this.axes.map((field, i) => {
      const values = data.rows.map((r) => (i < data.fields.length ? r.values[field] : r.objective));
      return axisScale(field, values, (data.distributions || {})[field]);
    });
    this.brushes = {};  // axis index -> [low, high] as units (0 bottom, 1 top)
    this.canvas = document.createElement("canvas");
    this.canvas.width = this.options.width; this.canvas.height = this.options.height;
    this.canvas.className = "parallel-canvas";
    parent.append(this.canvas);
    this.margin = { left: 70, right: 70, top: 34, bottom: 24 };
    this.canvas.addEventListener("mousedown", (e) => this._down(e));
    this.canvas.addEventListener("mousemove", (e) => this._move(e));
    window.addEventListener("mouseup", (e) => this._up(e));
    this.draw();
  }

  axisX(i) {
    const m = this.margin, n = this.axes.length;
    return n === 1 ? this.options.width / 2 : m.left + (i * (this.options.width - m.left - m.right)) / (n - 1);
  }
  unitY(unit) { const m = this.margin; return m.top + (1 - unit) * (this.options.height - m.top - m.bottom); }
  yUnit(y) { const m = this.margin; return 1 - (y - m.top) / (this.options.height - m.top - m.bottom); }

  value(row, i) { return i < this.data.fields.length ? row.values[this.axes[i]] : row.objective; }

  // Whether a run passes every brush.
  kept(row) {
    return Object.entries(this.brushes).every(([i, [lo, hi]]) => {
      const u = scaleUnit(this.scales[i], this.value(row, Number(i)));
      return u !== null && u >= lo - 1e-9 && u <= hi + 1e-9;
    });
  }

  selected() { return this.data.rows.filter((r) => this.kept(r)).map((r) => r.id); }

  draw() {
    const ctx = this.canvas.getContext("2d");
    const style = getComputedStyle(document.body);
    const ink = style.getPropertyValue("--ink").trim() || "#222", muted = style.getPropertyValue("--muted").trim() || "#888";
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    const objective = this.scales[this.axes.length - 1];
    this.lines = [];
    const kept = [], faint = [];
    for (const row of this.data.rows) {
      const points = this.axes.map((_, i) => {
        const u = scaleUnit(this.scales[i], this.value(row, i));
        return u === null ? null : [this.axisX(i), this.unitY(u)];
      });
      const line = { id: row.id, status: row.status, points: points, kept: this.kept(row) };
      this.lines.push(line);
      (line.kept ? kept : faint).push([line, scaleUnit(objective, row.objective)]);
    }
    const stroke = (line, colour, width, alpha) => {
      ctx.globalAlpha = alpha; ctx.strokeStyle = colour; ctx.lineWidth = width;
      ctx.setLineDash(line.status === "pruned" ? [4, 3] : []);
      ctx.beginPath();
      let open = false;
      for (const p of line.points) {
        if (p === null) { open = false; continue; }
        if (open) ctx.lineTo(p[0], p[1]); else ctx.moveTo(p[0], p[1]);
        open = true;
      }
      ctx.stroke();
    };
    for (const [line] of faint) stroke(line, muted, 1, 0.25);
    for (const [line, t] of kept) stroke(line, rampColour(t), 1.4, 0.85);
    ctx.globalAlpha = 1; ctx.setLineDash([]);
    ctx.font = "12px system-ui, sans-serif";
    this.axes.forEach((field, i) => {
      const x = this.axisX(i), scale = this.scales[i];
      // the outer axes' labels run inwards, so that a long field name stays on the canvas
      ctx.textAlign = this.axes.length > 1 && i === 0 ? "left" : this.axes.length > 1 && i === this.axes.length - 1 ? "right" : "center";
      ctx.strokeStyle = ink; ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(x, this.unitY(0)); ctx.lineTo(x, this.unitY(1)); ctx.stroke();
      ctx.fillStyle = ink;
      ctx.fillText(field + (scale.log ? " (log)" : ""), x, this.margin.top - 16);
      ctx.fillStyle = muted;
      if (scale.kind === "number") {
        ctx.fillText(formatValue(scale.max), x, this.margin.top - 3);
        ctx.fillText(formatValue(scale.min), x, this.unitY(0) + 14);
      } else {
        ctx.textAlign = i === this.axes.length - 1 && i > 0 ? "right" : "left";
        const offset = ctx.textAlign === "right" ? -5 : 5;
        scale.categories.forEach((c) => ctx.fillText(formatValue(JSON.parse(c)), x + offset, this.unitY(scaleUnit(scale, JSON.parse(c))) + 4));
      }
      const brush = this.brushes[i];
      if (brush) {
        ctx.fillStyle = "rgba(80, 140, 220, 0.25)";
        ctx.fillRect(x - 7, this.unitY(brush[1]), 14, this.unitY(brush[0]) - this.unitY(brush[1]));
      }
    });
  }

  _axisAt(x) {
    let best = -1, distance = 12;
    this.axes.forEach((_, i) => { const d = Math.abs(this.axisX(i) - x); if (d < distance) { best = i; distance = d; } });
    return best;
  }
  _point(e) { const r = this.canvas.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; }
  _down(e) {
    const [x, y] = this._point(e);
    const axis = this._axisAt(x);
    if (axis < 0) return;
    this.dragging = { axis: axis, from: Math.min(1, Math.max(0, this.yUnit(y))), moved: false };
    e.preventDefault();
  }
  _move(e) {
    if (!this.dragging) return;
    const unit = Math.min(1, Math.max(0, this.yUnit(this._point(e)[1])));
    const d = this.dragging;
    if (Math.abs(unit - d.from) * (this.options.height - this.margin.top - this.margin.bottom) >= 3) d.moved = true;
    if (d.moved) { this.brushes[d.axis] = [Math.min(d.from, unit), Math.max(d.from, unit)]; this.draw(); }
  }
  _up() {
    if (!this.dragging) return;
    const d = this.dragging;
    this.dragging = null;
    if (!d.moved) delete this.brushes[d.axis];  // a click on an axis clears its brush
    this.draw();
    if (this.options.onSelect) this.options.onSelect(this.selected());
  }
}

class ScatterChart {
  // data as ParallelChart's; the x field is chosen with setField; kept: the ids to draw strongly (the brushed runs)
  constructor(parent, data, options) {
    this.options = Object.assign({ width: 560, height: 320 }, options);
    this.data = data;
    this.canvas = document.createElement("canvas");
    this.canvas.width = this.options.width; this.canvas.height = this.options.height;
    this.canvas.className = "scatter-canvas";
    parent.append(this.canvas);
    this.margin = { left: 64, right: 16, top: 16, bottom: 40 };
    this.kept = null;
    this.setField(data.fields[0]);
  }

  setField(field) {
    this.field = field;
    const values = this.data.rows.map((r) => r.values[field]);
    this.xScale = axisScale(field, values, (this.data.distributions || {})[field]);
    this.yScale = axisScale(this.data.objective, this.data.rows.map((r) => r.objective), null);
    this.yScale.log = false;
    this.draw();
  }

  setKept(ids) { this.kept = ids === null ? null : new Set(ids); this.draw(); }

  draw() {
    const ctx = this.canvas.getContext("2d"), m = this.margin, w = this.options.width, h = this.options.height;
    const style = getComputedStyle(document.body);
    const ink = style.getPropertyValue("--ink").trim() || "#222", muted = style.getPropertyValue("--muted").trim() || "#888";
    ctx.clearRect(0, 0, w, h);
    const px = (u) => m.left + u * (w - m.left - m.right), py = (u) => m.top + (1 - u) * (h - m.top - m.bottom);
    ctx.strokeStyle = ink; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(m.left, m.top); ctx.lineTo(m.left, h - m.bottom); ctx.lineTo(w - m.right, h - m.bottom); ctx.stroke();
    ctx.font = "12px system-ui, sans-serif"; ctx.fillStyle = ink; ctx.textAlign = "center";
    ctx.fillText(this.field + (this.xScale.log ? " (log)" : ""), (m.left + w - m.right) / 2, h - 6);
    ctx.save(); ctx.translate(14, (m.top + h - m.bottom) / 2); ctx.rotate(-Math.PI / 2); ctx.fillText(this.data.objective, 0, 0); ctx.restore();
    ctx.fillStyle = muted;
    for (const [scale, horizontal] of [[this.xScale, true], [this.yScale, false]]) {
      const ends = scale.kind === "number" ? [[0, scale.min], [1, scale.max]] : scale.categories.map((c) => [scaleUnit(scale, JSON.parse(c)), JSON.parse(c)]);
      for (const [u, v] of ends) {
        if (horizontal) {
          ctx.textAlign = u <= 0 ? "left" : u >= 1 ? "right" : "center";
          ctx.fillText(formatValue(v), px(u), h - m.bottom + 14);
        }
        else { ctx.textAlign = "right"; ctx.fillText(formatValue(v), m.left - 4, py(u) + (u <= 0 ? 0 : 4)); }
      }
    }
    this.points = [];
    for (const row of this.data.rows) {
      const ux = scaleUnit(this.xScale, row.values[this.field]), uy = scaleUnit(this.yScale, row.objective);
      if (ux === null || uy === null) continue;
      const point = { id: row.id, status: row.status, x: row.values[this.field], y: row.objective, px: px(ux), py: py(uy) };
      this.points.push(point);
      const strong = this.kept === null || this.kept.has(row.id);
      ctx.globalAlpha = strong ? 0.9 : 0.2;
      ctx.beginPath(); ctx.arc(point.px, point.py, 4, 0, 2 * Math.PI);
      if (row.status === "pruned") { ctx.strokeStyle = muted; ctx.stroke(); }
      else { ctx.fillStyle = rampColour(uy); ctx.fill(); }
    }
    ctx.globalAlpha = 1;
  }
}
