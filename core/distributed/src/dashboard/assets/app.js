// Rask dashboard: plain JavaScript, no dependencies. It listens to the
// scheduler's Server-Sent Events (one snapshot per update) and redraws what
// is on screen. `window.raskDashboard` exposes counters for tests.
"use strict";

const HISTOGRAM_ABOVE = 100;   // workers: bars become histograms above this
const STREAM_WINDOW_MS = 20000; // the task stream shows the last 20 s
const STREAM_KEEP = 20000;      // entries kept in the page

const state = {
  snapshot: null,
  stream: [],            // task runs received, oldest first
  lanes: new Map(),      // worker id -> [lane end times] (stacking overlapping runs)
  updates: 0,
  streamCount: 0,
  failuresSeen: -1,
  page: "status",
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

function colorOf(prefix) {
  let h = 0;
  for (let i = 0; i < prefix.length; i++) h = (h * 31 + prefix.charCodeAt(i)) >>> 0;
  return "hsl(" + (h % 360) + ", 62%, 52%)";
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
  box.textContent = "";
  box.appendChild(el("div", { class: "empty", text: text }));
}

// ---------------------------------------------------------------- pages

function showPage(name) {
  state.page = name;
  document.querySelectorAll("section.page").forEach((s) => s.classList.toggle("active", s.id === "page-" + name));
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === name));
  if (name === "failures") loadFailures();
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
  if (s.workers.length > HISTOGRAM_ABOVE) { box._rows = null; box.textContent = ""; box.appendChild(histograms(s.workers)); return; }
  // Against each worker's limit; without limits, against the fullest worker.
  const maxMem = Math.max(1, ...s.workers.map((w) => w.memory + w.unmanaged)) * 1.1;
  const workers = [...s.workers].sort((a, b) => a.name.localeCompare(b.name, "en", { numeric: true }));
  syncRows(box, workers, (w) => w.id, (w) => {
    const mem = el("div", { class: "bar" });
    const proc = el("div", { class: "bar", style: "margin-top:2px;height:6px" });
    return el("div", { class: "row worker-row", "data-worker": w.name }, [
      el("div", { class: "label", text: w.name, title: w.addr }), el("div", {}, [mem, proc]), el("div", { class: "num" }),
    ]);
  }, (row, w) => {
    const cap = w.memory_limit || maxMem;
    const [mem, proc] = row.children[1].children;
    setBar(mem, [[w.memory / cap, "var(--mem)", fmtBytes(w.memory) + " managed"], [w.unmanaged / cap, "var(--unmanaged)", fmtBytes(w.unmanaged) + " unmanaged"]]);
    setBar(proc, [[w.processing / Math.max(1, 2 * w.nthreads), "var(--proc)", w.processing + " processing"]]);
    row.children[2].textContent = fmtBytes(w.memory + w.unmanaged) + " · " + w.processing + " · " + w.cpu.toFixed(0) + "%";
  });
}

function histograms(workers) {
  // Above HISTOGRAM_ABOVE workers: how many workers at each memory / processing level.
  const box = el("div");
  const hist = (label, values, fmt) => {
    const max = Math.max(1, ...values);
    const bins = new Array(20).fill(0);
    for (const v of values) bins[Math.min(19, Math.floor((v / max) * 20))]++;
    const top = Math.max(...bins);
    const c = el("canvas", { height: "60" });
    box.appendChild(el("div", { text: label + " (max " + fmt(max) + ")", class: "num", style: "text-align:left" }));
    box.appendChild(c);
    requestAnimationFrame(() => {
      const w = c.clientWidth || 300;
      c.width = w;
      const g = c.getContext("2d");
      bins.forEach((n, i) => {
        const h = (n / top) * 56;
        g.fillStyle = "#2563eb";
        g.fillRect((i * w) / 20 + 1, 58 - h, w / 20 - 2, h);
      });
    });
  };
  hist("workers by memory", workers.map((w) => w.memory), fmtBytes);
  hist("workers by processing", workers.map((w) => w.processing), fmtNum);
  return box;
}

function addStream(entries) {
  for (const e of entries) {
    state.stream.push(e);
    state.streamCount++;
  }
  if (state.stream.length > STREAM_KEEP) state.stream.splice(0, state.stream.length - STREAM_KEEP);
}

