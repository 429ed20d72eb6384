// convexp ui, runs page: filter (also on parameters), sort, tick runs to compare, keep queued and running runs
// up to date; the filters and the sort live in the URL, so a view can be shared.
"use strict";

const LIVE_STATUSES = ["queued", "running"];
const rows = new Map(JSON.parse(document.getElementById("runs-data").textContent).map((r) => [r.id, r]));
// the key columns first (what a run is and how it went), so that they stay in view on a narrow window
const COLUMNS = ["id", "name", "status", "steps", "test_accuracy", "seconds", "tags", "experiment", "backend", "epochs", "attempts", "started"];
// id and name stay in place when the table scrolls sideways (with the tick before them)
const STICKY = ["tick", "id", "name"];
// the fields of a list's items (layers.0.filters, layers.1.units ...), when at least this many vary, are shown as
// one collapsed column until opened
const GROUP_AT = 4;
const FILTERS = ["experiment", "backend", "status"];
// the ticked runs: a pinned set, kept in this browser for this database across reloads and filters, to compare
const PINS = `convexp.pinned:${document.querySelector("header .where").textContent}`;
const selected = new Set(JSON.parse(localStorage.getItem(PINS) || "[]"));
const savePins = () => localStorage.setItem(PINS, JSON.stringify([...selected]));
// rows drawn at first, and added by each "show more": the table of a large sweep is drawn in a blink
const ROWS_AT_ONCE = 100;
let rowsShown = ROWS_AT_ONCE;
const url = new URLSearchParams(location.search);
let sortKey = url.get("sort") || "id", sortDescending = url.get("desc") === "1";
let paramColumns = [], paramColumnsAll = [];  // [{field, head}] or [{group, fields}] in order: shown, and all
const hidden = new Set((url.get("hide") || "").split(",").filter(Boolean));  // columns the chooser took out
const opened = new Set((url.get("open") || "").split(",").filter(Boolean));  // parameter groups shown in full
const $ = (id) => document.getElementById(id);

// metrics shown as columns: "m:NAME:HOW" or "m:NAME:at:STEP" -> {run id: value}, fetched from the app
const metricColumns = (url.get("metrics") || "").split(",").filter(Boolean).map((m) => `m:${m}`);
const metricValues = new Map();
const metricLabel = (key) => { const [, name, how, step] = key.split(":"); return how === "at" ? `${name} at ${step}` : `${name} (${how})`; };

// a run's value of a column: its own field, a parameter (p:FIELD), or a metric (m:...)
const valueOf = (row, key) => key.startsWith("p:") ? row.params[key.slice(2)]
  : key.startsWith("m:") ? (metricValues.get(key) || {})[row.id] ?? null : row[key];

// "FIELD=VALUE FIELD<VALUE ..." as conditions, the grammar of convexp runs --where (convexp/analysis/parameters.py's
// Condition): =, == and != compare numbers as numbers, else as text; <, <=, >, >= compare numbers only
const OPERATORS = ["<=", ">=", "!=", "==", "<", ">", "="];
function parseWhere(text) {
  return text.trim().split(/\s+/).filter(Boolean).map((part) => {
    let at = -1, operator = "";
    for (const op of OPERATORS) {
      const i = part.indexOf(op);
      if (i >= 0 && (at < 0 || i < at || (i === at && op.length > operator.length))) { at = i; operator = op; }
    }
    if (at <= 0) throw new Error(`where '${part}': write FIELD=VALUE (or !=, <, <=, >, >=), e.g. initializer=he_normal`);
    const value = part.slice(at + operator.length);
    if (["<", "<=", ">", ">="].includes(operator) && (value.trim() === "" || !isFinite(Number(value)))) {
      throw new Error(`where '${part}': ${operator} compares numbers, and '${value}' is not one`);
    }
    return { field: part.slice(0, at), value, operator: operator === "==" ? "=" : operator };
  });
}

function asText(value) {
  if (value === true) return "true";
  if (value === false) return "false";
  if (value === null || value === undefined) return "null";
  return String(value);
}

function matches(row, condition) {
  const actual = row.params[condition.field];
  const wanted = condition.value.trim() === "" ? NaN : Number(condition.value);
  const number = typeof actual === "number" ? actual : NaN;
  if (condition.operator === "=" || condition.operator === "!=") {
    const equal = isFinite(wanted) && isFinite(number) ? number === wanted : asText(actual) === condition.value;
    return condition.operator === "=" ? equal : !equal && actual !== null && actual !== undefined;  // != holds for a value only
  }
  if (!isFinite(wanted) || !isFinite(number)) return false;
  return { "<": number < wanted, "<=": number <= wanted, ">": number > wanted, ">=": number >= wanted }[condition.operator];
}

