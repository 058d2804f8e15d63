/**
 * voice-trace.js: browser client for the Voice Trace Gateway.
 *
 * One dependency-free ES module. It reports what happens in a realtime voice session (DESIGN §4 events) to
 * the gateway, fire-and-forget but not lossy:
 *   - every event gets an `id` (the gateway's dedup key) and a `seq` (client order) when it is recorded;
 *   - events are batched by count (`maxBatchEvents`) and by time (`flushIntervalMs`) and posted with
 *     `fetch(..., {keepalive: true})`, one request in flight at a time, so batches arrive in order;
 *   - network errors, 408, 429 and 5xx are retried with exponential backoff and jitter (`Retry-After` wins),
 *     which is safe because the gateway deduplicates by id;
 *   - the queue is bounded (`maxQueueEvents`): when full, the oldest event is dropped and counted;
 *   - on `pagehide` (and `visibilitychange` to hidden) whatever is left goes out with `navigator.sendBeacon`
 *     as text/plain with `?token=` in the URL, split into chunks under the 64 KiB beacon limit, the last
 *     chunk being the `/end` call with its final events;
 *   - nothing ever throws into the app: every public method catches, and reports through `onError`.
 *
 * Timers, clock, randomness, fetch, sendBeacon, window and document are injectable (options), which is how
 * the unit tests in tests/js drive it.
 */

import { CallRecorder } from "./recorder.js";
import { EventDelivery } from "./voice-trace-delivery.js";
import { isRetryableStatus, parseRetryAfter, readJson, utf8Length } from "./voice-trace-http.js";

export { parseRetryAfter };

export const VERSION = "0.1.0";
const SDK_NAME = `voice-trace-js/${VERSION}`;

export const DEFAULTS = Object.freeze({
  maxBatchEvents: 20,
  flushIntervalMs: 1000,
  maxBatchBytes: 60 * 1024,
  maxQueueEvents: 1000,
  maxEventBytes: 32 * 1024,
  retryBaseMs: 500,
  retryMaxMs: 30000,
  maxAttempts: 10,
  maxRetryAfterMs: 120000,
  requestTimeoutMs: 15000,
  traceFetchWaitMs: 1500,
  startMaxAttempts: 5,
  beaconMaxBytes: 63 * 1024,
  unloadReason: "user_disconnect",
  endOnHidden: false,
  pageLifecycle: true,
  keepalive: true,
  tokenInQuery: false,
});

const RESERVED = new Set(["type", "id", "seq", "ts"]);

/** Content kinds a session can keep (the gateway's `capture` answer), and the event fields that carry them. */
export const CONTENT_KINDS = Object.freeze(["transcripts", "tool_arguments", "tool_results"]);

/**
 * The event without the words the session will not keep (`capture`: the kinds it keeps), or null when nothing
 * of it is worth sending. A user transcript keeps its time (it can open a turn) with empty text; a model
 * transcript is only words, so it is not sent at all.
 */
export function withoutUncaptured(event, capture) {
  if (!Array.isArray(capture)) return event;
  const keeps = (kind) => capture.includes(kind);
  switch (event.type) {
    case "user.transcript":
      return keeps("transcripts") || event.text === "" ? event : { ...event, text: "" };
    case "model.transcript":
      return keeps("transcripts") ? event : null;
    case "tool.call": {
      if (keeps("tool_arguments") || !("arguments" in event)) return event;
      const { arguments: _dropped, ...rest } = event;
      return rest;
    }
    case "tool.result": {
      if (keeps("tool_results") || !("result" in event || "error" in event)) return event;
      const { result: _r, error, ...rest } = event;
      return error !== undefined && error !== null ? { ...rest, error: "tool_error" } : rest;
    }
    default:
      return event;
  }
}
function stripSlash(url) {
  return String(url || "").replace(/\/+$/, "");
}

function randomId(random) {
  try {
    const c = globalThis.crypto;
    // Ids must differ between page loads even when tests inject a fixed random(): prefer crypto.
    if (c && typeof c.getRandomValues === "function") {
      const bytes = c.getRandomValues(new Uint8Array(8));
      return Array.from(bytes, (b) => b.toString(36).padStart(2, "0")).join("").slice(0, 12);
    }
  } catch (_) {
    /* fall through */
  }
  let s = "";
  for (let i = 0; i < 12; i++) s += Math.floor(random() * 36).toString(36);
  return s;
}