function drawStream(s) {
  const c = $("#task-stream");
  const width = c.clientWidth || 600;
  if (c.width !== width) c.width = width;
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const workers = s.workers.map((w) => w.id);
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
    g.fillStyle = colorOf(e.prefix);
    g.fillRect(x0, top.get(e.worker) + lane * laneH + 1, Math.max(1, x1 - x0), laneH - 2);
    seen.add(e.prefix);
  }
  g.fillStyle = "#6b7280";
  g.font = "11px system-ui";
  g.fillText("-" + STREAM_WINDOW_MS / 1000 + " s", 2, c.height - 3);
  g.fillText("now", c.width - 24, c.height - 3);
  const legend = $("#stream-legend");
  legend.textContent = "";
  for (const p of [...seen].slice(0, 12)) {
    legend.appendChild(el("span", {}, [el("i", { style: "background:" + colorOf(p) }), document.createTextNode(p)]));
  }
}

function threadsOf(s, id) {
  const w = s.workers.find((w) => w.id === id);
  return w ? Math.max(1, w.nthreads) : 1;
}

function renderProgress(s) {
  const box = $("#progress");
  const groups = s.groups.filter((g) => g.done + g.counts.slice(0, 4).reduce((a, b) => a + b, 0) + g.counts[5] > 0);
  if (groups.length === 0) { boxMessage(box, "no tasks"); return; }
  syncRows(box, groups.slice(0, 30), (g) => g.prefix, (g) => el("div", { class: "row group-row", "data-prefix": g.prefix }, [
    el("div", { class: "label", text: g.prefix, title: g.prefix }), el("div", { class: "bar" }), el("div", { class: "num" }),
  ]), (row, g) => {
    const [released, waiting, queued, processing, , erred] = g.counts;
    const total = g.done + released + waiting + queued + processing + erred;
    row.dataset.done = String(g.done);
    row.dataset.total = String(total);
    setBar(row.children[1], [
      [g.done / total, colorOf(g.prefix), g.done + " done"],
      [processing / total, "var(--proc)", processing + " processing"],
      [erred / total, "var(--err)", erred + " erred"],
      [(waiting + queued + released) / total, "var(--wait)", waiting + queued + released + " waiting"],
    ]);
    row.children[2].textContent = fmtNum(g.done) + " / " + fmtNum(total) + (erred ? " · " + erred + " erred" : "");
  });
}

// ---------------------------------------------------------------- tables

function renderWorkersTable(s) {
  const body = $("#workers-table tbody");
  body.textContent = "";
  for (const w of s.workers) {
    const cells = [w.name, w.addr, w.nthreads, w.status, w.cpu.toFixed(0) + "%", fmtBytes(w.memory), fmtBytes(w.unmanaged), fmtBytes(w.spilled),
      w.memory_limit ? fmtBytes(w.memory_limit) : "none", w.processing, fmtNum(w.keys), fmtBytes(w.bytes_in), fmtBytes(w.bytes_out)];
    body.appendChild(el("tr", { "data-worker": w.name }, cells.map((v, i) => el("td", { class: i === 2 || i >= 4 ? "n" : "", text: String(v) }))));
  }
}

function renderGroupsTable(s) {
  const body = $("#groups-table tbody");
  body.textContent = "";
  const rows = [...s.groups].sort((a, b) => b.compute_seconds - a.compute_seconds);
  for (const g of rows) {
    const mean = g.finished ? (1000 * g.compute_seconds) / g.finished : 0;
    const cells = [g.prefix, g.compute_seconds.toFixed(3), fmtNum(g.finished), mean.toFixed(2), fmtBytes(g.nbytes),
      fmtNum(g.counts[1] + g.counts[2]), fmtNum(g.counts[3]), fmtNum(g.counts[4]), fmtNum(g.counts[5])];
    body.appendChild(el("tr", {}, cells.map((v, i) => el("td", { class: i ? "n" : "", text: String(v) }))));
  }
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
  renderTotals(s);
  if (state.page === "status") {
    renderMemory(s);
    renderWorkerBars(s);
    drawStream(s);
    renderProgress(s);
  } else if (state.page === "workers") {
    renderWorkersTable(s);
  } else if (state.page === "groups") {
    renderGroupsTable(s);
  }
  $("#failures-count").textContent = s.failures_total ? "(" + s.failures_total + ")" : "";
  if (state.page === "failures" && s.failures_total !== state.failuresSeen) loadFailures();
  state.failuresSeen = s.failures_total;
}

function onSnapshot(s) {
  state.snapshot = s;
  state.updates++;
  addStream(s.stream);
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