function cell(row, key) {
  const td = document.createElement("td");
  td.dataset.key = key;
  const value = valueOf(row, key);
  if (key === "id") {
    const a = document.createElement("a"); a.href = `/runs/${row.id}`; a.textContent = row.id; td.append(CX.swatch(row.id), a);
  } else if (key === "experiment") {
    const a = document.createElement("a"); a.href = `/experiments/${encodeURIComponent(value)}`; a.textContent = value;
    a.title = "its runs grouped by a parameter"; td.append(a);
  } else if (key === "status") {
    td.className = "status-cell";
    const badge = document.createElement("span"); badge.textContent = value; badge.dataset.status = value; td.append(badge);
    if (row.steps_planned || row.epochs_planned) {  // by steps, so that it moves within an epoch
      const bar = document.createElement("span"); bar.className = "progress";
      const share = row.steps_planned ? row.steps / row.steps_planned : row.epochs / row.epochs_planned;
      bar.title = row.steps_planned ? `${row.steps} of ${row.steps_planned} steps, ${row.epochs} of ${row.epochs_planned} epochs` +
        (row.seconds_left !== null && row.seconds_left !== undefined ? `, about ${CX.duration(row.seconds_left)} left` : "")
        : `${row.epochs} of ${row.epochs_planned} epochs`;
      bar.dataset.share = share;
      const fill = document.createElement("i"); fill.style.width = `${Math.min(100, 100 * share)}%`;
      bar.append(fill); td.append(bar);
      if (row.status === "running" && row.seconds_left !== null && row.seconds_left !== undefined) {
        const left = document.createElement("span"); left.className = "muted time-left";
        left.textContent = ` ~${CX.duration(row.seconds_left)} left`; td.append(left);
      }
    }
  } else if (key === "tags") {
    for (const tag of value) {  // a tag is a filter: clicking it shows the runs that carry it
      const a = document.createElement("a"); a.href = "#"; a.className = "tag"; a.textContent = tag; a.title = `only runs tagged ${tag}`;
      a.addEventListener("click", (e) => { e.preventDefault(); addTagFilter(tag); });
      td.append(a, " ");
    }
  } else if (key === "name") {
    td.textContent = value || ""; if (value) td.title = value;  // a long name is cut short here: all of it on hover
  } else if (key.startsWith("m:")) {
    td.textContent = value === null ? "" : CX.fmt(value, 5); td.className = "n";
  } else if (key === "test_accuracy") {
    td.textContent = value === null ? "" : Number(value).toFixed(4); td.className = "n";
  } else {
    td.textContent = value === null || value === undefined ? "" : value;
    if (typeof value === "number") td.className = "n";
  }
  return td;
}

// the parameters that vary among the runs shown, in their order; a column that repeats an earlier one
// in every run (kernel_initializer beside initializer) is left out, as convexp runs leaves it out
function varying(shown) {
  const fields = [];
  for (const r of shown) for (const f of Object.keys(r.params)) if (!fields.includes(f)) fields.push(f);
  const seen = new Set(), result = [];
  for (const f of fields) {
    if (COLUMNS.includes(f)) continue;
    const column = JSON.stringify(shown.map((r) => r.params[f] === undefined ? null : r.params[f]));
    if (new Set(shown.map((r) => JSON.stringify(r.params[f] === undefined ? null : r.params[f]))).size < 2 || seen.has(column)) continue;
    seen.add(column); result.push(f);
  }
  return result;
}

// the varying parameters as columns: GROUP_AT or more fields of one list's items (layers.N.*) as one group column,
// collapsed unless opened
function grouped(fields) {
  // fields of a list's items (layers.0.filters, layers.3.units): a field with a number among its parts
  const itemOf = (f) => f.split(".").slice(1).some((part) => /^\d+$/.test(part));
  const counts = new Map();
  for (const f of fields) if (itemOf(f)) { const head = f.split(".")[0]; counts.set(head, (counts.get(head) || 0) + 1); }
  const columns = [], groups = new Map();
  for (const f of fields) {
    const head = f.split(".")[0], many = itemOf(f) && counts.get(head) >= GROUP_AT;
    if (!many || opened.has(head)) { columns.push({ field: f, head: many ? head : null }); continue; }
    if (!groups.has(head)) { const group = { group: head, fields: [] }; groups.set(head, group); columns.push(group); }
    groups.get(head).fields.push(f);
  }
  return columns;
}
const columnKey = (c) => c.group ? `g:${c.group}` : `p:${c.field}`;

