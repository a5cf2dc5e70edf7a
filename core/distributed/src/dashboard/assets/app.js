// Rask dashboard: plain JavaScript, no dependencies. It listens to the
// scheduler's Server-Sent Events (one snapshot per update) and redraws what
// is on screen. `window.raskDashboard` exposes counters for tests.
"use strict";

const HISTOGRAM_ABOVE = 100;   // workers: bars become histograms above this
const STREAM_WINDOW_MS = 20000; // the task stream shows the last 20 s
const STREAM_KEEP = 20000;      // entries kept in the page

const HISTORY = 240;            // samples kept per worker for its page (about a minute)
const KIND_COLOR = { transfer: "#dc2626", "disk-write": "#f59e0b", "disk-read": "#d97706" };

const state = {
  snapshot: null,
  stream: [],            // task runs, transfers and disk I/O received, oldest first
  history: new Map(),    // worker id -> [{t, mem, unmanaged, processing, cpu}]
  updates: 0,
  streamCount: 0,
  kinds: {},             // stream entries received, by kind
  failuresSeen: -1,
  logLines: 0,           // lines on the logs page
  logSince: 0,           // the number of the last line received
  logsBusy: false,       // a logs request is on its way
  page: "status",
  param: null,           // the worker id of a worker page
  graph: null,           // the last graph drawn: {kind, nodes, edges}
  graphAsked: 0,
  workerAsked: 0,
  renderMs: 0,           // time of the last redraw
  renderMsMax: 0,
};
window.raskDashboard = state;

const $ = (sel) => document.querySelector(sel);

function fmtBytes(n) {
  if (!n) return "0 B";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + u[i];
}

function fmtNum(n) { return Number(n).toLocaleString("en-US"); }

function entryColor(e) {
  return e.kind ? KIND_COLOR[e.kind] || "#6b7280" : colorOf(e.prefix);
}

function colorOf(prefix) {
  // FNV-1a, then the golden angle: similar names (stage01, stage02) get far-apart hues.
  let h = 2166136261;
  for (let i = 0; i < prefix.length; i++) h = Math.imul(h ^ prefix.charCodeAt(i), 16777619) >>> 0;
  return "hsl(" + Math.round((h % 1000) * 137.508) % 360 + ", 62%, 52%)";
}

function el(tag, attrs, children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v;
    else if (k === "style") e.style.cssText = v;
    else e.setAttribute(k, v);
  }
  for (const c of children || []) e.appendChild(c);
  return e;
}

function bar(parts) {
  const b = el("div", { class: "bar" });
  for (const [frac, color, title] of parts) {
    if (frac > 0) b.appendChild(el("div", { style: "width:" + (100 * Math.min(frac, 1)) + "%;background:" + color, title: title || "" }));
  }
  return b;
}

// Updates a bar made by bar() in place: one segment per part.
function setBar(b, parts) {
  while (b.children.length < parts.length) b.appendChild(el("div"));
  while (b.children.length > parts.length) b.lastChild.remove();
  parts.forEach(([frac, color, title], i) => {
    const d = b.children[i];
    d.style.width = 100 * Math.max(0, Math.min(frac || 0, 1)) + "%";
    d.style.background = color;
    d.title = title || "";
  });
}

// Keeps one element per key in `box` (made once by `make`, refreshed by
// `update`), in the order of `items`: updates change text and widths only,
// so a redraw costs little layout work.
function syncRows(box, items, keyOf, make, update) {
  if (!box._rows) { box.textContent = ""; box._rows = new Map(); }
  const rows = box._rows;
  const keep = new Set();
  let prev = null;
  for (const it of items) {
    const k = keyOf(it);
    keep.add(k);
    let r = rows.get(k);
    if (!r) { r = make(it); rows.set(k, r); }
    update(r, it);
    const next = prev ? prev.nextSibling : box.firstChild;
    if (next !== r) box.insertBefore(r, next);
    prev = r;
  }
  for (const [k, r] of rows) if (!keep.has(k)) { r.remove(); rows.delete(k); }
}

