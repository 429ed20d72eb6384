// convexp ui, compare page: each run's filters at the compared step, in the order of the Hungarian matching.
"use strict";

const COMPARISON = JSON.parse(document.getElementById("compare-data").textContent);
const $ = (id) => document.getElementById(id);

async function drawLayer(layer) {
  const row = document.querySelector(`.compare-row[data-layer="${CSS.escape(layer.layer)}"]`);
  const canvases = [...row.querySelectorAll("canvas")];
  const snapshots = await Promise.all(COMPARISON.run_rows.map((r, k) => CX.kernels(r.id, layer.layer, layer.steps[k], 1)));
  // run k's filter matched to each of the first run's filters 0, 1, ...: the matching convexp compare reports
  const orders = snapshots.map((s, k) => layer.matches[k].slice().sort((a, b) => a.filter - b.filter).map((m) => m.matched_filter));
  const grids = snapshots.map((s, k) => new CX.KernelGrid(canvases[k], s[0].shape, "filters", orders[k], 360));
  const limit = Math.max(...grids.map((g, k) => g.maxAbs(snapshots[k][0].values)));  // one scale for the layer: what is drawn
  row.dataset.limit = limit;
  snapshots.forEach((s, k) => {
    const order = orders[k], grid = grids[k];
    grid.draw(s[0].values, limit);
    canvases[k].dataset.order = order.join(",");
    canvases[k].addEventListener("mousemove", (event) => {
      const p = CX.canvasPoint(canvases[k], event);
      const hit = grid.hit(p.x, p.y);
      if (!hit) return;
      const value = grid.cellValue(s[0].values, hit.filter, hit.channel, hit.i, hit.j);
      const position = order.indexOf(hit.filter);
      $("compare-readout").textContent = `run ${COMPARISON.run_rows[k].id} · filter ${hit.filter} (matched to run ${COMPARISON.run_rows[0].id}'s filter ${position}, ` +
        `cosine ${layer.matches[k][position].cosine}) · row ${hit.i}, col ${hit.j} · ${value.toPrecision(9)}`;
    });
  });
  const bar = row.nextElementSibling;
  CX.colorbar(bar.querySelector("canvas"), bar.querySelector(".scale-low"), bar.querySelector(".scale-high"), limit);
  row.dataset.drawn = "true";
}

COMPARISON.layers.forEach((layer) => drawLayer(layer).catch((error) => { $("compare-readout").textContent = String(error.message || error); }));