function toggleGroup(head) {
  opened.has(head) ? opened.delete(head) : opened.add(head);
  render();
}

// fetch each metric column's values (again: a live run's change)
async function loadMetricColumns() {
  await Promise.all(metricColumns.map(async (key) => {
    const [, name, how, step] = key.split(":");
    const query = new URLSearchParams({ name, how, ...(how === "at" ? { step } : {}) });
    metricValues.set(key, (await CX.json(`/api/metric-column?${query}`)).values);
  }));
}

function metricHeaders(tr) {
  const before = tr.querySelector('th[data-key="tags"]');
  for (const key of metricColumns) {
    const th = document.createElement("th");
    th.className = "metric"; th.dataset.key = key; th.dataset.type = "number"; th.textContent = metricLabel(key);
    th.title = "a metric of each run; click to sort";
    th.addEventListener("click", () => sortBy(key));
    const remove = document.createElement("button"); remove.textContent = "×"; remove.title = "remove this column";
    remove.addEventListener("click", (e) => { e.stopPropagation(); metricColumns.splice(metricColumns.indexOf(key), 1); render(); });
    th.append(remove);
    tr.insertBefore(th, before);
  }
}

function header() {
  const tr = $("runs-table").tHead.rows[0];
  tr.querySelectorAll("th.param, th.param-group, th.metric").forEach((th) => th.remove());
  metricHeaders(tr);
  tr.querySelectorAll("th[data-key]").forEach((th) => { th.hidden = hidden.has(th.dataset.key); });
  for (const column of paramColumns) {
    const th = document.createElement("th");
    if (column.group) {
      th.className = "param-group"; th.dataset.group = column.group;
      th.textContent = `${column.group}.* (${column.fields.length}) ▸`;
      th.title = `${column.fields.length} parameters that vary: ${column.fields.join(", ")}; click to show each`;
      th.addEventListener("click", () => toggleGroup(column.group));
    } else {
      th.className = "param"; th.dataset.key = `p:${column.field}`; th.textContent = column.field; th.title = "a parameter of the run's spec";
      th.addEventListener("click", () => sortBy(th.dataset.key));
      if (column.head) {  // an opened group: its first column closes it again
        const close = document.createElement("button"); close.className = "ungroup"; close.textContent = "◂";
        close.title = `show ${column.head}.* as one column`; close.dataset.group = column.head;
        close.addEventListener("click", (e) => { e.stopPropagation(); toggleGroup(column.head); });
        if (paramColumns.find((c) => c.head === column.head) === column) th.prepend(close);
      }
    }
    tr.append(th);
  }
}

// a collapsed group's cell: the run's values of its parameters, cut short (all of them on hover)
function groupCell(row, column) {
  const td = document.createElement("td");
  td.className = "group-cell"; td.dataset.group = column.group;
  const text = column.fields.map((f) => `${f.slice(column.group.length + 1)}=${asText(row.params[f])}`).join(" ");
  td.textContent = text; td.title = text;
  return td;
}

// id and name stay put when the table scrolls sideways: each sticky cell's offset is the width of those before it
function pinColumns() {
  const table = $("runs-table"), first = table.tBodies[0].rows[0] || table.tHead.rows[0];
  let left = 0;
  const offsets = {};
  for (const key of STICKY) {
    const at = key === "tick" ? first.cells[0] : first.querySelector(`[data-key="${key}"]`);
    if (!at || at.hidden) continue;
    offsets[key] = left; left += at.getBoundingClientRect().width;
  }
  for (const [key, offset] of Object.entries(offsets)) {
    const selector = key === "tick" ? "tr > :first-child" : `[data-key="${key}"]`;
    table.querySelectorAll(selector).forEach((c) => { c.classList.add("sticky"); c.style.left = `${offset}px`; });
  }
}

// the column chooser: every column but id, and each parameter column or group, ticked when shown
function fillChooser() {
  const list = $("column-list");
  const keys = COLUMNS.filter((k) => k !== "id").map((k) => [k, k]);
  const params = paramColumnsAll.map((c) => [columnKey(c), c.group ? `${c.group}.*` : c.field]);
  list.replaceChildren(...[...keys, ...params].map(([key, label]) => {
    const item = document.createElement("label");
    const box = document.createElement("input"); box.type = "checkbox"; box.checked = !hidden.has(key); box.dataset.key = key;
    box.addEventListener("change", () => { box.checked ? hidden.delete(key) : hidden.add(key); render(); });
    item.append(box, ` ${label}`);
    return item;
  }));
}

