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

export const VERSION = "0.1.0";
const SDK_NAME = `voice-trace-js/${VERSION}`;

/** Fetch keepalive bodies and beacons share a 64 KiB budget in browsers. */
const KEEPALIVE_LIMIT = 64 * 1024;

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
const FATAL_STATUSES = new Set([401, 403, 404, 410]);

function utf8Length(str) {
  if (typeof TextEncoder !== "undefined") return new TextEncoder().encode(str).length;
  return unescape(encodeURIComponent(str)).length;
}

function isRetryableStatus(status) {
  return status === 408 || status === 425 || status === 429 || status >= 500;
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

/** Retry-After header (seconds or HTTP date) in ms, or null. */
export function parseRetryAfter(value, nowMs) {
  if (value == null || value === "") return null;
  const s = String(value).trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(parseFloat(s) * 1000);
  const t = Date.parse(s);
  if (Number.isNaN(t)) return null;
  return Math.max(0, t - nowMs);
}

function headerGet(res, name) {
  try {
    if (res && res.headers && typeof res.headers.get === "function") return res.headers.get(name);
    if (res && res.headers) return res.headers[name] ?? res.headers[name.toLowerCase()] ?? null;
  } catch (_) {
    /* ignore */
  }
  return null;
}

async function readJson(res) {
  try {
    if (res && typeof res.json === "function") return await res.json();
    if (res && typeof res.text === "function") return JSON.parse(await res.text());
  } catch (_) {
    /* a body that is not JSON is not an error for us */
  }
  return null;
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

export class VoiceTrace {
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

  // ---------------------------------------------------------------- sending

  _url(path, query) {
    const base = `${this.gatewayUrl}/v1/sessions/${encodeURIComponent(this.sessionId)}${path}`;
    return query ? `${base}?token=${encodeURIComponent(this.token)}` : base;
  }

  _headers() {
    if (this.options.tokenInQuery) return { "Content-Type": "text/plain;charset=UTF-8" };
    return { "Content-Type": "application/json", Authorization: `Bearer ${this.token}` };
  }

  _schedule() {
    if (this.state !== "active" || !this.token) return;
    if (this._queue.length >= this.options.maxBatchEvents) {
      this._pump();
    } else if (this._queue.length && !this._flushTimer && !this._flushDue) {
      this._flushTimer = this._setTimeout(() => {
        this._flushTimer = null;
        this._flushDue = true;
        this._pump();
      }, this.options.flushIntervalMs);
    }
  }

  /** Starts sending the next batch, if one is due and none is in flight. */
  _pump() {
    if (this._inflight || !this.token || (this.state !== "active" && this.state !== "ending")) return;
    if (!this._queue.length) {
      this._flushDue = false;
      this._clearFlushTimer();
      return;
    }
    if (!(this._flushDue || this._queue.length >= this.options.maxBatchEvents)) {
      this._schedule();
      return;
    }
    const items = this._takeBatch(this.options.maxBatchEvents, this.options.maxBatchBytes - 64);
    if (!this._queue.length) {
      this._flushDue = false;
      this._clearFlushTimer();
    }
    this._inflight = { items, attempt: 0, gen: ++this._gen };
    this._sendInflight();
  }

  _takeBatch(maxEvents, maxBytes) {
    const items = [];
    let bytes = 0;
    while (this._queue.length && items.length < maxEvents) {
      const next = this._queue[0];
      if (items.length && bytes + next.bytes + 1 > maxBytes) break;
      items.push(this._queue.shift());
      bytes += next.bytes + 1;
    }
    return items;
  }

  async _sendInflight() {
    const batch = this._inflight;
    if (!batch) return;
    batch.attempt++;
    const body = `{"events":[${batch.items.map((i) => i.json).join(",")}],"sent_at":${this.now()}}`;
    const { res, err } = await this._post("/events", body);
    if (this._inflight !== batch || batch.gen !== this._gen) return; // abandoned (beacon took over)
    if (res && res.ok) {
      const data = await readJson(res);
      if (this._inflight !== batch) return;
      this._acknowledge(batch, data);
      return this._afterBatch();
    }
    const status = res ? res.status : 0;
    if (status === 413 && batch.items.length > 1) {
      // Too big for the gateway's limit: send halves.
      const half = Math.ceil(batch.items.length / 2);
      this._queue.unshift(...batch.items.slice(half));
      batch.items = batch.items.slice(0, half);
      batch.attempt = 0;
      return this._sendInflight();
    }
    if ((!res || isRetryableStatus(status)) && batch.attempt < this.options.maxAttempts) {
      this.stats.retries++;
      const delay = this._retryDelay(batch.attempt, res);
      this._retryTimer = this._setTimeout(() => {
        this._retryTimer = null;
        if (this._inflight === batch) this._sendInflight();
      }, delay);
      if (!res) this._report("network", err, 0, null, { retrying: true, delay_ms: delay });
      else this._report("http", `POST events: HTTP ${status}`, status, null, { retrying: true, delay_ms: delay });
      return;
    }
    // Not retryable, or out of attempts: the batch is lost, and counted.
    const problem = res ? await readJson(res) : null;
    if (this._inflight !== batch) return;
    this.stats.dropped += batch.items.length;
    this._inflightDone();
    this._report(
      res ? "http" : "network",
      err || problem?.detail || `POST events: HTTP ${status}; ${batch.items.length} events dropped`,
      status,
      problem,
      { dropped: batch.items.length },
    );
    if (FATAL_STATUSES.has(status)) {
      this._fail("session_lost", `the gateway refused the session (HTTP ${status})`, status, problem);
      return;
    }
    this._afterBatch();
  }

  _acknowledge(batch, data) {
    this._inflightDone();
    this._overflowReported = false;
    const n = batch.items.length;
    if (data && typeof data === "object") {
      this.stats.accepted += Number(data.accepted) || 0;
      this.stats.duplicates += Number(data.duplicates) || 0;
      const rejected = Array.isArray(data.rejected) ? data.rejected : [];
      if (rejected.length) {
        this.stats.rejected += rejected.length;
        const detail = rejected.map((r) => ({ ...r, event: batch.items[r.index] && batch.items[r.index].event }));
        this._report("rejected", `${rejected.length} of ${n} events rejected`, 202, null, { rejected: detail });
      }
    } else {
      this.stats.accepted += n;
    }
  }

  _afterBatch() {
    // While ending, _doEnd drives the sending; otherwise send the next batch if one is due.
    if (this.state === "active" && this._queue.length) this._pump();
  }

  _retryDelay(attempt, res) {
    const o = this.options;
    const ra = res ? parseRetryAfter(headerGet(res, "retry-after"), this.now()) : null;
    if (ra !== null) return Math.min(ra, o.maxRetryAfterMs);
    const exp = Math.min(o.retryMaxMs, o.retryBaseMs * 2 ** (attempt - 1));
    // "Equal jitter": half fixed, half random, so retries from many tabs spread out but never go to zero.
    return Math.round(exp / 2 + this._random() * (exp / 2));
  }

  /** POSTs a JSON body to the session's `path`; resolves to `{res, err}`, never rejects. */
  async _post(path, body) {
    try {
      const res = await this._request(this._url(path, this.options.tokenInQuery), {
        method: "POST",
        headers: this._headers(),
        body,
        keepalive: this.options.keepalive && utf8Length(body) < KEEPALIVE_LIMIT,
      });
      return { res, err: null };
    } catch (err) {
      return { res: null, err };
    }
  }

  async _request(url, init) {
    this.stats.requests++;
    let controller = null;
    let timer = null;
    if (this.options.requestTimeoutMs > 0 && typeof AbortController !== "undefined") {
      controller = new AbortController();
      init = { ...init, signal: controller.signal };
      timer = this._setTimeout(() => controller.abort(), this.options.requestTimeoutMs);
    }
    try {
      return await this._fetch(url, { credentials: "omit", ...init });
    } finally {
      if (timer !== null) this._clearTimeout(timer);
    }
  }

  _sleep(ms) {
    return new Promise((resolve) => {
      this._retryTimer = this._setTimeout(() => {
        this._retryTimer = null;
        resolve();
      }, ms);
    });
  }

  _whenInflightDone() {
    if (!this._inflight) return Promise.resolve();
    return new Promise((resolve) => this._inflightWaiters.push(resolve));
  }

  /** The batch in flight is settled (sent, dropped or abandoned): wake whoever waits for it. */
  _inflightDone() {
    this._inflight = null;
    const waiters = this._inflightWaiters;
    this._inflightWaiters = [];
    for (const w of waiters) w();
  }

  _queueFits(maxEvents, maxBytes) {
    if (this._queue.length > maxEvents) return false;
    let bytes = 0;
    for (const it of this._queue) bytes += it.bytes + 1;
    return bytes <= maxBytes;
  }

  _clearFlushTimer() {
    if (this._flushTimer !== null) {
      this._clearTimeout(this._flushTimer);
      this._flushTimer = null;
    }
  }

  _clearTimers() {
    this._clearFlushTimer();
    if (this._retryTimer !== null) {
      this._clearTimeout(this._retryTimer);
      this._retryTimer = null;
    }
  }

  // ---------------------------------------------------------------- end

  async _doEnd(reason, extra) {
    if (this.state === "pending") await this.ready;
    if (this.state === "failed" || this.state === "ended") return null;
    if (Array.isArray(extra.events)) {
      for (const e of extra.events) if (e && e.type) this.record(e.type, e, { ts: e.ts });
    }
    this.state = "ending";
    this._clearFlushTimer();
    // A batch waiting for its retry goes now: ending is the moment to deliver.
    if (this._inflight && this._retryTimer !== null) {
      this._clearTimeout(this._retryTimer);
      this._retryTimer = null;
      this._sendInflight();
    }
    // Let the batch in flight finish (with its retries), then send batches until the rest fits the /end body.
    const endRoom = this.options.maxBatchBytes - 256;
    for (;;) {
      if (this._inflight) await this._whenInflightDone();
      if (this.state !== "ending") return null; // the page went away meanwhile: the beacon did the end
      if (this._queueFits(this.options.maxBatchEvents, endRoom)) break;
      this._flushDue = true;
      this._pump();
    }
    this._sealed = true;
    const items = this._takeBatch(this.options.maxBatchEvents, endRoom);
    const ts = typeof extra.ts === "number" ? extra.ts : this.now();
    const body = JSON.stringify({
      reason: this._endReason,
      ts,
      events: items.map((i) => i.event),
      sent_at: this.now(),
    });
    this._inflight = { items, attempt: 0, gen: ++this._gen };
    const batch = this._inflight;
    for (;;) {
      batch.attempt++;
      const { res, err } = await this._post("/end", body);
      if (this._inflight !== batch) return null;
      if (res && res.ok) {
        const summary = await readJson(res);
        this._inflightDone();
        this.stats.accepted += items.length;
        this.state = "ended";
        return summary;
      }
      const status = res ? res.status : 0;
      if ((!res || isRetryableStatus(status)) && batch.attempt < this.options.maxAttempts) {
        this.stats.retries++;
        const delay = this._retryDelay(batch.attempt, res);
        this._report(res ? "http" : "network", err || `POST end: HTTP ${status}`, status, null, { retrying: true, delay_ms: delay });
        await this._sleep(delay);
        if (this._inflight !== batch) return null;
        continue;
      }
      const problem = res ? await readJson(res) : null;
      this._inflightDone();
      this.stats.dropped += items.length;
      this.state = "ended";
      this._report("end_failed", err || problem?.detail || `POST end: HTTP ${status}`, status, problem);
      return null;
    }
  }

  _finishEnd(summary) {
    if (this.state !== "failed") this.state = "ended";
    this._sealed = true;
    this._clearTimers();
    this._unlistenLifecycle();
    const resolve = this._endResolve;
    this._endResolve = null;
    if (resolve) resolve(summary ?? null);
  }

  // ---------------------------------------------------------------- page lifecycle & beacons

  _listenLifecycle() {
    const win = this._window;
    if (!win || typeof win.addEventListener !== "function") return;
    const onPageHide = () => this._safe(() => this._beacon(true, this.options.unloadReason));
    const onVisibility = () =>
      this._safe(() => {
        const doc = this._document;
        if (doc && doc.visibilityState === "hidden") this._beacon(this.options.endOnHidden, this.options.unloadReason);
      });
    win.addEventListener("pagehide", onPageHide);
    const doc = this._document;
    const visTarget = doc && typeof doc.addEventListener === "function" ? doc : win;
    visTarget.addEventListener("visibilitychange", onVisibility);
    this._lifecycleHandlers = { win, visTarget, onPageHide, onVisibility };
  }

  _unlistenLifecycle() {
    const h = this._lifecycleHandlers;
    if (!h) return;
    this._lifecycleHandlers = null;
    try {
      h.win.removeEventListener("pagehide", h.onPageHide);
      h.visTarget.removeEventListener("visibilitychange", h.onVisibility);
    } catch (_) {
      /* ignore */
    }
  }

  /** Sends what is left with sendBeacon (chunks < beaconMaxBytes); with `withEnd`, the last chunk is /end. */
  sendBeaconNow(withEnd = true, reason = this.options.unloadReason) {
    return this._safe(() => this._beacon(withEnd, reason)) ?? 0;
  }

  _beacon(withEnd, reason) {
    if (this.state === "ended" || this.state === "failed") return 0;
    if (this.state === "pending" || !this.token) {
      // No session yet: nothing can be sent. Count what is lost with the page.
      if (withEnd) this.stats.dropped += this._queue.length;
      return 0;
    }
    // end() was under way: the beacon must carry the end (its request may die with the page), with its reason.
    if (this.state === "ending") {
      withEnd = true;
      reason = this._endReason || reason;
    }
    // The batch in flight may or may not arrive: send it again (the gateway deduplicates by id).
    const items = [...(this._inflight ? this._inflight.items : []), ...this._queue];
    if (!items.length && !withEnd) return 0;
    this._queue = [];
    this._gen++;
    this._inflightDone();
    this._clearTimers();
    this._flushDue = false;

    const limit = this.options.beaconMaxBytes;
    const sentAt = this.now();
    const endHead = JSON.stringify({ reason: String(reason || "user_disconnect").slice(0, 256), ts: sentAt, sent_at: sentAt });
    // Room for the largest envelope ({"events":[...]} plus the end fields); events fill the rest.
    const room = limit - utf8Length(endHead) - 32;
    const chunks = [];
    let cur = [];
    let curBytes = 0;
    for (const it of items) {
      if (it.bytes + 1 > room) {
        this.stats.dropped++;
        continue;
      }
      if (cur.length && curBytes + it.bytes + 1 > room) {
        chunks.push(cur);
        cur = [];
        curBytes = 0;
      }
      cur.push(it);
      curBytes += it.bytes + 1;
    }
    if (cur.length || withEnd) chunks.push(cur);

    let sent = 0;
    chunks.forEach((chunk, i) => {
      const isEnd = withEnd && i === chunks.length - 1;
      const events = chunk.map((c) => c.json).join(",");
      const body = isEnd
        ? `${endHead.slice(0, -1)},"events":[${events}]}`
        : `{"events":[${events}],"sent_at":${sentAt}}`;
      const url = this._url(isEnd ? "/end" : "/events", true);
      if (this._sendOneBeacon(url, body)) sent++;
    });
    if (withEnd) {
      // Beacons have no response: the summary stays on the gateway.
      this.state = "ended";
      this._sealed = true;
      this._unlistenLifecycle();
      if (this._endResolve) this._finishEnd(null);
      else this._endPromise = Promise.resolve(null);
    }
    return sent;
  }

  _sendOneBeacon(url, body) {
    this.stats.beacons++;
    let ok = false;
    try {
      const data = typeof Blob !== "undefined" ? new Blob([body], { type: "text/plain" }) : body;
      ok = !!this._sendBeacon(url, data);
    } catch (e) {
      ok = false;
      this._report("beacon", e);
    }
    if (ok) return true;
    // The beacon quota was full (or no sendBeacon): try a keepalive fetch, which may still outlive the page.
    this.stats.beaconFallbacks++;
    try {
      const p = this._fetch(url, {
        method: "POST",
        headers: { "Content-Type": "text/plain;charset=UTF-8" },
        body,
        keepalive: utf8Length(body) < KEEPALIVE_LIMIT,
        credentials: "omit",
      });
      if (p && typeof p.catch === "function") p.catch((e) => this._report("beacon", e));
    } catch (e) {
      this._report("beacon", e);
    }
    return false;
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