// Replaces the content of `box` with a message (and forgets its rows).
function boxMessage(box, text) {
  box._rows = null;
  box._hist = null;
  box.textContent = "";
  box.appendChild(el("div", { class: "empty", text: text }));
}

// ---------------------------------------------------------------- pages

// `#status`, `#workers`, … or `#worker/<id>`.
function showPage(hash) {
  const [name, param] = hash.split("/");
  state.page = name;
  state.param = param === undefined ? null : decodeURIComponent(param);
  document.querySelectorAll("section.page").forEach((s) => s.classList.toggle("active", s.id === "page-" + name));
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === name));
  if (name === "failures") loadFailures();
  if (name === "logs") loadLogs();
  if (name === "graph") { state.graphAsked = 0; }
  if (state.snapshot) render(state.snapshot);
}

window.addEventListener("hashchange", () => showPage((location.hash || "#status").slice(1)));

// ---------------------------------------------------------------- status

function renderTotals(s) {
  const items = [["workers", s.workers.length], ["threads", s.workers.reduce((a, w) => a + w.nthreads, 0)]];
  s.states.forEach((n, i) => items.push([n, s.totals[i]]));
  items.push(["clients", s.clients]);
  syncRows($("#totals"), items, (it) => it[0],
    (it) => { const sp = el("span", { id: "total-" + it[0] }, [el("b")]); sp.appendChild(document.createTextNode(" " + it[0])); return sp; },
    (sp, it) => { sp.firstChild.textContent = fmtNum(it[1]); });
}

function renderMemory(s) {
  const sum = (f) => s.workers.reduce((a, w) => a + f(w), 0);
  const managed = sum((w) => w.memory), unmanaged = sum((w) => w.unmanaged), spilled = sum((w) => w.spilled);
  const limit = sum((w) => w.memory_limit);
  const scale = limit || Math.max(1, managed + unmanaged + spilled);
  setBar($("#cluster-memory"), [
    [managed / scale, "var(--mem)", "managed " + fmtBytes(managed)],
    [unmanaged / scale, "var(--unmanaged)", "unmanaged " + fmtBytes(unmanaged)],
    [spilled / scale, "#a3a3a3", "spilled " + fmtBytes(spilled)],
  ]);
  $("#cluster-memory-text").textContent = fmtBytes(managed) + " managed · " + fmtBytes(unmanaged) + " unmanaged · " +
    fmtBytes(spilled) + " spilled" + (limit ? " · limit " + fmtBytes(limit) : "");
}

function renderWorkerBars(s) {
  const box = $("#worker-bars");
  if (s.workers.length === 0) { boxMessage(box, "no workers"); return; }
  if (s.workers.length > HISTOGRAM_ABOVE) { histograms(box, s.workers); return; }
  if (box._hist) { box._hist = null; box.textContent = ""; }
  // Against each worker's limit; without limits, against the fullest worker.
  const maxMem = Math.max(1, ...s.workers.map((w) => w.memory + w.unmanaged)) * 1.1;
  const workers = [...s.workers].sort((a, b) => a.name.localeCompare(b.name, "en", { numeric: true }));
  syncRows(box, workers, (w) => w.id, (w) => {
    const mem = el("div", { class: "bar" });
    const proc = el("div", { class: "bar", style: "margin-top:2px;height:6px" });
    return el("div", { class: "row worker-row", "data-worker": w.name }, [
      el("a", { class: "label", text: w.name, title: w.addr, href: "#worker/" + w.id }), el("div", {}, [mem, proc]), el("div", { class: "num" }),
    ]);
  }, (row, w) => {
    const cap = w.memory_limit || maxMem;
    const [mem, proc] = row.children[1].children;
    setBar(mem, [[w.memory / cap, "var(--mem)", fmtBytes(w.memory) + " managed"], [w.unmanaged / cap, "var(--unmanaged)", fmtBytes(w.unmanaged) + " unmanaged"]]);
    setBar(proc, [[w.processing / Math.max(1, 2 * w.nthreads), "var(--proc)", w.processing + " processing"]]);
    row.children[2].textContent = fmtBytes(w.memory + w.unmanaged) + " · " + w.processing + " · " + w.cpu.toFixed(0) + "%";
  });
}