function saveState() {
  const next = new URLSearchParams();
  for (const key of FILTERS) if ($(`filter-${key}`).value) next.set(key, $(`filter-${key}`).value);
  if ($("filter-text").value.trim()) next.set("q", $("filter-text").value.trim());
  if ($("pinned-only").checked) next.set("pinned", "1");
  if ($("filter-where").value.trim()) next.set("where", $("filter-where").value.trim());
  if (wantedTags().length) next.set("tags", wantedTags().join(","));
  if (hidden.size) next.set("hide", [...hidden].join(","));
  if (metricColumns.length) next.set("metrics", metricColumns.map((k) => k.slice(2)).join(","));
  if (opened.size) next.set("open", [...opened].join(","));
  if (sortKey !== "id") next.set("sort", sortKey);
  if (sortDescending) next.set("desc", "1");
  const query = next.toString();
  history.replaceState(null, "", query ? `${location.pathname}?${query}` : location.pathname);
}

// the tags typed in the filter box: a run is shown when it carries every one (as convexp runs --tag)
const wantedTags = () => $("filter-tags").value.split(/[\s,]+/).filter(Boolean);
function addTagFilter(tag) {
  if (!wantedTags().includes(tag)) $("filter-tags").value = [...wantedTags(), tag].join(" ");
  render();
}

function render() {
  const want = Object.fromEntries(FILTERS.map((k) => [k, $(`filter-${k}`).value]));
  const tags = wantedTags();
  const text = $("filter-text").value.trim().toLowerCase(), pinnedOnly = $("pinned-only").checked;
  let shown = [...rows.values()].filter((r) => Object.entries(want).every(([k, v]) => !v || String(r[k]) === v))
    .filter((r) => tags.every((t) => r.tags.includes(t)))
    .filter((r) => !text || [String(r.id), r.name, r.experiment, ...r.tags, r.notes].some((v) => v && v.toLowerCase().includes(text)))
    .filter((r) => !pinnedOnly || selected.has(r.id));
  let conditions = [];
  $("where-error").hidden = true;
  try {
    conditions = parseWhere($("filter-where").value);
    const known = new Set(shown.flatMap((r) => Object.keys(r.params)));
    const unknown = conditions.find((c) => !known.has(c.field));
    if (unknown && shown.length) throw new Error(`where ${unknown.field}: no such field in these runs; fields: ${[...known].join(", ")}`);
  } catch (error) {
    $("where-error").textContent = error.message; $("where-error").hidden = false; conditions = [];
  }
  shown = shown.filter((r) => conditions.every((c) => matches(r, c)));
  const fields = want.experiment || conditions.length ? varying(shown) : [];
  paramColumnsAll = grouped(fields);  // every parameter column, for the chooser
  paramColumns = paramColumnsAll.filter((c) => !hidden.has(columnKey(c)));
  header();
  fillChooser();
  // a parameter sorted by stays the order while its column is hidden (the runs shown all have one value)
  const th = document.querySelector(`th[data-key="${CSS.escape(sortKey)}"]`);
  const numeric = (th && th.dataset.type === "number") ||
    (sortKey.startsWith("p:") && shown.every((r) => typeof valueOf(r, sortKey) === "number" || valueOf(r, sortKey) == null));
  shown.sort((a, b) => {
    const text = (v) => Array.isArray(v) ? (v.length ? v.join(",") : null) : v;  // tags sort by their text; none last
    const x = text(valueOf(a, sortKey)), y = text(valueOf(b, sortKey));
    const order = x === null && y === null ? 0 : x === null ? 1 : y === null ? -1 : numeric ? x - y : String(x).localeCompare(String(y));
    return (sortDescending ? -order : order) || a.id - b.id;
  });
  const tbody = $("runs-table").tBodies[0];
  const drawn = shown.slice(0, rowsShown);  // the first rows; the rest a click away (a sweep has thousands)
  tbody.replaceChildren(...drawn.map((row) => {
    const tr = document.createElement("tr");
    tr.dataset.run = row.id; tr.dataset.status = row.status; tr.dataset.steps = row.steps;
    const tick = document.createElement("input"); tick.type = "checkbox"; tick.checked = selected.has(row.id);
    tick.title = "pin to compare (kept across reloads)";
    tick.addEventListener("change", () => { tick.checked ? selected.add(row.id) : selected.delete(row.id); savePins(); updateCompare(); });
    const first = document.createElement("td"); first.append(tick); tr.append(first);
    COLUMNS.filter((key) => !hidden.has(key)).forEach((key) => {
      if (key === "tags") metricColumns.forEach((m) => tr.append(cell(row, m)));  // metrics after the key columns
      tr.append(cell(row, key));
    });
    paramColumns.forEach((c) => tr.append(c.group ? groupCell(row, c) : cell(row, `p:${c.field}`)));
    return tr;
  }));
  $("runs-count").textContent = `${shown.length} of ${rows.size} run(s)`;
  $("more-runs").hidden = drawn.length === shown.length;
  $("more-count").textContent = `${drawn.length} of ${shown.length} shown`;
  document.querySelectorAll("th[data-key]").forEach((th) => {
    th.classList.toggle("sorted-asc", th.dataset.key === sortKey && !sortDescending);
    th.classList.toggle("sorted-desc", th.dataset.key === sortKey && sortDescending);
  });
  pinColumns();  // last: the sort mark widens its header
  saveState();
}