/** Parses a traceparent into {traceId, spanId, sampled}; null when malformed. */
export function parseTraceparent(tp) {
  const m = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(String(tp || "").trim());
  if (!m) return null;
  return { traceId: m[2], spanId: m[3], sampled: (parseInt(m[4], 16) & 1) === 1 };
}

/** Cuts the largest fields of an event until its JSON fits `maxBytes`. */
function shrinkEvent(event, maxBytes) {
  const out = { ...event };
  const keys = Object.keys(out).filter((k) => !RESERVED.has(k) && k !== "usage" && k !== "call_ids");
  for (let guard = 0; guard < 8; guard++) {
    const size = utf8Length(JSON.stringify(out));
    if (size <= maxBytes) return out;
    let bigKey = null;
    let bigLen = -1;
    for (const k of keys) {
      const v = out[k];
      const len = typeof v === "string" ? v.length : utf8Length(JSON.stringify(v) ?? "");
      if (len > bigLen) {
        bigLen = len;
        bigKey = k;
      }
    }
    if (bigKey === null || bigLen <= 0) break;
    const v = out[bigKey];
    const text = typeof v === "string" ? v : JSON.stringify(v);
    // Chars are not bytes; cut generously and loop if still too big.
    const keep = Math.max(0, text.length - (size - maxBytes) - 64);
    out[bigKey] = text.slice(0, Math.floor(keep * (guard === 0 ? 1 : 0.5))) + "…[truncated]";
    out.truncated = true;
  }
  return utf8Length(JSON.stringify(out)) <= maxBytes ? out : null;
}

export class VoiceTrace extends EventDelivery {
  /**
   * Starts a session through the gateway (`POST /v1/sessions`). Resolves to a client whatever happens: if the
   * session cannot be created, `client.state` is "failed", `onError` was called, and recording is a no-op.
   */
  static async start(options = {}) {
    const client = VoiceTrace.create(options);
    await client.ready;
    return client;
  }

  /** Like `start`, but returns the client at once; events recorded before the session exists are queued. */
  static create(options = {}) {
    const client = new VoiceTrace(options);
    client._startSession().catch((e) => client._fail("start_failed", e));
    return client;
  }

  /** A client for a session the app's backend created (it handed the browser the id, token and traceparent). */
  static fromToken(options = {}) {
    const client = new VoiceTrace(options);
    try {
      client._adoptSession({
        session_id: options.sessionId ?? options.session_id,
        token: options.token,
        traceparent: options.traceparent,
        trace_id: options.traceId ?? options.trace_id,
        capture: options.capture,
      });
      client._readyResolve(client);
    } catch (e) {
      client._fail("start_failed", e);
    }
    return client;
  }

  constructor(options = {}) {
    super();
    const o = { ...DEFAULTS, ...options };
    this.options = o;
    this.gatewayUrl = stripSlash(o.gatewayUrl ?? "");
    const g = globalThis;
    this._fetch = o.fetch ?? ((...args) => g.fetch(...args));
    this._sendBeacon =
      o.sendBeacon ?? ((url, data) => (g.navigator && g.navigator.sendBeacon ? g.navigator.sendBeacon(url, data) : false));
    this._setTimeout = o.setTimeout ?? ((fn, ms) => g.setTimeout(fn, ms));
    this._clearTimeout = o.clearTimeout ?? ((h) => g.clearTimeout(h));
    this._now = o.now ?? (() => Date.now());
    this._random = o.random ?? Math.random;
    this._window = o.window !== undefined ? o.window : g.window;
    this._document = o.document !== undefined ? o.document : g.document;
    this._onError = typeof o.onError === "function" ? o.onError : null;
    this._onEvent = typeof o.onEvent === "function" ? o.onEvent : null;
    // The end chunk's envelope must fit next to its events; keep single events well under the beacon size.
    this._maxEventBytes = Math.min(o.maxEventBytes, o.beaconMaxBytes - 1024, o.maxBatchBytes - 256);

    this.state = "pending"; // pending → active → ending → ended; or failed
    this.sessionId = null;
    this.traceId = null;
    this.rootSpanId = null;
    this.traceparent = null;
    this.token = null;
    this.sampled = null;
    this.expiresAt = null;
    this.idleTimeoutS = null;
    this.session = null; // the gateway's full response, when we created the session
    // Content kinds the session keeps (the gateway's answer); null: not known yet, or a gateway that does not
    // say (then everything is sent, as before). Words the session would throw away never leave the browser.
    this.capture = null;

    this._instance = randomId(this._random);
    this._seq = 0;
    this._queue = []; // [{event, json, bytes}]
    this._inflight = null; // {items, attempt, gen}
    this._gen = 0; // bumps when the in-flight batch is abandoned (beacon), so late completions are ignored
    this._flushTimer = null;
    this._retryTimer = null;
    this._flushDue = false;
    this._inflightWaiters = [];
    this._sealed = false; // set once the /end body is built: later events cannot be sent
    this._overflowReported = false;
    this._endPromise = null;
    this._endResolve = null;
    this._endReason = null;
    this.stats = {
      recorded: 0,
      accepted: 0,
      duplicates: 0,
      rejected: 0,
      dropped: 0,
      truncated: 0,
      requests: 0,
      retries: 0,
      beacons: 0,
      beaconFallbacks: 0,
    };
    this.ready = new Promise((resolve) => {
      this._readyResolve = resolve;
    });
    this._lifecycleHandlers = null;
    if (o.pageLifecycle) this._listenLifecycle();
    // Call recording (recorder.js), when the app asks (`recordAudio`) and the gateway's answer allows it.
    this.recorder = o.recordAudio ? new CallRecorder(this, o) : null;
  }

