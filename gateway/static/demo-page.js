// /demo's page: reads the query parameters, runs a DemoSession and exposes it as `window.demo` for automation.

import { DemoSession } from "./demo.js";

function mountPage() {
  const params = new URLSearchParams(globalThis.location.search);
  const num = (k) => (params.has(k) && Number.isFinite(Number(params.get(k))) ? Number(params.get(k)) : undefined);
  const traceOptions = {};
  if (num("batch") !== undefined) traceOptions.maxBatchEvents = num("batch");
  if (num("flush") !== undefined) traceOptions.flushIntervalMs = num("flush");
  if (params.get("endOnHidden") === "1") traceOptions.endOnHidden = true;
  const session = new DemoSession({
    gatewayUrl: params.get("gateway") || "",
    speed: num("speed") || 1,
    traceOptions,
    toolFetchUrl: params.get("toolFetch") ?? null,
    voiceUrl: new URL("./demo-voice", import.meta.url).href,
    audible: params.get("mute") !== "1",
    recordAudio: params.get("record") === "1",
    getMicrophone: () => navigator.mediaDevices.getUserMedia({ audio: true }),
  });

  const $ = (id) => document.getElementById(id);
  const busyButtons = ["btn-start", "btn-turn", "btn-tool", "btn-reconnect", "btn-end", "btn-scripted"];
  const log = (text, cls = "") => {
    const li = document.createElement("li");
    li.textContent = text;
    if (cls) li.className = cls;
    $("log").prepend(li);
    while ($("log").children.length > 300) $("log").lastChild.remove();
  };
  const run = (label, fn) => async () => {
    try {
      const r = await fn();
      if (r !== undefined) log(`${label}: ${JSON.stringify(r).slice(0, 400)}`, "ok");
    } catch (e) {
      log(`${label}: ${e.message}`, "err");
    }
  };
  let shownEvents = 0;
  let shownRev = -1;
  let shownErrors = 0;
  const render = (s) => {
    $("status").textContent = s.status + (s.action ? ` (${s.action})` : "");
    $("status").dataset.status = s.status;
    $("session-id").textContent = s.sessionId || "–";
    $("trace-id").textContent = s.traceId || "–";
    $("ui-link").href = s.sessionId ? `/ui?session=${encodeURIComponent(s.sessionId)}` : "/ui";
    $("counts").textContent = `turns ${s.turns} · interruptions ${s.interruptions} · tool calls ${s.toolCalls} · connections ${s.connections}`;
    const st = session.stats;
    $("stats").textContent = st
      ? `recorded ${st.recorded} · accepted ${st.accepted} · duplicates ${st.duplicates} · pending ${st.pending} · retries ${st.retries} · dropped ${st.dropped} · beacons ${st.beacons}`
      : "–";
    if (s.events.length < shownEvents) shownEvents = 0; // a new session
    if (s.errors.length < shownErrors) shownErrors = 0;
    for (; shownEvents < s.events.length; shownEvents++) {
      const e = s.events[shownEvents];
      log(`#${e.seq} ${e.type}`, "event");
    }
    for (; shownErrors < s.errors.length; shownErrors++) {
      const e = s.errors[shownErrors];
      log(`client ${e.kind}${e.status ? ` ${e.status}` : ""}: ${e.message}${e.retrying ? " (retrying)" : ""}`, "err");
    }
    if (s.transcriptRev !== shownRev) {
      shownRev = s.transcriptRev;
      $("transcript").replaceChildren(
        ...s.transcript
          .filter((t) => t.text)
          .map((t) => {
            const p = document.createElement("p");
            p.className = t.who + (t.interrupted ? " interrupted" : "");
            p.textContent = t.text;
            return p;
          }),
      );
      $("transcript").scrollTop = $("transcript").scrollHeight;
    }
    for (const id of busyButtons) $(id).disabled = s.busy || s.status === "closed";
    $("btn-interrupt").disabled = s.status === "closed" || (s.busy && !s.modelSpeaking);
    document.documentElement.dataset.demoStatus = s.status;
  };
  session.subscribe(render);

  $("btn-start").onclick = run("start", () => session.start());
  $("btn-turn").onclick = run("turn", () => session.turn());
  $("btn-tool").onclick = run("tool call", () => session.callTool());
  $("btn-interrupt").onclick = run("interrupt", () => session.interrupt());
  $("btn-reconnect").onclick = run("reconnect", () => session.reconnect());
  $("btn-end").onclick = run("end", () => session.end("completed"));
  $("btn-close").onclick = run("close tab", () => session.closeTabAbruptly({ navigate: $("chk-navigate").checked }));
  $("btn-scripted").onclick = run("scripted", () => session.runScripted());
  $("btn-fail").onclick = () => log(`next ${session.failRequests(3, "503", 0)} ingest requests will fail with 503`);

  const api = {
    ready: true,
    session,
    get state() {
      return session.state;
    },
    get stats() {
      return session.stats;
    },
    /** The call recording (`?record=1`): its state and counters; `await demo.recording.done` after end(). */
    get recording() {
      const r = session.trace && session.trace.recorder;
      return r ? { state: r.state, mimeType: r.mimeType, stats: { ...r.stats }, done: r.done.then(() => r.state) } : null;
    },
    start: (o) => session.start(o),
    turn: (o) => session.turn(o),
    callTool: (o) => session.callTool(o),
    interrupt: (o) => session.interrupt(o),
    reconnect: () => session.reconnect(),
    end: (reason) => session.end(reason),
    closeTabAbruptly: (o) => session.closeTabAbruptly(o),
    runScripted: (o) => session.runScripted(o),
    flush: () => session.flush(),
    waitIdle: () => session.waitIdle(),
    failRequests: (n, kind, retryAfterS) => session.failRequests(n, kind, retryAfterS),
    configure(o = {}) {
      if (o.speed) session.options.speed = o.speed;
      if (o.gatewayUrl !== undefined) session.options.gatewayUrl = o.gatewayUrl;
      if (o.traceOptions) Object.assign(session.options.traceOptions, o.traceOptions);
      if (o.toolFetchUrl !== undefined) session.options.toolFetchUrl = o.toolFetchUrl;
      return { ...session.options };
    },
  };
  globalThis.demo = api;
  render(session.state);
  document.documentElement.dataset.demoReady = "1";
  if (params.get("autorun") === "1") {
    api.lastRun = session.runScripted().then(
      (r) => {
        api.result = r;
        document.documentElement.dataset.demoResult = JSON.stringify(r);
        return r;
      },
      (e) => {
        api.result = { error: e.message };
        return api.result;
      },
    );
  }
}

if (typeof document !== "undefined" && typeof window !== "undefined" && document.getElementById("demo-root")) {
  mountPage();
}
