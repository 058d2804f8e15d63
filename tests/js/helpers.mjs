// Test doubles for voice-trace.js: a fake clock with timers, a fake gateway behind a fake fetch, a fake window
// with page lifecycle events, and a recording sendBeacon. Nothing here touches the network or real time.

export class FakeClock {
  constructor(start = 1_700_000_000_000) {
    this.t = start;
    this.timers = new Map();
    this.nextId = 1;
    this.now = () => this.t;
    this.setTimeout = (fn, ms) => {
      const id = this.nextId++;
      this.timers.set(id, { at: this.t + Math.max(0, ms || 0), fn, id });
      return id;
    };
    this.clearTimeout = (id) => {
      this.timers.delete(id);
    };
  }

  /** Timers due within `ms`, in order, with pending promises settled between them. */
  async advance(ms) {
    const target = this.t + ms;
    await settle();
    for (;;) {
      let next = null;
      for (const timer of this.timers.values()) {
        if (timer.at <= target && (!next || timer.at < next.at || (timer.at === next.at && timer.id < next.id))) next = timer;
      }
      if (!next) break;
      this.timers.delete(next.id);
      this.t = next.at;
      next.fn();
      await settle();
    }
    this.t = target;
    await settle();
  }

  pendingDelays() {
    return [...this.timers.values()].map((t) => t.at - this.t).sort((a, b) => a - b);
  }
}

/** Lets every pending promise chain run (fetch responses, awaits in the client). */
export async function settle(rounds = 20) {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

/**
 * A fake gateway: sessions, events deduplicated by id, and a script of failures. `fail` is a queue of
 * actions for the next event/end requests: "network" (reject: the request never arrived), "lost" (the gateway
 * processes it but the response is lost), {status, headers}, or "hang" (never answers).
 */
export class FakeGateway {
  constructor({ token = "tok-1", sessionId = "sess-1", capture } = {}) {
    this.token = token;
    this.capture = capture; // the session answer's `capture` list (absent: an older gateway)
    this.sessionId = sessionId;
    this.requests = [];
    this.events = new Map(); // id → event (first delivery)
    this.deliveries = []; // every event id received, duplicates included
    this.ended = null;
    this.fail = [];
    this.sessionFail = [];
    this.hung = [];
    this.fetch = (url, init = {}) => this._handle(url, init);
  }

  get eventRequests() {
    return this.requests.filter((r) => r.path.endsWith("/events"));
  }

  uniqueEvents() {
    return [...this.events.values()].sort((a, b) => a.seq - b.seq);
  }

  async _handle(url, init) {
    const u = new URL(url, "http://gw.test");
    const headers = new Headers(init.headers || {});
    const req = { url, path: u.pathname, query: Object.fromEntries(u.searchParams), headers, init, body: null };
    try {
      req.body = init.body ? JSON.parse(init.body) : null;
    } catch (_) {
      req.body = init.body;
    }
    this.requests.push(req);
    if (u.pathname === "/v1/sessions") {
      const action = this.sessionFail.shift();
      if (action === "network") throw new TypeError("Failed to fetch");
      if (action && action.status) return new Response("{}", { status: action.status, headers: action.headers });
      if (action === "hang") return new Promise((resolve) => this.hung.push(resolve));
      const sid = req.body && req.body.session_id ? req.body.session_id : this.sessionId;
      return json(201, {
        session_id: sid,
        trace_id: "0af7651916cd43dd8448eb211c80319c",
        root_span_id: "b7ad6b7169203331",
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        sampled: true,
        token: this.token,
        expires_at: "2030-01-01T00:00:00Z",
        idle_timeout_s: 300,
        ...(this.capture ? { capture: this.capture } : {}),
      });
    }
    const auth = headers.get("authorization");
    const token = auth ? auth.replace(/^Bearer /, "") : u.searchParams.get("token");
    if (token !== this.token) return json(401, { title: "Unauthorized", status: 401 });
    const action = this.fail.shift();
    if (action === "network") throw new TypeError("Failed to fetch");
    if (action === "hang") return new Promise((resolve) => this.hung.push(resolve));
    if (action && action.status) {
      return new Response(JSON.stringify({ status: action.status }), {
        status: action.status,
        headers: { "content-type": "application/problem+json", ...(action.headers || {}) },
      });
    }
    const body = req.body || {};
    const list = Array.isArray(body.events) ? body.events : body.type ? [body] : [];
    let accepted = 0;
    let duplicates = 0;
    const rejected = [];
    for (const [index, e] of list.entries()) {
      if (e.name === "reject-me") {
        rejected.push({ index, errors: [{ path: `events[${index}].name`, message: "rejected by test" }] });
        continue;
      }
      this.deliveries.push(e.id);
      if (this.events.has(e.id)) duplicates++;
      else {
        this.events.set(e.id, e);
        accepted++;
      }
    }
    if (u.pathname.endsWith("/end")) {
      if (!this.ended) this.ended = { reason: body.reason, ts: body.ts };
      if (action === "lost") throw new TypeError("Failed to fetch");
      return json(200, { session_id: this.sessionId, end_reason: this.ended.reason, turns: 0 });
    }
    if (action === "lost") throw new TypeError("Failed to fetch");
    return json(202, { accepted, duplicates, rejected });
  }
}

export function json(status, body) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": status >= 400 ? "application/problem+json" : "application/json" },
  });
}

/** A window + document pair with addEventListener/dispatchEvent and a settable visibilityState. */
export function fakePage() {
  const win = new EventTarget();
  const doc = new EventTarget();
  doc.visibilityState = "visible";
  return {
    window: win,
    document: doc,
    pagehide() {
      win.dispatchEvent(new Event("pagehide"));
    },
    hide() {
      doc.visibilityState = "hidden";
      doc.dispatchEvent(new Event("visibilitychange"));
    },
    show() {
      doc.visibilityState = "visible";
      doc.dispatchEvent(new Event("visibilitychange"));
    },
  };
}

/** Records sendBeacon calls; `result` decides what it returns. */
export function fakeBeacon(result = true) {
  const calls = [];
  const fn = (url, data) => {
    calls.push({ url, data });
    return typeof result === "function" ? result(url, data) : result;
  };
  fn.calls = calls;
  fn.bodies = async () =>
    Promise.all(
      calls.map(async (c) => {
        const text = typeof c.data === "string" ? c.data : await c.data.text();
        return { url: new URL(c.url, "http://gw.test"), text, bytes: Buffer.byteLength(text), type: c.data.type, json: JSON.parse(text) };
      }),
    );
  return fn;
}

/** A trace stand-in for adapter tests: records what adapters emit. */
export function recorderTrace(clock) {
  const events = [];
  return {
    events,
    now: () => clock.now(),
    record(type, fields, options) {
      events.push({ type, ...(fields || {}), ...(options && options.ts != null ? { ts: options.ts } : {}) });
      return `e${events.length}`;
    },
    types() {
      return events.map((e) => e.type);
    },
  };
}
