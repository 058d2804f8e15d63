// How the browser client's events reach the gateway: batches posted one at a time with retries, the /end call,
// and the beacons that carry what is left when the page goes away. VoiceTrace extends this class; the session's
// state (token, queue, stats, error reporting) lives on the VoiceTrace instance.

import { FATAL_STATUSES, KEEPALIVE_LIMIT, headerGet, isRetryableStatus, parseRetryAfter, readJson, utf8Length } from "./voice-trace-http.js";

export class EventDelivery {
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
}