// Above HISTOGRAM_ABOVE workers: how many workers at each memory and
// processing level (two canvases, made once and redrawn).
function histograms(box, workers) {
  if (!box._hist) {
    box._rows = null;
    box.textContent = "";
    box._hist = ["workers by memory", "workers by processing"].map((title) => {
      const label = el("div", { class: "num", style: "text-align:left" });
      const c = el("canvas", { height: "60" });
      box.appendChild(label);
      box.appendChild(c);
      return { title, label, c };
    });
  }
  const series = [[workers.map((w) => w.memory + w.unmanaged), fmtBytes], [workers.map((w) => w.processing), fmtNum]];
  box._hist.forEach(({ title, label, c }, k) => {
    const [values, fmt] = series[k];
    const max = Math.max(1, ...values);
    const bins = new Array(20).fill(0);
    for (const v of values) bins[Math.min(19, Math.floor((v / max) * 20))]++;
    const top = Math.max(...bins);
    label.textContent = title + " (" + workers.length + " workers, max " + fmt(max) + ")";
    const w = c.clientWidth || 300;
    if (c.width !== w) c.width = w;
    const g = c.getContext("2d");
    g.clearRect(0, 0, c.width, c.height);
    g.fillStyle = "#2563eb";
    bins.forEach((n, i) => {
      const h = (n / top) * 56;
      g.fillRect((i * w) / 20 + 1, 58 - h, w / 20 - 2, h);
    });
  });
}

function addStream(entries) {
  for (const e of entries) {
    state.stream.push(e);
    state.streamCount++;
    const k = e.kind || "compute";
    state.kinds[k] = (state.kinds[k] || 0) + 1;
  }
  if (state.stream.length > STREAM_KEEP) state.stream.splice(0, state.stream.length - STREAM_KEEP);
}

// Draws the last STREAM_WINDOW_MS of the stream on canvas `c`, one band of
// thread lanes per worker (all workers, or those in `only`).
function drawStream(s, c, legend, only) {
  const width = c.clientWidth || 600;
  if (c.width !== width) c.width = width;
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const workers = s.workers.map((w) => w.id).filter((id) => only === undefined || id === only);
  const now = s.time_ms;
  const from = now - STREAM_WINDOW_MS;
  const laneH = Math.max(4, Math.min(24, (c.height - 16) / Math.max(1, workers.reduce((a, id) => a + threadsOf(s, id), 0))));
  const top = new Map();
  let y = 0;
  for (const id of workers) { top.set(id, y); y += threadsOf(s, id) * laneH; }
  const ends = new Map();
  const seen = new Set();
  for (const e of state.stream) {
    if (e.stop_ms < from || !top.has(e.worker)) continue;
    // Stack overlapping runs of one worker into its thread lanes.
    let lanes = ends.get(e.worker);
    if (!lanes) { lanes = new Array(threadsOf(s, e.worker)).fill(-Infinity); ends.set(e.worker, lanes); }
    let lane = lanes.findIndex((end) => end <= e.start_ms + 0.01);
    if (lane < 0) lane = lanes.indexOf(Math.min(...lanes));
    lanes[lane] = e.stop_ms;
    const x0 = ((e.start_ms - from) / STREAM_WINDOW_MS) * c.width;
    const x1 = ((e.stop_ms - from) / STREAM_WINDOW_MS) * c.width;
    g.fillStyle = entryColor(e);
    g.fillRect(x0, top.get(e.worker) + lane * laneH + 1, Math.max(1, x1 - x0), laneH - 2);
    seen.add(e.kind || e.prefix);
  }
  g.fillStyle = "#6b7280";
  g.font = "11px system-ui";
  g.fillText("-" + STREAM_WINDOW_MS / 1000 + " s", 2, c.height - 3);
  g.fillText("now", c.width - 24, c.height - 3);
  legend.textContent = "";
  for (const p of [...seen].slice(0, 14)) {
    const color = KIND_COLOR[p] || colorOf(p);
    legend.appendChild(el("span", {}, [el("i", { style: "background:" + color }), document.createTextNode(p)]));
  }
}

