// convexp ui: what every page shares: the colour map, fetching JSON and kernels, and drawing kernels.
"use strict";

const CX = {};
CX.cmap = JSON.parse(document.getElementById("colormap").textContent);  // the pictures' RdBu_r, 256 RGB triples

// JSON from the app; an error response becomes an Error carrying the app's one-line message.
CX.json = async function (url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
};

// Up to `count` snapshots of a layer from `step` on, as stored: little-endian float32 (out, in, kh, kw).
CX.kernels = async function (runId, layer, step, count) {
  const url = `/api/runs/${runId}/layers/${encodeURIComponent(layer)}/kernels?step=${step}&count=${count || 1}`;
  const response = await fetch(url);
  if (!response.ok) throw new Error((await response.json()).error);
  const buffer = await response.arrayBuffer();
  const shape = response.headers.get("X-Convexp-Shape").split(",").map(Number);
  const steps = response.headers.get("X-Convexp-Steps").split(",").map(Number);
  const epochs = response.headers.get("X-Convexp-Epochs").split(",").map(Number);
  const size = shape.reduce((a, b) => a * b, 1);
  const view = new DataView(buffer);
  return steps.map((s, k) => {
    const values = new Float32Array(size);  // read little-endian explicitly, whatever the machine's byte order
    for (let i = 0; i < size; i++) values[i] = view.getFloat32(4 * (k * size + i), true);
    return { step: s, epoch: epochs[k], shape: shape, values: values };
  });
};

CX.maxAbs = function (values) {
  let m = 0;
  for (let i = 0; i < values.length; i++) { const a = Math.abs(values[i]); if (a > m) m = a; }
  return m || 1;
};

CX.colour = function (value, limit) {
  let index = Math.round((value / limit + 1) / 2 * 255);
  if (index < 0) index = 0; else if (index > 255) index = 255;
  return CX.cmap[index];
};

// Seconds as people read a wait: "45 s", "3 min", "1 h 20 min".
CX.duration = function (seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  const minutes = Math.round(seconds / 60);
  return minutes < 90 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
};

CX.fmt = (v, digits) => v === null || v === undefined ? "" : Number(v).toPrecision(digits || 6);

// A colour bar from -limit to +limit into a canvas and two labels.
CX.colorbar = function (canvas, low, high, limit) {
  const ctx = canvas.getContext("2d");
  for (let x = 0; x < canvas.width; x++) {
    const [r, g, b] = CX.cmap[Math.round(x / (canvas.width - 1) * 255)];
    ctx.fillStyle = `rgb(${r},${g},${b})`;
    ctx.fillRect(x, 0, 1, canvas.height);
  }
  low.textContent = (-limit).toPrecision(4);
  high.textContent = "+" + limit.toPrecision(4);
};

// Draws the filters of a conv layer, (out, in, kh, kw), into a canvas on one shared scale centred on 0.
// view "filters": one cell per filter (its mean over input channels, or the filter itself for one channel);
// view "channels": a row per filter, a cell per input channel. `order` lists the filters in drawing order.
class KernelGrid {
  constructor(canvas, shape, view, order, width) {
    const [out, inC, kh, kw] = shape;
    this.canvas = canvas; this.shape = shape; this.view = view;
    this.order = order || Array.from({ length: out }, (_, i) => i);
    this.gap = 2;
    if (view === "channels") { this.columns = inC; this.rows = out; }
    else { this.columns = Math.ceil(Math.sqrt(out)); this.rows = Math.ceil(out / this.columns); }
    const budget = width || 560;
    this.pixel = Math.max(2, Math.min(24, Math.floor(budget / (this.columns * kw) - 0.5)));
    if (view === "filters") this.gap = Math.max(3, Math.round(this.pixel / 3));
    this.cellW = kw * this.pixel + this.gap; this.cellH = kh * this.pixel + this.gap;
    canvas.width = this.columns * this.cellW; canvas.height = this.rows * this.cellH;
    this.image = canvas.getContext("2d").createImageData(canvas.width, canvas.height);
  }

