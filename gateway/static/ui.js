// The live viewer: polls the gateway's read-only viewer API and draws a session as a span waterfall.
import { CallPlayer } from "./ui-player.js";

const player = new CallPlayer(document.getElementById("player"));
player.listen(document.getElementById("detail"));
const key = new URLSearchParams(location.search).get("key");
const headers = key ? { authorization: `Bearer ${key}` } : {};
const KEY_ATTRIBUTES = [
  "gen_ai.agent.invocation.end_reason", "voice.turn.number", "voice.latency.user_to_first_audio_ms",
  "voice.latency.source", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
  "gen_ai.response.finish_reasons", "gen_ai.tool.call.id", "voice.tool.end_reason",
  "voice.connection.end_reason", "voice.session.end_reason", "voice.interruption.played_ms",
];
let selected = null;

async function getJSON(path) {
  const response = await fetch(path, { headers });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name === "style") node.style.cssText = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function sessionItem(s) {
  const when = new Date(Number(s.started_unix_nano) / 1e6).toLocaleTimeString();
  const label = s.active ? `turn ${s.open_turn ?? "–"} of ${s.turns}` : `${s.turns} turns · ${s.end_reason}`;
  return el("li", {
    class: s.trace_id === selected ? "selected" : "", "data-trace": s.trace_id,
    onclick: () => { selected = s.trace_id; refresh(); },
  }, el("div", {}, s.session_id ?? s.trace_id), el("div", { class: "sub" }, `${when} · ${s.agent ?? ""} · ${label}`));
}

function depthOf(span, byId) {
  let depth = 0;
  for (let p = byId.get(span.parent_span_id); p; p = byId.get(p.parent_span_id)) depth += 1;
  return depth;
}

function ordered(spans) {
  // Depth-first by start time, so children sit under their parent.
  const children = new Map();
  const ids = new Set(spans.map((s) => s.span_id));
  for (const s of spans) {
    const parent = ids.has(s.parent_span_id) ? s.parent_span_id : null;
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(s);
  }
  const out = [];
  const walk = (parent) => {
    for (const s of (children.get(parent) ?? []).sort((a, b) => a.start_time_unix_nano - b.start_time_unix_nano)) {
      out.push(s);
      walk(s.span_id);
    }
  };
  walk(null);
  return out;
}

function waterfall(data) {
  const spans = ordered(data.spans);
  const byId = new Map(spans.map((s) => [s.span_id, s]));
  const start = Math.min(...spans.map((s) => s.start_time_unix_nano));
  const end = Math.max(...spans.map((s) => s.end_time_unix_nano ?? data.now));
  const width = Math.max(end - start, 1);
  const root = spans.find((s) => s.name === "voice_session") ?? spans[0];
  const a = root.attributes;
  const facts = el("div", { class: "facts" },
    ...[["session", a["session.id"]], ["trace", data.trace_id], ["user", a["user.id"]],
        ["model", a["gen_ai.request.model"]], ["end", a["voice.session.end_reason"] ?? "open"],
        ["turns", a["voice.session.turn_count"]], ["duration", `${((end - start) / 1e6).toFixed(0)} ms`]]
      .filter(([, v]) => v !== undefined && v !== null)
      .map(([k, v]) => el("span", {}, el("b", {}, k), String(v))));
  const table = el("table", { class: "waterfall" });
  for (const s of spans) {
    const stop = s.end_time_unix_nano ?? data.now;
    const kind = s.name.split(" ")[0].replace(".", "-");
    const bar = el("div", {
      class: `bar ${kind}${s.end_time_unix_nano ? "" : " open"}${s.status?.code === "error" ? " error" : ""}`,
      style: `left:${((s.start_time_unix_nano - start) / width) * 100}%;width:${((stop - s.start_time_unix_nano) / width) * 100}%`,
      title: s.name,
    });
    const track = el("div", { class: "track" }, bar);
    for (const e of s.events ?? []) {
      track.append(el("div", { class: "tick", title: e.name, style: `left:${((e.time_unix_nano - start) / width) * 100}%` }));
    }
    const fmt = (v) => (typeof v === "number" && !Number.isInteger(v) ? v.toFixed(1) : v);
    const shown = KEY_ATTRIBUTES.filter((k) => k in s.attributes).map((k) => `${k.split(".").pop()}=${fmt(s.attributes[k])}`);
    table.append(el("tr", { "data-span": s.name, "data-start": s.start_time_unix_nano, "data-end": stop },
      el("td", { class: "name", style: `padding-left:${depthOf(s, byId) * 16 + 4}px` }, s.name,
        el("div", { class: "attrs" }, shown.join(" · "))),
      el("td", {}, track),
      el("td", { class: "dur" }, s.end_time_unix_nano ? `${((stop - s.start_time_unix_nano) / 1e6).toFixed(1)} ms` : "open")));
  }
  return [facts, table];
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const list = await getJSON("/ui/api/sessions");
    document.getElementById("active").replaceChildren(...list.active.map(sessionItem));
    document.getElementById("recent").replaceChildren(...list.recent.map(sessionItem));
    if (!selected) selected = (list.active[0] ?? list.recent[0])?.trace_id ?? null;
    if (selected) {
      const data = await getJSON(`/ui/api/traces/${selected}`);
      document.getElementById("detail").replaceChildren(...waterfall(data));
      player.show(data);
      document.body.dataset.rendered = selected;
    }
    status.textContent = `${list.active.length} active · ${list.recent.length} recent · ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    status.textContent = String(error);
  }
}

refresh();
setInterval(refresh, 2000);