function threadsOf(s, id) {
  const w = s.workers.find((w) => w.id === id);
  return w ? Math.max(1, w.nthreads) : 1;
}

function renderProgress(s) {
  const box = $("#progress");
  const groups = s.groups.filter((g) => g.done + g.counts.slice(1, 4).reduce((a, b) => a + b, 0) + g.counts[5] > 0);
  if (groups.length === 0) { boxMessage(box, "no tasks"); return; }
  syncRows(box, groups.slice(0, 30), (g) => g.prefix, (g) => el("div", { class: "row group-row", "data-prefix": g.prefix }, [
    el("div", { class: "label", text: g.prefix, title: g.prefix }), el("div", { class: "bar" }), el("div", { class: "num" }),
  ]), (row, g) => {
    // Released tasks are left out: most ran already (and count in `done`).
    const [, waiting, queued, processing, , erred] = g.counts;
    const total = g.done + waiting + queued + processing + erred;
    row.dataset.done = String(g.done);
    row.dataset.total = String(total);
    setBar(row.children[1], [
      [g.done / total, colorOf(g.prefix), g.done + " done"],
      [processing / total, "var(--proc)", processing + " processing"],
      [erred / total, "var(--err)", erred + " erred"],
      [(waiting + queued) / total, "var(--wait)", waiting + queued + " waiting"],
    ]);
    row.children[2].textContent = fmtNum(g.done) + " / " + fmtNum(total) + (erred ? " · " + erred + " erred" : "");
  });
}

// ---------------------------------------------------------------- tables

function workerCells(w) {
  return [w.name, w.addr, w.nthreads, w.status, w.cpu.toFixed(0) + "%", fmtBytes(w.memory), fmtBytes(w.unmanaged), fmtBytes(w.spilled),
    w.memory_limit ? fmtBytes(w.memory_limit) : "none", w.processing, fmtNum(w.keys), fmtBytes(w.bytes_in), fmtBytes(w.bytes_out)];
}

function renderWorkersTable(s) {
  const workers = [...s.workers].sort((a, b) => a.name.localeCompare(b.name, "en", { numeric: true }));
  syncRows($("#workers-table tbody"), workers, (w) => w.id, (w) => {
    const cells = workerCells(w).map((_, i) => el("td", { class: i === 2 || i >= 4 ? "n" : "" }));
    cells[0].appendChild(el("a", { href: "#worker/" + w.id }));
    return el("tr", { "data-worker": w.name }, cells);
  }, (tr, w) => {
    workerCells(w).forEach((v, i) => {
      const td = i === 0 ? tr.children[0].firstChild : tr.children[i];
      if (td.textContent !== String(v)) td.textContent = String(v);
    });
  });
}