  // The value drawn at kernel position (i, j) of a cell.
  cellValue(values, filter, channel, i, j) {
    const [, inC, kh, kw] = this.shape;
    if (channel !== null) return values[((filter * inC + channel) * kh + i) * kw + j];
    let sum = 0;
    for (let c = 0; c < inC; c++) sum += values[((filter * inC + c) * kh + i) * kw + j];
    return sum / inC;
  }

  // The largest |value| the grid draws: the colour scale's limit. In the "filters" view of a layer with
  // several input channels the cells are channel means, much smaller than its largest single weight.
  maxAbs(values) {
    const [, inC, kh, kw] = this.shape;
    if (this.view === "channels" || inC === 1) return CX.maxAbs(values);
    let m = 0;
    for (const filter of this.order) for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) {
      m = Math.max(m, Math.abs(this.cellValue(values, filter, null, i, j)));
    }
    return m || 1;
  }

  cells() {
    const cells = [];
    const [, inC] = this.shape;
    this.order.forEach((filter, position) => {
      if (this.view === "channels") for (let c = 0; c < inC; c++) cells.push({ filter, channel: c, row: position, col: c });
      else cells.push({ filter, channel: this.shape[1] === 1 ? 0 : null, row: Math.floor(position / this.columns), col: position % this.columns });
    });
    return cells;
  }

  draw(values, limit) {
    const [, , kh, kw] = this.shape;
    const data = this.image.data, width = this.canvas.width, p = this.pixel;
    data.fill(255);
    for (const cell of this.cells()) {
      const x0 = cell.col * this.cellW, y0 = cell.row * this.cellH;
      for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) {
        const [r, g, b] = CX.colour(this.cellValue(values, cell.filter, cell.channel, i, j), limit);
        for (let dy = 0; dy < p; dy++) {
          let o = ((y0 + i * p + dy) * width + x0 + j * p) * 4;
          for (let dx = 0; dx < p; dx++, o += 4) { data[o] = r; data[o + 1] = g; data[o + 2] = b; data[o + 3] = 255; }
        }
      }
    }
    this.canvas.getContext("2d").putImageData(this.image, 0, 0);
  }

  // What lies under canvas pixel (x, y): the filter, channel (null for a mean), kernel row and column.
  hit(x, y) {
    const [, inC, kh, kw] = this.shape;
    const col = Math.floor(x / this.cellW), row = Math.floor(y / this.cellH);
    const i = Math.floor((y - row * this.cellH) / this.pixel), j = Math.floor((x - col * this.cellW) / this.pixel);
    if (i >= kh || j >= kw || col >= this.columns) return null;
    if (this.view === "channels") {
      if (row >= this.order.length) return null;
      return { filter: this.order[row], channel: col, i, j };
    }
    const position = row * this.columns + col;
    if (position >= this.order.length) return null;
    return { filter: this.order[position], channel: inC === 1 ? 0 : null, i, j };
  }

  // The canvas position of the centre of kernel value (i, j) of a filter's cell (for tests and benchmarks).
  centre(filter, channel, i, j) {
    const position = this.order.indexOf(filter);
    const col = this.view === "channels" ? channel : position % this.columns;
    const row = this.view === "channels" ? position : Math.floor(position / this.columns);
    return { x: col * this.cellW + (j + 0.5) * this.pixel, y: row * this.cellH + (i + 0.5) * this.pixel };
  }
}
CX.KernelGrid = KernelGrid;

// The mouse position in a canvas's own pixels (the canvas may be shown scaled).
CX.canvasPoint = function (canvas, event) {
  const box = canvas.getBoundingClientRect();
  return { x: (event.clientX - box.left) * canvas.width / box.width, y: (event.clientY - box.top) * canvas.height / box.height };
};
