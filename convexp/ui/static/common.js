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

// A run's colour, the same on every page and chart (its swatch in the runs table, its curves when compared).
CX.RUN_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
CX.runColour = (id) => CX.RUN_COLOURS[(Number(id) - 1) % CX.RUN_COLOURS.length];
// A small square of a run's colour, put before its name wherever a run is named.
CX.swatch = function (id) {
  const span = document.createElement("span");
  span.className = "swatch"; span.dataset.run = id; span.style.background = CX.runColour(id); span.title = `run ${id}'s colour on every chart`;
  return span;
};
document.querySelectorAll(".swatch[data-run]").forEach((s) => { s.style.background = CX.runColour(s.dataset.run); });

// A list that takes several choices (overlay runs, group by) toggles the clicked one on a plain click: no ctrl-click
// needed to keep the others.
document.addEventListener("mousedown", (event) => {
  const option = event.target;
  const select = option instanceof HTMLOptionElement ? option.closest("select") : null;
  if (!select || !select.multiple || option.disabled) return;
  event.preventDefault();
  option.selected = !option.selected;
  select.focus();
  select.dispatchEvent(new Event("change", { bubbles: true }));
});

// The page's address keeps what the reader chose (a reload or a shared link shows the same): value null removes it.
CX.setParam = function (key, value) {
  const next = new URLSearchParams(location.search);
  if (value === null || value === undefined) next.delete(key); else next.set(key, String(value));
  history.replaceState(null, "", next.toString() ? `${location.pathname}?${next}` : location.pathname);
};

// A canvas as drawn, saved as a PNG file (made in the page: nothing is fetched).
CX.savePng = function (canvas, name) {
  const link = document.createElement("a");
  link.href = canvas.toDataURL("image/png");
  link.download = name;
  document.body.append(link); link.click(); link.remove();
};

CX.maxAbs = function (values) {
  let m = 0;
  for (let i = 0; i < values.length; i++) { const a = Math.abs(values[i]); if (a > m) m = a; }
  return m || 1;
};