function renderGroupsTable(s) {
  const rows = [...s.groups].sort((a, b) => b.compute_seconds + b.transfer_seconds - a.compute_seconds - a.transfer_seconds);
  syncRows($("#groups-table tbody"), rows, (g) => g.prefix, () => el("tr", {}, Array.from({ length: 13 }, (_, i) => el("td", { class: i ? "n" : "" }))), (tr, g) => {
    const mean = g.finished ? (1000 * g.compute_seconds) / g.finished : 0;
    const cells = [g.prefix, g.compute_seconds.toFixed(3), fmtNum(g.finished), mean.toFixed(2), fmtBytes(g.nbytes),
      g.transfer_seconds.toFixed(3), fmtBytes(g.transfer_bytes), fmtNum(g.transfers), g.disk_seconds.toFixed(3), fmtBytes(g.disk_write_bytes),
      fmtNum(g.counts[1] + g.counts[2] + g.counts[3]), fmtNum(g.counts[4]), fmtNum(g.counts[5])];
    tr.dataset.prefix = g.prefix;
    cells.forEach((v, i) => { if (tr.children[i].textContent !== String(v)) tr.children[i].textContent = String(v); });
  });
}

// ---------------------------------------------------------------- one worker

function recordHistory(s) {
  const live = new Set();
  for (const w of s.workers) {
    live.add(w.id);
    let h = state.history.get(w.id);
    if (!h) { h = []; state.history.set(w.id, h); }
    h.push({ t: s.time_ms, mem: w.memory, unmanaged: w.unmanaged, processing: w.processing, cpu: w.cpu });
    if (h.length > HISTORY) h.shift();
  }
  for (const id of state.history.keys()) if (!live.has(id)) state.history.delete(id);
}

// A line chart of `series` (arrays of numbers, one colour each) on canvas `c`.
function lineChart(c, series, colors) {
  const width = c.clientWidth || 400;
  if (c.width !== width) c.width = width;
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const max = Math.max(1, ...series.flat());
  series.forEach((points, k) => {
    g.strokeStyle = colors[k];
    g.lineWidth = 1.5;
    g.beginPath();
    points.forEach((v, i) => {
      // The newest sample at the right edge.
      const x = c.width - ((points.length - 1 - i) / Math.max(1, HISTORY - 1)) * c.width;
      const y = c.height - 2 - (v / max) * (c.height - 4);
      if (i) g.lineTo(x, y); else g.moveTo(x, y);
    });
    g.stroke();
  });
  return max;
}

function renderWorkerPage(s) {
  const id = Number(state.param);
  const w = s.workers.find((w) => w.id === id);
  if (!w) { $("#worker-title").textContent = "worker " + state.param + " is not connected"; return; }
  $("#worker-title").textContent = w.name + " (" + w.addr + ")";
  const names = ["name", "address", "threads", "status", "CPU", "managed", "unmanaged", "spilled", "limit", "processing", "keys held", "bytes in", "bytes out"];
  const cells = workerCells(w);
  syncRows($("#worker-facts"), names.map((n, i) => [n, cells[i]]), (it) => it[0],
    (it) => el("span", { class: "fact" }, [el("b"), document.createTextNode(" " + it[0])]),
    (sp, it) => { sp.firstChild.textContent = String(it[1]); });
  const h = state.history.get(id) || [];
  const maxMem = lineChart($("#worker-memory"), [h.map((p) => p.mem + p.unmanaged), h.map((p) => p.mem)], ["#93c5fd", "#2563eb"]);
  $("#worker-memory-text").textContent = "memory (total, managed), max " + fmtBytes(maxMem) + " over the last " + h.length + " updates";
  lineChart($("#worker-cpu"), [h.map((p) => p.cpu), h.map((p) => p.processing)], ["#16a34a", "#7c3aed"]);
  drawStream(s, $("#worker-stream"), $("#worker-stream-legend"), id);
  const now = Date.now();
  if (now - state.workerAsked < 1000) return;
  state.workerAsked = now;
  fetch("api/v1/worker/" + id).then((r) => (r.ok ? r.json() : null)).then((info) => {
    if (!info || state.page !== "worker") return;
    const list = (box, keys, total) => {
      box.textContent = keys.length ? keys.join("\n") + (total > keys.length ? "\n… " + (total - keys.length) + " more" : "") : "none";
    };
    list($("#worker-processing"), info.processing, info.row.processing);
    list($("#worker-holding"), info.holding, info.row.keys);
    $("#worker-extra").textContent = info.ops + " ops · resources " + (Object.keys(info.resources).length ? JSON.stringify(info.resources) : "none") +
      " · last heard from at " + (info.last_seen_ms / 1000).toFixed(1) + " s";
  }).catch(() => {});
}