  // ---------------------------------------------------------------- public API

  /** The client's clock (ms since the epoch); adapters use it so tests can drive time. */
  now() {
    try {
      return this._now();
    } catch (_) {
      return Date.now();
    }
  }

  /**
   * Records one event. Returns its id, or null if it was not recorded (session ended or failed, bad input).
   * `options.ts` overrides the event time (ms since the epoch).
   */
  record(type, fields, options) {
    try {
      if (this.state === "ended" || this.state === "failed" || this._sealed) return null;
      if (typeof type !== "string" || !type) throw new TypeError("event type must be a non-empty string");
      const seq = ++this._seq;
      let event = { type, id: `${this._instance}-${seq}`, seq, ts: this.now() };
      if (fields && typeof fields === "object") {
        for (const [k, v] of Object.entries(fields)) {
          if (!RESERVED.has(k) && v !== undefined) event[k] = v;
        }
      }
      if (options && typeof options.ts === "number" && Number.isFinite(options.ts)) event.ts = options.ts;
      if (this.capture) {
        event = withoutUncaptured(event, this.capture);
        if (!event) return null;
      }
      let json = JSON.stringify(event);
      let bytes = utf8Length(json);
      if (bytes > this._maxEventBytes) {
        event = shrinkEvent(event, this._maxEventBytes);
        if (!event) throw new RangeError(`event ${type} too large to send`);
        json = JSON.stringify(event);
        bytes = utf8Length(json);
        this.stats.truncated++;
      }
      this.stats.recorded++;
      this._queue.push({ event, json, bytes });
      if (this._queue.length > this.options.maxQueueEvents) {
        const over = this._queue.length - this.options.maxQueueEvents;
        this._queue.splice(0, over);
        this.stats.dropped += over;
        if (!this._overflowReported) {
          this._overflowReported = true;
          this._report("queue_overflow", `event queue full (${this.options.maxQueueEvents}); dropping oldest events`);
        }
      }
      if (this._onEvent) {
        try {
          this._onEvent(event);
        } catch (_) {
          /* the app's hook must not break recording */
        }
      }
      this._schedule();
      return event.id;
    } catch (e) {
      this._report("record_failed", e);
      return null;
    }
  }

  /** Whether the session keeps this content kind ("transcripts", "tool_arguments", "tool_results"). */
  captures(kind) {
    return !Array.isArray(this.capture) || this.capture.includes(kind);
  }

  /** Tells the app about a problem through `onError` (adapters use it when they cannot see a client). */
  reportProblem(kind, message, extra) {
    this._report(String(kind || "internal"), message, null, null, extra);
  }

  /** `mark {name, attributes?}`: a custom application event. */
  mark(name, attributes) {
    return this.record("mark", { name, attributes });
  }

  /** `session.update {user_id?, tags?, attributes?}`: late facts about the session. */
  update(fields) {
    return this.record("session.update", fields);
  }

