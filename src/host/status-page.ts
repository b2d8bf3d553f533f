/**
 * GET /: the host's status page, one self-contained HTML document (inline CSS and script, nothing
 * fetched from elsewhere, so it works offline and ships inside the bundle). It draws GET
 * /v1/topology as a tree with counters, listens on GET /v1/events with EventSource, lists the
 * events the host still keeps, then each as it comes, and redraws the tree after each
 * (coalesced), without a reload.
 */
import type { HostEvent } from "./registry.js";

/** Every event name, so that the page listens to each (EventSource needs them by name). */
const EVENT_NAMES: Record<HostEvent["event"], true> = {
  "device-added": true,
  "device-refused": true,
  "device-removed": true,
  "vfs-changed": true,
  faults: true,
  "bouncer-error": true,
  "tdev-added": true,
  "tdev-removed": true,
  "tdev-state": true,
  "tdi-added": true,
  "tdi-removed": true,
  "tdi-unbound": true,
  "tdi-binding": true,
  "tdi-bound": true,
  "tdi-unbinding": true,
  "tdi-state": true,
};

const STYLE = `
:root { font: 14px/1.45 system-ui, sans-serif; color: #1d2330; background: #f5f6f8; }
body { margin: 0; }
header { display: flex; align-items: baseline; gap: 1.5em; padding: .8em 1.5em; background: #1d2330; color: #fff; }
header h1 { font-size: 1.15em; margin: 0; }
#live { font-size: .9em; }
#live.up::before { content: "● "; color: #3fcf6e; }
#live.down::before { content: "● "; color: #e0a030; }
main { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 1.2em; padding: 1.2em 1.5em; }
section { background: #fff; border-radius: 6px; box-shadow: 0 1px 3px #0002; padding: .8em 1.1em; }
h2 { font-size: 1em; margin: 0 0 .6em; color: #4a5366; text-transform: uppercase; letter-spacing: .04em; }
#counters { display: flex; gap: .8em; flex-wrap: wrap; grid-column: 1 / -1; padding: 0; background: none; box-shadow: none; }
.counter { background: #fff; border-radius: 6px; box-shadow: 0 1px 3px #0002; padding: .5em 1em; min-width: 7em; }
.counter b { display: block; font-size: 1.6em; }
ul.tree, ul.tree ul { list-style: none; margin: 0; padding-left: 1.2em; }
ul.tree { padding-left: 0; }
ul.tree li { margin: .15em 0; }
.device > .label { font-weight: 600; font-size: 1.05em; }
.mono, .bdf { font-family: ui-monospace, monospace; }
.bdf { font-weight: 600; }
.dim { color: #6b7385; }
.badge { display: inline-block; border-radius: 3px; padding: 0 .45em; font-size: .85em; font-weight: 600; background: #e3e6ec; }
.ok { background: #d5f5df; color: #13632f; } .busy { background: #fff0c7; color: #7a5800; }
.bad { background: #fbd9d9; color: #8c1d1d; } .bound { background: #d9e6ff; color: #1b3f8f; }
#events { font-family: ui-monospace, monospace; font-size: .85em; max-height: 70vh; overflow: auto; margin: 0; padding: 0; list-style: none; }
#events li { padding: .15em 0; border-bottom: 1px solid #eef0f3; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
#events .name { font-weight: 600; }
.empty { color: #6b7385; font-style: italic; }
`;