// ---------------------------------------------------------------- graph

const STATE_COLOR = { released: "#d1d5db", waiting: "#d1d5db", queued: "#9ca3af", processing: "#16a34a", memory: "#2563eb", erred: "#dc2626" };

function loadGraph() {
  const now = Date.now();
  if (now - state.graphAsked < 1000) return;
  state.graphAsked = now;
  fetch("api/v1/graph").then((r) => (r.ok ? r.json() : null)).then((g) => {
    if (g && state.page === "graph") { state.graph = g; drawGraph(g); }
  }).catch(() => {});
}

// Layers by longest path from the sources (edges point to dependents).
function layers(n, edges) {
  const out = Array.from({ length: n }, () => []);
  const indeg = new Array(n).fill(0);
  for (const [a, b] of edges) { out[a].push(b); indeg[b]++; }
  const layer = new Array(n).fill(0);
  const queue = [];
  for (let i = 0; i < n; i++) if (!indeg[i]) queue.push(i);
  for (let q = 0; q < queue.length; q++) {
    const a = queue[q];
    for (const b of out[a]) {
      layer[b] = Math.max(layer[b], layer[a] + 1);
      if (--indeg[b] === 0) queue.push(b);
    }
  }
  return layer;
}

function drawGraph(view) {
  const c = $("#graph");
  const groups = view.kind === "groups";
  const n = view.nodes.length;
  $("#graph-summary").textContent = n === 0 ? "no tasks" : groups
    ? fmtNum(view.tasks) + " tasks: more than the " + fmtNum(1000) + " drawn one by one, so this shows their " + n + " task groups" +
      (view.omitted ? " (" + view.omitted + " more not shown)" : "") + "; each box's bar is its progress"
    : fmtNum(n) + " tasks, coloured by state";
  // Layers left to right; a layer of more than `maxRows` nodes wraps into
  // several columns, and more columns than fit wrap into bands downwards.
  const layer = layers(n, view.edges);
  const depth = Math.max(0, ...layer) + 1;
  const perLayer = new Array(depth).fill(0);
  const pos = layer.map((l) => perLayer[l]++);
  const maxRows = groups ? 16 : 60;
  const firstColumn = [];
  let totalColumns = 0;
  for (let l = 0; l < depth; l++) { firstColumn[l] = totalColumns; totalColumns += Math.max(1, Math.ceil(perLayer[l] / maxRows)); }
  const colOf = (i) => firstColumn[layer[i]] + Math.floor(pos[i] / maxRows);
  const rowOf = (i) => pos[i] % maxRows;
  const colRows = new Array(totalColumns).fill(0);
  for (let i = 0; i < n; i++) colRows[colOf(i)] = Math.max(colRows[colOf(i)], rowOf(i) + 1);
  const width = c.clientWidth || 900;
  const boxW = groups ? 130 : 0;
  const avail = width - 20 - boxW - 12;
  const perBand = Math.max(1, Math.floor(avail / (groups ? 160 : 12)) + 1);
  const bands = Math.ceil(totalColumns / perBand);
  const unit = totalColumns <= 1 ? 0 : avail / (Math.min(perBand, totalColumns) - 1 || 1);
  const bandRows = Array.from({ length: bands }, (_, b) => Math.max(1, ...colRows.slice(b * perBand, (b + 1) * perBand)));
  const rowsAll = bandRows.reduce((a, b) => a + b, 0);
  const rowPx = groups ? 34 : Math.max(8, Math.min(22, 600 / rowsAll));
  const bandTop = [10];
  for (let b = 0; b < bands; b++) bandTop.push(bandTop[b] + bandRows[b] * rowPx + 24);
  c.width = width;
  c.height = Math.min(4000, Math.max(120, bandTop[bands]));
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const xOf = (i) => 10 + (colOf(i) % perBand) * unit;
  const yOf = (i) => {
    const col = colOf(i), b = Math.floor(col / perBand);
    return bandTop[b] + ((bandRows[b] - colRows[col]) / 2 + rowOf(i) + 0.5) * rowPx;
  };
  const rowH = rowPx;
  g.strokeStyle = "rgba(107,114,128,0.35)";
  g.lineWidth = 1;
  g.beginPath();
  for (const [a, b] of view.edges) {
    g.moveTo(xOf(a) + boxW, yOf(a));
    g.lineTo(xOf(b), yOf(b));
  }
  g.stroke();
  const r = Math.max(1.5, Math.min(6, rowH / 3, unit ? unit / 3 : 6));
  g.font = "11px system-ui";
  view.nodes.forEach((node, i) => {
    const x = xOf(i), y = yOf(i);
    if (groups) {
      const [, waiting, queued, processing, , erred] = node.counts;
      const total = Math.max(1, node.done + waiting + queued + processing + erred);
      g.fillStyle = "#fff";
      g.strokeStyle = colorOf(node.prefix);
      g.fillRect(x, y - 13, boxW, 26);
      g.strokeRect(x, y - 13, boxW, 26);
      g.fillStyle = "#1d2330";
      g.fillText(node.prefix.slice(0, 12), x + 4, y - 1);
      g.fillStyle = "#6b7280";
      g.textAlign = "right";
      g.fillText(fmtNum(total), x + boxW - 4, y - 1);
      g.textAlign = "left";
      g.fillStyle = colorOf(node.prefix);
      g.fillRect(x + 4, y + 4, (boxW - 8) * (node.done / total), 5);
      g.fillStyle = STATE_COLOR.erred;
      g.fillRect(x + 4 + (boxW - 8) * (node.done / total), y + 4, (boxW - 8) * (erred / total), 5);
    } else {
      g.fillStyle = STATE_COLOR[node.state] || "#9ca3af";
      g.beginPath();
      g.arc(x + r, y, r, 0, 2 * Math.PI);
      g.fill();
    }
  });
  state.graphNodes = n;
}

