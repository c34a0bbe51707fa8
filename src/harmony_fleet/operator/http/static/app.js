// harmony-fleet dashboard: plain DOM, no framework, no build step. Every value that came from a
// device (ids, labels, log lines, messages) is set as text, never parsed as HTML.
"use strict";

const state = {
  overview: null, devices: new Map(), total: 0, events: [], rollouts: [],
  device: null, logs: [], filters: { q: "", state: "", version: "" },
};

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "style") el.style.cssText = v; // CSSOM: allowed by the page's CSP
    else if (k === "value") el.value = v;
    else if (k === "selected") el.selected = true;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

async function api(path) {
  const r = await fetch(path, { credentials: "same-origin" });
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

const ago = (t) => {
  if (!t) return "";
  const s = Math.max(0, Date.now() / 1000 - t);
  return s < 60 ? `${s.toFixed(0)} s ago` : s < 3600 ? `${(s / 60).toFixed(0)} min ago` : `${(s / 3600).toFixed(1)} h ago`;
};
const clock = (t) => new Date(t * 1000).toLocaleTimeString();
const secs = (s) => (s === null || s === undefined ? "" : s < 10 ? `${s.toFixed(1)} s` : `${s.toFixed(0)} s`);
const phase = (p) => h("span", { class: `phase ${p}`, "data-phase": p }, p);

function route() {
  const hash = location.hash || "#/";
  const m = hash.match(/^#\/device\/([a-z0-9-]+)$/);
  if (m) return { view: "device", id: m[1] };
  const view = { "#/devices": "devices", "#/rollouts": "rollouts", "#/events": "events" }[hash];
  return { view: view || "overview" };
}

// -- views ---------------------------------------------------------------------------------
function versionChart(versions) {
  const entries = Object.entries(versions);
  const width = 420, row = 22, pad = 90;
  const max = Math.max(1, ...entries.map(([, n]) => n));
  const chart = svg("svg", { width, height: Math.max(row, entries.length * row), id: "version-chart", role: "img" });
  entries.forEach(([v, n], i) => {
    const w = Math.max(2, ((width - pad - 40) * n) / max);
    chart.append(svg("text", { x: 0, y: i * row + 15 }, v));
    chart.append(svg("rect", { x: pad, y: i * row + 4, width: w, height: 14, rx: 3, fill: "#3b82f6" }));
    chart.append(svg("text", { x: pad + w + 6, y: i * row + 15 }, n));
  });
  return chart;
}

function viewOverview() {
  const o = state.overview;
  if (!o) return h("p", { class: "muted" }, "Loading…");
  const card = (id, n, l) => h("div", { class: "card" }, h("div", { class: "n", id }, n), h("div", { class: "l" }, l));
  const phases = Object.entries(o.upgrade_phases);
  const security = Object.entries(o.security);
  return h("div", { id: "overview" },
    h("div", { class: "cards" },
      card("count-devices", o.devices, "devices"), card("count-online", o.online, "online"),
      card("count-offline", o.offline, "offline"), card("count-heartbeats", o.heartbeats, "heartbeats taken"),
      card("nats", o.nats_connected ? "connected" : "down", "NATS")),
    h("div", { class: "panel" }, h("h2", {}, "Versions"), versionChart(o.versions)),
    h("div", { class: "panel" }, h("h2", {}, "Latest upgrade of each device"),
      phases.length ? h("div", {}, phases.map(([p, n]) => h("span", { class: "label" }, phase(p), ` ${n}`))) : h("span", { class: "muted" }, "none")),
    h("div", { class: "panel" }, h("h2", {}, "Security events"),
      security.length ? h("div", {}, security.map(([k, n]) => h("span", { class: "label" }, `${k}: ${n}`))) : h("span", { class: "muted" }, "none")),
    h("div", { class: "panel" }, h("h2", {}, "Recent events"), eventList(state.events.slice(0, 10))));
}

function deviceRow(d) {
  const up = d.upgrade;
  return h("tr", { "data-device": d.device_id },
    h("td", {}, h("a", { href: `#/device/${d.device_id}` }, d.device_id)),
    h("td", { class: d.online ? "online" : "offline" }, d.online ? "online" : "offline"),
    h("td", { class: "version" }, d.version),
    h("td", {}, up ? [phase(up.phase), ` → ${up.target_version}`, up.error_code ? h("span", { class: "reason" }, ` ${up.error_code}`) : null] : ""),
    h("td", {}, Object.entries(d.labels).map(([k, v]) => h("span", { class: "label" }, `${k}=${v}`))),
    h("td", { class: "muted" }, ago(d.last_seen)));
}

function visible(d) {
  const f = state.filters, q = f.q.trim().toLowerCase();
  if (f.state && (f.state === "online") !== d.online) return false;
  if (f.version && d.version !== f.version) return false;
  if (!q) return true;
  return d.device_id.includes(q) || d.version.includes(q) || Object.entries(d.labels).some(([k, v]) => k.includes(q) || v.includes(q));
}

function viewDevices() {
  const versions = [...new Set([...state.devices.values()].map((d) => d.version))].sort();
  const rows = [...state.devices.values()].filter(visible).sort((a, b) => a.device_id.localeCompare(b.device_id));
  const set = (k) => (e) => { state.filters[k] = e.target.value; renderKeepFocus(e.target.id); };
  return h("div", {},
    h("div", { class: "filters" },
      h("input", { id: "search", placeholder: "search id, version, label", value: state.filters.q, oninput: set("q") }),
      h("select", { id: "filter-state", onchange: set("state") },
        ["", "online", "offline"].map((s) => h("option", { value: s, selected: state.filters.state === s }, s || "any state"))),
      h("select", { id: "filter-version", onchange: set("version") },
        ["", ...versions].map((v) => h("option", { value: v, selected: state.filters.version === v }, v || "any version"))),
      h("span", { class: "muted", id: "shown" }, `${rows.length} of ${state.total} shown`)),
    h("table", { id: "devices" },
      h("thead", {}, h("tr", {}, ["device", "state", "version", "upgrade", "labels", "last seen"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows.map(deviceRow))));
}

function timeline(u) {
  return h("div", { class: "panel upgrade", "data-upgrade": u.upgrade_id },
    h("div", {}, h("strong", {}, `→ ${u.target_version}`), " ", phase(u.phase), h("span", { class: "muted" }, ` ${u.upgrade_id}`)),
    h("div", { class: "steps" }, u.steps.map((s) =>
      h("div", { class: `step ${s.phase}`, "data-step": s.phase },
        h("div", {}, s.phase), h("div", { class: "d" }, `${clock(s.at)} ${secs(s.duration_s)}`),
        s.error_code || s.error_detail ? h("div", { class: "reason", "data-reason": s.error_code }, [s.error_code, s.error_detail].filter(Boolean).join(": ")) : null,
        s.message && !s.error_code ? h("div", { class: "d" }, s.message) : null))));
}

function viewDevice(id) {
  const d = state.device;
  if (!d || d.device_id !== id) return h("p", { class: "muted" }, "Loading…");
  return h("div", { id: "device", "data-device": d.device_id },
    h("h2", {}, d.device_id, " ", h("span", { class: d.online ? "online" : "offline" }, d.online ? "online" : "offline")),
    h("div", { class: "cards" },
      h("div", { class: "card" }, h("div", { class: "n", id: "device-version" }, d.version), h("div", { class: "l" }, "runs")),
      h("div", { class: "card" }, h("div", { class: "n" }, ago(d.last_seen) || "-"), h("div", { class: "l" }, "last heartbeat"))),
    h("div", { class: "panel" }, h("h2", {}, "Labels"),
      h("div", { id: "labels" }, Object.entries(d.labels).map(([k, v]) => h("span", { class: "label" }, `${k}=${v}`)))),
    h("h2", {}, "Upgrades"),
    h("div", { id: "upgrades" }, d.upgrades.length ? d.upgrades.map(timeline) : h("p", { class: "muted" }, "none seen by this operator")),
    h("div", { class: "panel" }, h("h2", {}, "Instances"),
      h("table", {}, h("tbody", {}, d.instances.map((i) => h("tr", {}, h("td", {}, i.instance_id), h("td", {}, i.agent_version), h("td", {}, i.role), h("td", { class: "muted" }, ago(i.last_seen))))))),
    h("div", { class: "panel" }, h("h2", {}, "Last log lines"),
      h("pre", { class: "logs", id: "logs" }, state.logs.map((l) => `${clock(l.ts)} ${l.level} [${l.source} ${l.version}] ${l.msg}\n`))));
}

function viewRollouts() {
  if (!state.rollouts.length) return h("p", { class: "muted", id: "rollouts" }, "No rollouts.");
  const bar = (counts, total) => h("div", { class: "bar" },
    ["succeeded", "in_progress", "rolled_back", "failed", "skipped", "pending"].map((s) =>
      counts[s] ? h("span", { class: `s-${s}`, style: `width:${(100 * counts[s]) / Math.max(1, total)}%`, title: `${s}: ${counts[s]}` }) : null));
  return h("div", { id: "rollouts" }, state.rollouts.map((r) =>
    h("div", { class: "panel", "data-rollout": r.name },
      h("div", {}, h("strong", {}, r.name), ` → ${r.version} `, phase(r.phase), h("span", { class: "muted" }, ` wave ${r.wave}, ${r.done}/${r.devices} done`),
        r.halt_reason ? h("span", { class: "reason" }, ` halted: ${r.halt_reason}`) : null),
      bar(r.counts, r.devices),
      h("table", {}, h("tbody", {}, r.waves.map((w) => h("tr", { "data-wave": w.wave },
        h("td", {}, w.wave === 0 ? "canary" : `wave ${w.wave}`), h("td", { style: "width:60%" }, bar(w.counts, w.devices)),
        h("td", { class: "muted" }, Object.entries(w.counts).map(([k, v]) => `${k} ${v}`).join(", ")))))))));
}

function eventList(events) {
  if (!events.length) return h("p", { class: "muted" }, "Nothing yet.");
  return h("ul", { class: "events" }, events.map((e) => h("li", { "data-kind": e.kind },
    h("span", { class: "k" }, clock(e.at)), h("span", { class: "k" }, e.kind), " ",
    e.device_id ? h("a", { href: `#/device/${e.device_id}` }, e.device_id) : null, " ", e.text)));
}

const viewEvents = () => h("div", { id: "events" }, eventList(state.events));

// -- rendering and data --------------------------------------------------------------------
function render() {
  const r = route();
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === r.view));
  const main = document.getElementById("main");
  const view = { overview: viewOverview, devices: viewDevices, rollouts: viewRollouts, events: viewEvents }[r.view];
  main.replaceChildren(r.view === "device" ? viewDevice(r.id) : view());
  document.body.dataset.view = r.view;
}

function renderKeepFocus(id) {
  const el = document.getElementById(id), pos = el && el.selectionStart;
  render();
  const again = document.getElementById(id);
  if (again) { again.focus(); if (pos !== null && pos !== undefined && again.setSelectionRange) again.setSelectionRange(pos, pos); }
}

async function loadDevice(id) {
  state.device = await api(`/api/devices/${id}`);
  render();
  api(`/api/devices/${id}/logs?limit=40`).then((l) => { state.logs = l.lines; if (route().id === id) render(); }).catch(() => {});
}

async function loadList() {
  const list = await api("/api/devices");
  state.devices = new Map(list.devices.map((d) => [d.device_id, d]));
  state.total = list.total;
}

async function load() {
  const r = route();
  const [overview, events, rollouts] = await Promise.all([api("/api/overview"), api("/api/events"), api("/api/rollouts")]);
  state.overview = overview; state.events = events.events; state.rollouts = rollouts.rollouts;
  await loadList();
  if (r.view === "device") { state.logs = []; await loadDevice(r.id); } else render();
}

function follow() {
  const live = document.getElementById("live");
  const es = new EventSource("/api/stream");
  es.addEventListener("hello", () => { live.textContent = "live"; live.className = "live on"; });
  es.onerror = () => { live.textContent = "reconnecting"; live.className = "live off"; };
  const on = (name, fn) => es.addEventListener(name, (m) => fn(JSON.parse(m.data)));
  on("overview", (o) => { state.overview = o; if (route().view === "overview") render(); });
  on("devices", async (d) => {
    if (d.reload) await loadList(); else d.rows.forEach((row) => state.devices.set(row.device_id, row));
    state.total = Math.max(state.total, state.devices.size);
    const r = route();
    if (r.view === "devices") renderKeepFocus(document.activeElement && document.activeElement.id);
    if (r.view === "device" && d.rows && d.rows.some((row) => row.device_id === r.id)) loadDevice(r.id);
  });
  on("upgrade", (u) => {
    const r = route();
    if (r.view === "device" && state.device && state.device.device_id === u.device_id) {
      const rest = state.device.upgrades.filter((x) => x.upgrade_id !== u.upgrade_id);
      state.device.upgrades = [u, ...rest];
      render();
    }
  });
  on("event", (e) => { state.events.unshift(e); state.events.length = Math.min(state.events.length, 500);
    const v = route().view; if (v === "events" || v === "overview") render(); });
  on("rollouts", (r) => { state.rollouts = r; if (route().view === "rollouts") render(); });
}

window.addEventListener("hashchange", () => { const r = route(); if (r.view === "device") { state.logs = []; loadDevice(r.id); } else render(); });
window.addEventListener("DOMContentLoaded", () => { load().catch((e) => { document.getElementById("main").textContent = String(e); }); follow(); });
