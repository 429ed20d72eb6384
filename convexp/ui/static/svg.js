// convexp ui: a chart as SVG. SvgContext takes the calls a chart makes on a canvas's 2-D context (the subset
// charts.js uses) and writes them as SVG elements, so the one drawing code makes both the PNG and a vector
// picture; text is measured on a real canvas, as the chart on screen measured it.
"use strict";

class SvgContext {
  constructor(width, height) {
    this.width = width; this.height = height;
    this.parts = [];
    this.fillStyle = "#000"; this.strokeStyle = "#000"; this.lineWidth = 1; this.globalAlpha = 1;
    this.font = "10px sans-serif"; this.textAlign = "left";
    this.dash = []; this.path = ""; this.clips = 0; this.saved = [];
    this.measurer = document.createElement("canvas").getContext("2d");
  }
  static escape(text) { return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;"); }
  static n(x) { return Number(x.toFixed(2)); }
  measureText(text) { this.measurer.font = this.font; return this.measurer.measureText(text); }
  clearRect() { this.parts = []; }
  beginPath() { this.path = ""; }
  moveTo(x, y) { this.path += `M${SvgContext.n(x)} ${SvgContext.n(y)}`; }
  lineTo(x, y) { this.path += `L${SvgContext.n(x)} ${SvgContext.n(y)}`; }
  closePath() { this.path += "Z"; }
  rect(x, y, w, h) { this.path += `M${SvgContext.n(x)} ${SvgContext.n(y)}h${SvgContext.n(w)}v${SvgContext.n(h)}h${SvgContext.n(-w)}Z`; }
  setLineDash(dash) { this.dash = dash.slice(); }
  opacity() { return this.globalAlpha < 1 ? ` opacity="${this.globalAlpha}"` : ""; }
  stroke() {
    if (!this.path) return;
    const dash = this.dash.length ? ` stroke-dasharray="${this.dash.join(" ")}"` : "";
    this.parts.push(`<path d="${this.path}" fill="none" stroke="${this.strokeStyle}" stroke-width="${this.lineWidth}"${dash}${this.opacity()}/>`);
  }
  fill() { if (this.path) this.parts.push(`<path d="${this.path}" fill="${this.fillStyle}"${this.opacity()}/>`); }
  fillRect(x, y, w, h) {
    this.parts.push(`<rect x="${SvgContext.n(x)}" y="${SvgContext.n(y)}" width="${SvgContext.n(w)}" height="${SvgContext.n(h)}" fill="${this.fillStyle}"${this.opacity()}/>`);
  }
  fillText(text, x, y) {
    const anchor = { left: "start", center: "middle", right: "end" }[this.textAlign] || "start";
    const [size, ...family] = this.font.split(" ");
    this.parts.push(`<text x="${SvgContext.n(x)}" y="${SvgContext.n(y)}" font-size="${size}" font-family="${family.join(" ")}" text-anchor="${anchor}" fill="${this.fillStyle}"${this.opacity()}>${SvgContext.escape(text)}</text>`);
  }
  clip() {  // what follows, up to the restore, is drawn inside the path
    const id = `clip${this.clips++}`;
    this.parts.push(`<clipPath id="${id}"><path d="${this.path}"/></clipPath><g clip-path="url(#${id})">`);
    this.saved[this.saved.length - 1].groups++;
  }
  save() { this.saved.push({ groups: 0, fillStyle: this.fillStyle, strokeStyle: this.strokeStyle, lineWidth: this.lineWidth, globalAlpha: this.globalAlpha, font: this.font, textAlign: this.textAlign, dash: this.dash }); }
  restore() {
    const state = this.saved.pop();
    for (let i = 0; i < state.groups; i++) this.parts.push("</g>");
    Object.assign(this, { fillStyle: state.fillStyle, strokeStyle: state.strokeStyle, lineWidth: state.lineWidth, globalAlpha: state.globalAlpha, font: state.font, textAlign: state.textAlign, dash: state.dash });
  }
  // the picture: on the page's background colour, at the chart's size
  svg(background) {
    return `<svg xmlns="http://www.w3.org/2000/svg" width="${this.width}" height="${this.height}" viewBox="0 0 ${this.width} ${this.height}">` +
      `<rect width="100%" height="100%" fill="${background}"/>${this.parts.join("")}</svg>`;
  }
}

// A chart drawn into an SVG file, downloaded as `name`.
CX.saveSvg = function (chart, name) {
  const context = new SvgContext(chart.canvas.width, chart.canvas.height);
  chart.draw(undefined, context);
  chart.draw();  // the canvas as it was
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([context.svg(CX.theme().bg || "#fff")], { type: "image/svg+xml" }));
  link.download = name;
  document.body.append(link); link.click(); link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 0);
};