async function loadFailures() {
  const list = $("#failures-list");
  let failures;
  try {
    const r = await fetch("api/v1/failures");
    if (!r.ok) return;
    failures = await r.json();
  } catch (_) { return; }
  list.textContent = "";
  if (failures.length === 0) { list.appendChild(el("div", { class: "empty", text: "no failures" })); return; }
  for (const f of failures) {
    const story = el("div", { class: "story" });
    const item = el("div", { class: "failure", "data-key": f.key }, [
      el("div", { class: "meta", text: f.op + " · " + f.cause + (f.worker ? " · on " + f.worker : "") + " · at " + (f.at_ms / 1000).toFixed(1) + " s" }),
      el("div", { class: "msg", text: f.message }),
      el("div", { class: "meta", text: f.key }),
      story,
    ]);
    list.appendChild(item);
    loadStory(f.key, story);
  }
}

// Launched jobs' recent lines, the most recent job first: one block per
// job, each line prefixed by its member's role and rank, stderr in red.
// Each poll asks only for the lines after the last one shown, and appends.
const LOG_LINES_KEPT = 2000;  // per job, as the scheduler keeps
async function loadLogs() {
  if (state.logsBusy) return;
  state.logsBusy = true;
  let jobs;
  try {
    const r = await fetch("api/v1/logs?since=" + state.logSince);
    if (!r.ok) return;
    jobs = await r.json();
  } catch (_) {
    return;
  } finally {
    state.logsBusy = false;
  }
  const list = $("#logs-list");
  if (!list._jobs) { list._jobs = new Map(); list.textContent = ""; }
  const blocks = list._jobs;
  const keep = new Set(jobs.map((j) => j.job));
  for (const [name, b] of blocks) if (!keep.has(name)) { b.box.remove(); blocks.delete(name); }
  let prev = null;
  for (const j of jobs) {
    let b = blocks.get(j.job);
    if (!b) {
      const meta = el("div", { class: "meta" });
      const pre = el("pre");
      b = { box: el("div", { class: "job", "data-job": j.job }, [meta, pre]), meta: meta, pre: pre };
      blocks.set(j.job, b);
    }
    // The most recent job first.
    const at = prev ? prev.box.nextSibling : list.firstChild;
    if (at !== b.box) list.insertBefore(b.box, at);
    prev = b;
    for (const l of j.lines) {
      b.pre.appendChild(el("span", { class: l.stderr ? "err" : "out", text: "[" + l.role + " " + l.rank + "] " + l.text + "\n" }));
      state.logSince = Math.max(state.logSince, l.seq);
    }
    while (b.pre.childNodes.length > LOG_LINES_KEPT) b.pre.firstChild.remove();
    const shown = b.pre.childNodes.length;
    const kept = j.total > shown ? " (the last " + fmtNum(shown) + ")" : "";
    b.meta.textContent = j.job + " · " + fmtNum(j.total) + " lines" + kept + " · since " + (j.first_ms / 1000).toFixed(1) + " s";
  }
  let empty = list.querySelector(":scope > .empty");
  if (blocks.size === 0 && !empty) list.appendChild(el("div", { class: "empty", text: "no launched job has printed anything yet" }));
  if (blocks.size > 0 && empty) empty.remove();
  state.logLines = [...blocks.values()].reduce((n, b) => n + b.pre.childNodes.length, 0);
}