/** The page's script: plain DOM, run in the browser. */
const SCRIPT = `
const EVENT_NAMES = ${JSON.stringify(Object.keys(EVENT_NAMES))};
const $ = (id) => document.getElementById(id);
const el = (tag, attrs, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
};
const hex4 = (n) => n.toString(16).padStart(4, "0");
const CLASS = { connected: "ok", authenticated: "ok", present: "ok", failed: "bad", ERROR: "bad", RUN: "ok",
  bound: "bound", binding: "busy", unbinding: "busy", connecting: "busy", authenticating: "busy",
  disconnecting: "busy", adding: "busy", removing: "busy" };
const badge = (text) => el("span", { class: "badge " + (CLASS[text] || "") }, text);

function tdevItem(t) {
  const parts = [el("span", {}, "TDEV "), badge(t.state)];
  if (t.auth) parts.push(" SPDM " + t.auth.version);
  if (t.session) parts.push(" · session ", el("span", { class: "mono" }, t.session));
  if (t.ide) parts.push(" · IDE " + t.ide);
  parts.push(el("span", { class: "dim" }, " · bounce " + t.bounce));
  if (t.authError) parts.push(el("div", { class: "dim" }, t.authError));
  return el("li", { class: "tdev", "data-bdf": t.bdf }, ...parts);
}

function tdiItem(t, fnBdf) {
  const parts = [el("span", {}, "TDI "), badge(t.state)];
  if (t.boundTo !== null) parts.push(" to VM ", el("b", { class: "vm" }, String(t.boundTo)));
  if (t.tdispState) parts.push(" · TDISP ", badge(t.tdispState));
  if (t.tdev !== fnBdf) parts.push(el("span", { class: "dim" }, " · via TDEV " + t.tdev));
  return el("li", { class: "tdi", "data-bdf": t.bdf }, ...parts);
}

function render(view) {
  const tdevs = new Map(view.tdevs.map((t) => [t.bdf, t]));
  const tdis = new Map(view.tdis.map((t) => [t.bdf, t]));
  const tree = el("ul", { class: "tree", id: "tree" });
  for (const d of view.devices) {
    const fns = el("ul");
    for (const f of d.functions) {
      const kind = f.isVf ? "VF" : f.portType || "PCI";
      const inner = el("ul");
      for (const m of f.mailboxes)
        inner.append(el("li", { class: "mailbox" }, "DOE 0x" + m.capOffset.toString(16) + " ",
          el("span", { class: "mono" }, m.endpoint || "-"), el("span", { class: "dim" }, " " + m.protocols.join(" "))));
      if (tdevs.has(f.bdf)) inner.append(tdevItem(tdevs.get(f.bdf)));
      if (tdis.has(f.bdf)) inner.append(tdiItem(tdis.get(f.bdf), f.bdf));
      fns.append(el("li", { class: "function", "data-bdf": f.bdf },
        el("span", { class: "bdf" }, f.bdf), " " + hex4(f.vendorId) + ":" + hex4(f.deviceId) + " " + kind,
        f.tee ? " " : null, f.tee ? el("span", { class: "badge ok" }, "TEE-IO") : null, inner));
    }
    tree.append(el("li", { class: "device", "data-device": d.id },
      el("span", { class: "label" }, d.id + " "), badge(d.state),
      el("span", { class: "dim" }, " control " + d.control + " (" + d.source + ")"), fns));
  }
  if (view.devices.length === 0) tree.append(el("li", { class: "empty" }, "no devices"));
  $("tree").replaceWith(tree);
  const count = (id, n) => ($(id).textContent = String(n));
  count("n-devices", view.devices.length);
  count("n-functions", view.devices.reduce((n, d) => n + d.functions.length, 0));
  count("n-tdevs", view.tdevs.length);
  count("n-connected", view.tdevs.filter((t) => t.connected).length);
  count("n-tdis", view.tdis.length);
  count("n-bound", view.tdis.filter((t) => t.state === "bound").length);
}

// One topology read at a time; events that come meanwhile ask for one more after it.
let reading = false, again = false;
async function refresh() {
  if (reading) return void (again = true);
  reading = true;
  try {
    const rsp = await fetch("/v1/topology");
    if (rsp.ok) render(await rsp.json());
  } finally {
    reading = false;
    if (again) { again = false; refresh(); }
  }
}

let received = 0;
function logEvent(id, name, data) {
  const { event, ...fields } = JSON.parse(data);
  const text = Object.entries(fields).map(([k, v]) => k + "=" + (typeof v === "string" ? v : JSON.stringify(v))).join(" ");
  const list = $("events");
  list.querySelector(".empty")?.remove();
  list.prepend(el("li", { title: data }, el("span", { class: "dim" }, id + " "), el("span", { class: "name" }, name), " " + text));
  while (list.children.length > 200) list.lastChild.remove();
  $("n-events").textContent = String(++received);
}

// The events the host still keeps first; on a reconnect EventSource's Last-Event-ID takes over.
const source = new EventSource("/v1/events?since=0");
source.onopen = () => { $("live").className = "up"; $("live").textContent = "live"; refresh(); };
source.onerror = () => { $("live").className = "down"; $("live").textContent = "reconnecting"; };
for (const name of EVENT_NAMES)
  source.addEventListener(name, (e) => { logEvent(e.lastEventId, name, e.data); refresh(); });
refresh();
`;

const counter = (id: string, label: string) => `<div class="counter"><b id="${id}">-</b>${label}</div>`;

export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>doe-emu host</title>
<style>${STYLE}</style>
</head>
<body>
<header><h1>doe-emu host</h1><span id="live" class="down">connecting</span></header>
<main>
<section id="counters">
${counter("n-devices", "devices")}${counter("n-functions", "functions")}${counter("n-tdevs", "TDEVs")}${counter("n-connected", "connected")}${counter("n-tdis", "TDIs")}${counter("n-bound", "bound")}${counter("n-events", "events seen")}
</section>
<section><h2>Topology</h2><ul class="tree" id="tree"><li class="empty">loading…</li></ul></section>
<section><h2>Events</h2><ul id="events"><li class="empty">none yet</li></ul></section>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