  /** Sends everything queued now. Resolves (never rejects) when the queue is empty or the client gave up. */
  async flush() {
    try {
      if (this.state === "pending") await this.ready;
      for (;;) {
        if (this._inflight) {
          await this._whenInflightDone();
          continue;
        }
        if (!this._queue.length || !this.token || this.state !== "active") return;
        this._flushDue = true;
        this._pump();
        if (!this._inflight) return;
      }
    } catch (e) {
      this._report("internal", e);
    }
  }

  /**
   * Ends the session: sends the remaining events with `POST /v1/sessions/{id}/end`. Resolves to the gateway's
   * summary, or null when it could not be delivered. Calling it again returns the same promise.
   */
  end(reason = "completed", extra = {}) {
    if (this._endPromise) return this._endPromise;
    this._endReason = String(reason || "completed").slice(0, 256);
    if (this.recorder) this.recorder.stop(); // its last chunk follows the end, within the gateway's grace window
    this._endPromise = new Promise((resolve) => {
      this._endResolve = resolve;
    });
    this._doEnd(reason, extra || {}).then(
      (summary) => this._finishEnd(summary),
      (e) => {
        this._report("end_failed", e);
        this._finishEnd(null);
      },
    );
    return this._endPromise;
  }

  /**
   * `fetch` that adds the session's `traceparent` header, so the app's backend calls join the session's trace.
   * Errors of the request itself are the app's, as with `fetch`; tracing never adds one.
   */
  async traceFetch(input, init, fetchImpl, propagateTo) {
    const doFetch = fetchImpl ?? this.options.appFetch ?? ((...a) => globalThis.fetch(...a));
    let nextInit = init;
    try {
      // Wait a little for a session that is still being created, never long: the app's call comes first.
      if (this.state === "pending") await this._readyWithin(this.options.traceFetchWaitMs);
      nextInit = this._withTraceparent(input, init, propagateTo ?? this.options.propagateTo);
    } catch (e) {
      this._report("internal", e);
      nextInit = init;
    }
    return doFetch(input, nextInit);
  }

  _readyWithin(ms) {
    let timer = null;
    const timeout = new Promise((resolve) => {
      timer = this._setTimeout(resolve, ms);
    });
    return Promise.race([this.ready, timeout]).finally(() => this._clearTimeout(timer));
  }

  /** Returns a fetch-compatible function that propagates the session's traceparent. */
  wrapFetch(fetchImpl, options = {}) {
    const base = fetchImpl ?? ((...a) => globalThis.fetch(...a));
    return (input, init) => this.traceFetch(input, init, base, options.propagateTo);
  }

  /** Headers to add to an app request yourself (e.g. for XHR or WebSocket URLs). */
  traceHeaders() {
    return this.traceparent ? { traceparent: this.traceparent } : {};
  }

  /** Removes page lifecycle listeners and timers without ending the session. */
  dispose() {
    try {
      this._unlistenLifecycle();
      this._clearTimers();
    } catch (_) {
      /* ignore */
    }
  }

  /** Number of events recorded but not yet acknowledged by the gateway. */
  get pending() {
    return this._queue.length + (this._inflight ? this._inflight.items.length : 0);
  }

  // ---------------------------------------------------------------- session

  async _startSession() {
    const o = this.options;
    const body = {};
    for (const k of ["session_id", "user_id", "provider", "model", "agent", "tags", "attributes"]) {
      const camel = k.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
      const v = o[k] ?? o[camel];
      if (v !== undefined && v !== null) body[k] = v;
    }
    let ua;
    try {
      ua = globalThis.navigator && globalThis.navigator.userAgent;
    } catch (_) {
      ua = undefined;
    }
    if (o.recordAudio) body.record_audio = true;
    body.client = { sdk: SDK_NAME, ...(ua ? { user_agent: String(ua).slice(0, 512) } : {}), ...(o.client || {}) };
    const headers = { "Content-Type": "application/json" };
    if (o.apiKey) headers.Authorization = `Bearer ${o.apiKey}`;
    if (o.parentTraceparent) headers.traceparent = o.parentTraceparent;
    const url = `${this.gatewayUrl}/v1/sessions`;
    const json = JSON.stringify(body);
    for (let attempt = 1; ; attempt++) {
      let res = null;
      let err = null;
      try {
        res = await this._request(url, { method: "POST", headers, body: json });
      } catch (e) {
        err = e;
      }
      if (this.state !== "pending") return; // ended or failed meanwhile
      if (res && res.ok) {
        const data = await readJson(res);
        try {
          this._adoptSession(data || {});
          this.session = data;
        } catch (e) {
          this._fail("start_failed", e);
          return;
        }
        this._readyResolve(this);
        this._schedule();
        return;
      }
      const retryable = !res || isRetryableStatus(res.status);
      if (!retryable || attempt >= o.startMaxAttempts) {
        const problem = res ? await readJson(res) : null;
        this._fail("start_failed", err || problem?.detail || `POST /v1/sessions: HTTP ${res.status}`, res?.status, problem);
        return;
      }
      await this._sleep(this._retryDelay(attempt, res));
      if (this.state !== "pending") return;
    }
  }