// The colour map as 256 whole RGBA pixels in the machine's byte order, for writing a pixel in one store.
CX.packedColours = function () {
  if (!CX._packed) {
    const bytes = new Uint8ClampedArray(256 * 4);
    CX.cmap.forEach(([r, g, b], i) => bytes.set([r, g, b, 255], 4 * i));
    CX._packed = new Uint32Array(bytes.buffer);
  }
  return CX._packed;
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

// The page's colours (its CSS variables), for what is drawn on canvases: they follow the light or dark scheme.
CX.theme = function () {
  const style = getComputedStyle(document.documentElement);
  const get = (name) => style.getPropertyValue(name).trim();
  return { fg: get("--fg"), muted: get("--muted"), line: get("--line"), bg: get("--bg"), accent: get("--accent") };
};
// The background as RGB (what a kernel grid leaves between its cells).
CX.background = function () {
  const probe = document.createElement("canvas").getContext("2d");
  probe.fillStyle = CX.theme().bg || "#fff"; probe.fillRect(0, 0, 1, 1);
  return Array.from(probe.getImageData(0, 0, 1, 1).data.slice(0, 3));
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
// view "channels": a row per filter, a cell per input channel; view "colour" (a layer over a colour image): one
// cell per filter, its red, green and blue weights as those intensities, grey = 0. `order` lists the filters.
// With `numbers` (the default), each filter's number stands above its cell (or left of its row, with the
// channel numbers above the columns), outside the kernel's pixels.
class KernelGrid {
  constructor(canvas, shape, view, order, width, numbers) {
    const [out, inC, kh, kw] = shape;
    this.canvas = canvas; this.shape = shape; this.view = view;
    this.order = order || Array.from({ length: out }, (_, i) => i);
    this.numbers = numbers !== false;
    this.gap = 2;
    if (view === "channels") { this.columns = inC; this.rows = out; }
    else { this.columns = Math.ceil(Math.sqrt(out)); this.rows = Math.ceil(out / this.columns); }
    // room for the numbers: above each cell (filters view), or a column on the left and a row on top (channels view)
    this.labelH = this.numbers && view !== "channels" ? 12 : 0;
    this.offX = this.numbers && view === "channels" ? 8 + 7 * String(out - 1).length : 0;
    this.offY = this.numbers && view === "channels" ? 12 : 0;
    const budget = (width || 560) - this.offX;
    this.pixel = Math.max(2, Math.min(24, Math.floor(budget / (this.columns * kw) - 0.5)));
    if (view === "filters") this.gap = Math.max(3, Math.round(this.pixel / 3));
    this.cellW = kw * this.pixel + this.gap; this.cellH = kh * this.pixel + this.gap;
    this.pitchY = this.cellH + this.labelH;
    canvas.width = this.offX + this.columns * this.cellW; canvas.height = this.offY + this.rows * this.pitchY;
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
    if (this.view !== "filters" || inC === 1) return CX.maxAbs(values);
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

  // The canvas position of a cell's top-left kernel pixel.
  origin(row, col) { return { x: this.offX + col * this.cellW, y: this.offY + row * this.pitchY + this.labelH }; }

  draw(values, limit) {
    const [, , kh, kw] = this.shape;
    const data = this.image.data, width = this.canvas.width, p = this.pixel;
    // the background between the cells, filled as whole pixels (one native fill, in the machine's byte order)
    if (!this.backgroundWord) this.backgroundWord = new Uint32Array(new Uint8ClampedArray([...CX.background(), 255]).buffer)[0];
    new Uint32Array(data.buffer).fill(this.backgroundWord);
    const words = new Uint32Array(data.buffer), colours = CX.packedColours();
    const rgba = new Uint8ClampedArray(4), packed = new Uint32Array(rgba.buffer);
    rgba[3] = 255;
    for (const cell of this.cells()) {
      if (this.view === "colour") {  // each channel's weight as its colour's intensity: 0.5 + w / (2 limit)
        const { x: x0, y: y0 } = this.origin(cell.row, cell.col);
        for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) {
          for (let c = 0; c < 3; c++) rgba[c] = Math.round((0.5 + this.cellValue(values, cell.filter, c, i, j) / (2 * limit)) * 255);
          const colour = packed[0];
          for (let dy = 0, o = (y0 + i * p) * width + x0 + j * p; dy < p; dy++, o += width) words.fill(colour, o, o + p);
        }
        continue;
      }
      const { x: x0, y: y0 } = this.origin(cell.row, cell.col);
      for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) {
        // the colour map's entry for the value, as CX.colour picks it; each row of the value's square is one fill
        let index = Math.round((this.cellValue(values, cell.filter, cell.channel, i, j) / limit + 1) / 2 * 255);
        index = index < 0 ? 0 : index > 255 ? 255 : index;
        const colour = colours[index];
        for (let dy = 0, o = (y0 + i * p) * width + x0 + j * p; dy < p; dy++, o += width) words.fill(colour, o, o + p);
      }
    }
    const ctx = this.canvas.getContext("2d");
    ctx.putImageData(this.image, 0, 0);
    if (this.numbers) this.drawNumbers(ctx);
  }

  drawNumbers(ctx) {
    ctx.fillStyle = CX.theme().muted || "#667085"; ctx.font = "10px sans-serif"; ctx.textBaseline = "alphabetic";
    if (this.view === "channels") {
      ctx.textAlign = "right";
      this.order.forEach((filter, row) => ctx.fillText(String(filter), this.offX - 4, this.offY + row * this.pitchY + this.cellH / 2 + 3));
      ctx.textAlign = "center";
      for (let c = 0; c < this.columns; c++) ctx.fillText(String(c), this.offX + c * this.cellW + (this.cellW - this.gap) / 2, 10);
    } else {
      ctx.textAlign = "left";
      for (const cell of this.cells()) {
        const { x, y } = this.origin(cell.row, cell.col);
        ctx.fillText(String(cell.filter), x, y - 2);
      }
    }
    ctx.textAlign = "left";
  }

  // What lies under canvas pixel (x, y): the filter, channel (null for a mean), kernel row and column.
  hit(x, y) {
    const [, inC, kh, kw] = this.shape;
    const col = Math.floor((x - this.offX) / this.cellW), row = Math.floor((y - this.offY) / this.pitchY);
    if (col < 0 || row < 0) return null;
    const o = this.origin(row, col);
    if (y < o.y || x < o.x) return null;  // a number's place, not a kernel pixel
    const i = Math.floor((y - o.y) / this.pixel), j = Math.floor((x - o.x) / this.pixel);
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
    const o = this.origin(row, col);
    return { x: o.x + (j + 0.5) * this.pixel, y: o.y + (i + 0.5) * this.pixel };
  }
}
CX.KernelGrid = KernelGrid;

// The mouse position in a canvas's own pixels (the canvas may be shown scaled).
CX.canvasPoint = function (canvas, event) {
  const box = canvas.getBoundingClientRect();
  return { x: (event.clientX - box.left) * canvas.width / box.width, y: (event.clientY - box.top) * canvas.height / box.height };
};