async function loadStory(key, box) {
  try {
    const r = await fetch("api/v1/task/" + encodeURIComponent(key));
    if (!r.ok) return;
    const t = await r.json();
    box.textContent = t.story.map((s) => (Number(s.at_ms) / 1000).toFixed(2) + " s  " + s.from + " → " + s.to + "  (" + s.reason + ")").join("\n");
    box.style.whiteSpace = "pre-wrap";
  } catch (_) { /* the key may be gone */ }
}

// ---------------------------------------------------------------- updates

function render(s) {
  const t0 = performance.now();
  renderTotals(s);
  if (state.page === "status") {
    renderMemory(s);
    renderWorkerBars(s);
    drawStream(s, $("#task-stream"), $("#stream-legend"));
    renderProgress(s);
  } else if (state.page === "workers") {
    renderWorkersTable(s);
  } else if (state.page === "worker") {
    renderWorkerPage(s);
  } else if (state.page === "groups") {
    renderGroupsTable(s);
  } else if (state.page === "graph") {
    loadGraph();
  }
  state.renderMs = performance.now() - t0;
  state.renderMsMax = Math.max(state.renderMsMax, state.renderMs);
  $("#failures-count").textContent = s.failures_total ? "(" + s.failures_total + ")" : "";
  if (state.page === "failures" && s.failures_total !== state.failuresSeen) loadFailures();
  state.failuresSeen = s.failures_total;
}

function onSnapshot(s) {
  state.snapshot = s;
  state.updates++;
  addStream(s.stream);
  recordHistory(s);
  render(s);
}

function connect() {
  const es = new EventSource("api/v1/events");
  es.addEventListener("open", () => { $("#conn").textContent = "live"; });
  es.addEventListener("error", () => { $("#conn").textContent = "reconnecting…"; });
  let last = "";
  es.addEventListener("snapshot", (ev) => {
    if (ev.data === last) return;  // nothing changed (an idle cluster)
    last = ev.data;
    onSnapshot(JSON.parse(ev.data));
  });
}

showPage((location.hash || "#status").slice(1));
connect();
// Lines arrive without changing the snapshot: the logs page asks each second.
setInterval(() => { if (state.page === "logs") loadLogs(); }, 1000);