function sortBy(key) {
  sortDescending = key === sortKey ? !sortDescending : false;
  sortKey = key; render();
}

function fillFilters(initial) {
  for (const key of FILTERS) {
    const select = $(`filter-${key}`), current = initial ? url.get(key) || "" : select.value;
    const values = [...new Set([...rows.values()].map((r) => String(r[key])))].sort();
    select.replaceChildren(new Option("all", ""), ...values.map((v) => new Option(v, v)));
    select.value = values.includes(current) ? current : "";
  }
}

function updateCompare() {
  const button = $("compare-button");
  button.disabled = selected.size < 2;
  button.textContent = selected.size >= 2 ? `Compare ${selected.size} pinned runs` : "Compare pinned";
  $("unpin").hidden = selected.size === 0;
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
      if (changed) {
        if ($("no-runs")) $("no-runs").remove();
        if (metricColumns.length) await loadMetricColumns();
        fillFilters(); render();
      }
    }
  } catch (error) { /* the next poll tries again */ }
  setTimeout(poll, 1000);
}

document.querySelectorAll("th[data-key]").forEach((th) => th.addEventListener("click", () => sortBy(th.dataset.key)));
FILTERS.forEach((key) => $(`filter-${key}`).addEventListener("change", render));
$("pinned-only").checked = url.get("pinned") === "1";
$("pinned-only").addEventListener("change", render);
$("unpin").addEventListener("click", () => { selected.clear(); savePins(); updateCompare(); render(); });
$("filter-text").value = url.get("q") || "";
$("filter-text").addEventListener("input", () => { rowsShown = ROWS_AT_ONCE; render(); });
$("filter-where").value = url.get("where") || "";
$("filter-where").addEventListener("change", render);
$("filter-tags").value = (url.get("tags") || "").split(",").filter(Boolean).join(" ");
$("filter-tags").addEventListener("change", render);
$("show-more").addEventListener("click", () => { rowsShown += ROWS_AT_ONCE; render(); });
$("show-all").addEventListener("click", () => { rowsShown = Infinity; render(); });
$("compare-button").addEventListener("click", () => { location.href = `/compare?runs=${[...selected].sort((a, b) => a - b).join(",")}`; });
// the chooser's metric columns: the names once it is opened, a column added on "add column"
$("column-chooser").addEventListener("toggle", async () => {
  if (!$("column-chooser").open || $("metric-name").options.length) return;
  const names = (await CX.json("/api/metric-names")).names;
  $("metric-name").replaceChildren(...names.map((n) => new Option(n, n)));
});
$("metric-how").addEventListener("change", () => { $("metric-step").hidden = $("metric-how").value !== "at"; });
$("metric-add").addEventListener("click", async () => {
  const name = $("metric-name").value, how = $("metric-how").value, step = $("metric-step").value;
  if (!name || (how === "at" && step === "")) return;
  const key = how === "at" ? `m:${name}:at:${Number(step)}` : `m:${name}:${how}`;
  if (!metricColumns.includes(key)) metricColumns.push(key);
  await loadMetricColumns();
  render();
});
fillFilters(true);
function firstRender() {
  render();
  updateCompare();
  window.cxReadyAt = performance.now();  // ms since the navigation began: the table drawn (benchmarks/ui_views.py)
}
// metric columns in the address: their values first (a metric the database lacks leaves its column empty)
if (metricColumns.length) loadMetricColumns().then(firstRender, firstRender); else firstRender();
new ResizeObserver(() => pinColumns()).observe($("runs-table"));
setTimeout(poll, 1000);
