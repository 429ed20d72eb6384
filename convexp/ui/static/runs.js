// convexp ui, runs page: filter, sort, tick runs to compare, and keep queued and running runs up to date.
"use strict";

const LIVE_STATUSES = ["queued", "running"];
const rows = new Map(JSON.parse(document.getElementById("runs-data").textContent).map((r) => [r.id, r]));
const COLUMNS = ["id", "experiment", "backend", "status", "attempts", "epochs", "steps", "test_accuracy", "seconds", "started"];
const selected = new Set();
let sortKey = "id", sortDescending = false;
const $ = (id) => document.getElementById(id);

function cell(row, key) {
  const td = document.createElement("td");
  const value = row[key];
  if (key === "id") {
    const a = document.createElement("a"); a.href = `/runs/${row.id}`; a.textContent = row.id; td.append(a);
  } else if (key === "status") {
    td.className = "status-cell";
    const badge = document.createElement("span"); badge.textContent = value; badge.dataset.status = value; td.append(badge);
    if (row.epochs_planned) {
      const bar = document.createElement("span"); bar.className = "progress";
      bar.title = `${row.epochs} of ${row.epochs_planned} epochs`;
      const fill = document.createElement("i"); fill.style.width = `${Math.min(100, 100 * row.epochs / row.epochs_planned)}%`;
      bar.append(fill); td.append(bar);
    }
  } else if (key === "test_accuracy") {
    td.textContent = value === null ? "" : Number(value).toFixed(4); td.className = "n";
  } else {
    td.textContent = value === null || value === undefined ? "" : value;
    if (typeof value === "number") td.className = "n";
  }
  return td;
}

function render() {
  const want = { experiment: $("filter-experiment").value, backend: $("filter-backend").value, status: $("filter-status").value };
  const shown = [...rows.values()].filter((r) => Object.entries(want).every(([k, v]) => !v || String(r[k]) === v));
  const numeric = document.querySelector(`th[data-key="${sortKey}"]`).dataset.type === "number";
  shown.sort((a, b) => {
    const x = a[sortKey], y = b[sortKey];
    const order = x === null ? 1 : y === null ? -1 : numeric ? x - y : String(x).localeCompare(String(y));
    return (sortDescending ? -order : order) || a.id - b.id;
  });
  const tbody = $("runs-table").tBodies[0];
  tbody.replaceChildren(...shown.map((row) => {
    const tr = document.createElement("tr");
    tr.dataset.run = row.id; tr.dataset.status = row.status; tr.dataset.steps = row.steps;
    const tick = document.createElement("input"); tick.type = "checkbox"; tick.checked = selected.has(row.id);
    tick.title = "compare"; tick.addEventListener("change", () => { tick.checked ? selected.add(row.id) : selected.delete(row.id); updateCompare(); });
    const first = document.createElement("td"); first.append(tick); tr.append(first);
    COLUMNS.forEach((key) => tr.append(cell(row, key)));
    return tr;
  }));
  $("runs-count").textContent = `${shown.length} of ${rows.size} run(s)`;
  document.querySelectorAll("th[data-key]").forEach((th) => {
    th.classList.toggle("sorted-asc", th.dataset.key === sortKey && !sortDescending);
    th.classList.toggle("sorted-desc", th.dataset.key === sortKey && sortDescending);
  });
}

function fillFilters() {
  for (const key of ["experiment", "backend", "status"]) {
    const select = $(`filter-${key}`), current = select.value;
    const values = [...new Set([...rows.values()].map((r) => String(r[key])))].sort();
    select.replaceChildren(new Option("all", ""), ...values.map((v) => new Option(v, v)));
    select.value = values.includes(current) ? current : "";
  }
}

function updateCompare() {
  const button = $("compare-button");
  button.disabled = selected.size < 2;
  button.textContent = selected.size >= 2 ? `Compare ${selected.size} runs` : "Compare selected";
}

async function poll() {
  const live = [...rows.values()].filter((r) => LIVE_STATUSES.includes(r.status)).map((r) => r.id);
  const after = rows.size ? Math.max(...rows.keys()) : 0;
  try {
    const response = await fetch(`/api/runs?ids=${live.join(",")}&after=${after}`);
    if (response.ok) {
      const body = await response.json();
      let changed = false;
      for (const row of body.runs) {
        const old = rows.get(row.id);
        if (!old || JSON.stringify(old) !== JSON.stringify(row)) { rows.set(row.id, row); changed = true; }
      }
      if (changed) { if ($("no-runs")) $("no-runs").remove(); fillFilters(); render(); }
    }
  } catch (error) { /* the next poll tries again */ }
  setTimeout(poll, 1000);
}

document.querySelectorAll("th[data-key]").forEach((th) => th.addEventListener("click", () => {
  sortDescending = th.dataset.key === sortKey ? !sortDescending : false;
  sortKey = th.dataset.key; render();
}));
["experiment", "backend", "status"].forEach((key) => $(`filter-${key}`).addEventListener("change", render));
$("compare-button").addEventListener("click", () => { location.href = `/compare?runs=${[...selected].sort((a, b) => a - b).join(",")}`; });
fillFilters();
render();
setTimeout(poll, 1000);
