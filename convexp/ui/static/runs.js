// convexp ui, runs page: filter (also on parameters), sort, tick runs to compare, keep queued and running runs
// up to date; the filters and the sort live in the URL, so a view can be shared.
"use strict";

const LIVE_STATUSES = ["queued", "running"];
const rows = new Map(JSON.parse(document.getElementById("runs-data").textContent).map((r) => [r.id, r]));
const COLUMNS = ["id", "name", "experiment", "backend", "status", "attempts", "epochs", "steps", "test_accuracy", "seconds", "tags", "started"];
const FILTERS = ["experiment", "backend", "status"];
const selected = new Set();
const url = new URLSearchParams(location.search);
let sortKey = url.get("sort") || "id", sortDescending = url.get("desc") === "1";
let paramColumns = [];
const $ = (id) => document.getElementById(id);

// a run's value of a column: its own field, or a parameter (p:FIELD)
const valueOf = (row, key) => key.startsWith("p:") ? row.params[key.slice(2)] : row[key];

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
  const value = valueOf(row, key);
  if (key === "id") {
    const a = document.createElement("a"); a.href = `/runs/${row.id}`; a.textContent = row.id; td.append(a);
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

function header() {
  const tr = $("runs-table").tHead.rows[0];
  tr.querySelectorAll("th.param").forEach((th) => th.remove());
  for (const field of paramColumns) {
    const th = document.createElement("th");
    th.className = "param"; th.dataset.key = `p:${field}`; th.textContent = field; th.title = "a parameter of the run's spec";
    th.addEventListener("click", () => sortBy(th.dataset.key));
    tr.append(th);
  }
}

function saveState() {
  const next = new URLSearchParams();
  for (const key of FILTERS) if ($(`filter-${key}`).value) next.set(key, $(`filter-${key}`).value);
  if ($("filter-where").value.trim()) next.set("where", $("filter-where").value.trim());
  if (wantedTags().length) next.set("tags", wantedTags().join(","));
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
  let shown = [...rows.values()].filter((r) => Object.entries(want).every(([k, v]) => !v || String(r[k]) === v))
    .filter((r) => tags.every((t) => r.tags.includes(t)));
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
  paramColumns = want.experiment || conditions.length ? varying(shown) : [];
  header();
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
  tbody.replaceChildren(...shown.map((row) => {
    const tr = document.createElement("tr");
    tr.dataset.run = row.id; tr.dataset.status = row.status; tr.dataset.steps = row.steps;
    const tick = document.createElement("input"); tick.type = "checkbox"; tick.checked = selected.has(row.id);
    tick.title = "compare"; tick.addEventListener("change", () => { tick.checked ? selected.add(row.id) : selected.delete(row.id); updateCompare(); });
    const first = document.createElement("td"); first.append(tick); tr.append(first);
    COLUMNS.forEach((key) => tr.append(cell(row, key)));
    paramColumns.forEach((field) => tr.append(cell(row, `p:${field}`)));
    return tr;
  }));
  $("runs-count").textContent = `${shown.length} of ${rows.size} run(s)`;
  document.querySelectorAll("th[data-key]").forEach((th) => {
    th.classList.toggle("sorted-asc", th.dataset.key === sortKey && !sortDescending);
    th.classList.toggle("sorted-desc", th.dataset.key === sortKey && sortDescending);
  });
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

document.querySelectorAll("th[data-key]").forEach((th) => th.addEventListener("click", () => sortBy(th.dataset.key)));
FILTERS.forEach((key) => $(`filter-${key}`).addEventListener("change", render));
$("filter-where").value = url.get("where") || "";
$("filter-where").addEventListener("change", render);
$("filter-tags").value = (url.get("tags") || "").split(",").filter(Boolean).join(" ");
$("filter-tags").addEventListener("change", render);
$("compare-button").addEventListener("click", () => { location.href = `/compare?runs=${[...selected].sort((a, b) => a - b).join(",")}`; });
fillFilters(true);
render();
setTimeout(poll, 1000);