  _adoptSession(s) {
    if (!s.session_id || !s.token) throw new Error("session needs session_id and token");
    this.sessionId = String(s.session_id);
    this.token = String(s.token);
    this.traceparent = s.traceparent || null;
    const tp = parseTraceparent(this.traceparent);
    this.traceId = s.trace_id || (tp && tp.traceId) || null;
    this.rootSpanId = s.root_span_id || (tp && tp.spanId) || null;
    this.sampled = s.sampled ?? (tp ? tp.sampled : null);
    this.expiresAt = s.expires_at ?? null;
    this.idleTimeoutS = s.idle_timeout_s ?? null;
    if (Array.isArray(s.capture)) {
      this.capture = s.capture.map(String);
      this._applyCapture();
    }
    if (this.state === "pending") this.state = "active";
  }

  /** Events queued before the session said what it keeps lose the words it would throw away. */
  _applyCapture() {
    const kept = [];
    for (const it of this._queue) {
      const event = withoutUncaptured(it.event, this.capture);
      if (!event) continue;
      if (event === it.event) kept.push(it);
      else {
        const json = JSON.stringify(event);
        kept.push({ event, json, bytes: utf8Length(json) });
      }
    }
    this._queue = kept;
  }

  _fail(kind, error, status, problem) {
    const n = this._queue.length + (this._inflight ? this._inflight.items.length : 0);
    this.stats.dropped += n;
    this._queue = [];
    this._gen++;
    this.state = "failed";
    this._clearTimers();
    this._unlistenLifecycle();
    this._report(kind, error, status, problem);
    this._readyResolve(this);
    this._inflightDone();
    if (this._endResolve) this._finishEnd(null);
  }

  // ---------------------------------------------------------------- helpers

  _withTraceparent(input, init, propagateTo) {
    const tp = this.traceparent;
    if (!tp) return init;
    const url = typeof input === "string" ? input : input && (input.url || input.href || String(input));
    if (!matchesTarget(url, propagateTo)) return init;
    const base = init && init.headers !== undefined ? init.headers : input && typeof input === "object" && input.headers;
    let headers;
    if (typeof Headers !== "undefined") {
      headers = new Headers(base || undefined);
      if (!headers.has("traceparent")) headers.set("traceparent", tp);
    } else {
      headers = { ...(base || {}) };
      if (!Object.keys(headers).some((k) => k.toLowerCase() === "traceparent")) headers.traceparent = tp;
    }
    return { ...(init || {}), headers };
  }

  _safe(fn) {
    try {
      return fn();
    } catch (e) {
      this._report("internal", e);
      return undefined;
    }
  }

  _report(kind, error, status, problem, extra) {
    if (!this._onError) {
      if (this.options.debug && typeof console !== "undefined") console.warn("[voice-trace]", kind, error);
      return;
    }
    try {
      const message = error instanceof Error ? error.message : String(error ?? kind);
      this._onError({
        kind,
        message,
        status: status ?? null,
        problem: problem ?? null,
        error: error instanceof Error ? error : null,
        sessionId: this.sessionId,
        ...(extra || {}),
      });
    } catch (_) {
      /* an onError hook that throws must not reach the app either */
    }
  }
}

function matchesTarget(url, targets) {
  if (targets === undefined || targets === null) return true;
  const list = Array.isArray(targets) ? targets : [targets];
  let abs = url;
  try {
    const base = globalThis.location ? globalThis.location.href : undefined;
    abs = new URL(url, base).href;
  } catch (_) {
    /* keep as is */
  }
  return list.some((t) => {
    if (typeof t === "function") return !!t(abs);
    if (t instanceof RegExp) return t.test(abs);
    if (typeof t === "string") return abs.startsWith(t) || url.startsWith(t);
    return false;
  });
}

export default VoiceTrace;
