import nodeTest from "node:test";
import assert from "node:assert/strict";

import { VoiceTrace, parseRetryAfter, parseTraceparent } from "../../gateway/static/voice-trace.js";
import { FakeClock, FakeGateway, fakePage, fakeBeacon, settle } from "./helpers.mjs";

// A broken client would leave a promise pending forever: fail instead of hanging.
const test = (name, fn) => nodeTest(name, { timeout: 10000 }, fn);

const TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

function setup(opts = {}) {
  const clock = new FakeClock();
  const gw = new FakeGateway();
  const page = fakePage();
  const beacon = fakeBeacon(opts.beaconResult ?? true);
  const errors = [];
  const env = {
    gatewayUrl: "http://gw.test/",
    fetch: gw.fetch,
    sendBeacon: beacon,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: clock.now,
    random: () => 0.5,
    window: page.window,
    document: page.document,
    onError: (e) => errors.push(e),
    requestTimeoutMs: 0,
    ...opts,
  };
  const vt = VoiceTrace.fromToken({ ...env, sessionId: "sess-1", token: "tok-1", traceparent: TP });
  return { clock, gw, page, beacon, errors, vt, env };
}

test("batches by count: a full batch is sent at once, in one request", async () => {
  const { vt, gw } = setup({ maxBatchEvents: 3, flushIntervalMs: 10_000 });
  vt.record("user.speech_start");
  vt.record("user.speech_end");
  await settle();
  assert.equal(gw.eventRequests.length, 0, "2 of 3: not yet");
  vt.record("user.transcript", { text: "hello", final: true });
  await settle();
  assert.equal(gw.eventRequests.length, 1);
  assert.deepEqual(
    gw.eventRequests[0].body.events.map((e) => e.type),
    ["user.speech_start", "user.speech_end", "user.transcript"],
  );
});

test("batches by time: a partial batch waits flushIntervalMs, then goes", async () => {
  const { vt, gw, clock } = setup({ maxBatchEvents: 50, flushIntervalMs: 500 });
  vt.record("model.response_start");
  await clock.advance(300);
  vt.record("model.audio_start");
  await clock.advance(199);
  assert.equal(gw.eventRequests.length, 0);
  await clock.advance(1);
  assert.equal(gw.eventRequests.length, 1);
  assert.equal(gw.eventRequests[0].body.events.length, 2, "the timer counts from the first queued event");
  vt.record("model.turn_complete");
  await clock.advance(499);
  assert.equal(gw.eventRequests.length, 1);
  await clock.advance(1);
  assert.equal(gw.eventRequests.length, 2);
});

test("events carry unique ids, increasing seq, client ts; batches carry sent_at and the bearer token", async () => {
  const { vt, gw, clock } = setup({ maxBatchEvents: 5 });
  const ids = [];
  for (let i = 0; i < 5; i++) {
    ids.push(vt.record("mark", { name: `m${i}`, id: "spoof", seq: 99, type: "spoof" }));
    await clock.advance(10);
  }
  await settle();
  const req = gw.eventRequests[0];
  const events = req.body.events;
  assert.deepEqual(events.map((e) => e.id), ids);
  assert.equal(new Set(ids).size, 5);
  assert.deepEqual(events.map((e) => e.seq), [1, 2, 3, 4, 5]);
  assert.deepEqual(events.map((e) => e.type), ["mark", "mark", "mark", "mark", "mark"], "fields cannot override type");
  assert.deepEqual(events.map((e) => e.ts), [0, 10, 20, 30, 40].map((d) => 1_700_000_000_000 + d));
  assert.equal(req.body.sent_at, 1_700_000_000_040, "sent_at is the client clock when the batch went out");
  assert.equal(req.headers.get("authorization"), "Bearer tok-1");
  assert.equal(req.init.keepalive, true);
  assert.equal(req.path, "/v1/sessions/sess-1/events");
  // A second client (e.g. the page reloaded with the same token) must not reuse ids.
  const other = setup().vt;
  assert.notEqual(other.record("mark", { name: "x" }), ids[0]);
});

test("retries 5xx, network errors and 429 with exponential backoff, then delivers each event once", async () => {
  const { vt, gw, clock, errors } = setup({ maxBatchEvents: 2, retryBaseMs: 100, retryMaxMs: 10_000 });
  gw.fail.push({ status: 503 }, "network", { status: 429 }, "lost");
  vt.record("tool.call", { call_id: "c1", name: "get_weather" });
  vt.record("tool.result", { call_id: "c1", result: { temp: 21 } });
  await settle();
  assert.equal(gw.eventRequests.length, 1);
  // random() = 0.5 → delay = exp/2 + 0.5*exp/2 = 0.75 * exp, exp = 100 * 2^(attempt-1)
  for (const [attempt, delay] of [[2, 75], [3, 150], [4, 300], [5, 600]]) {
    await clock.advance(delay - 1);
    assert.equal(gw.eventRequests.length, attempt - 1, `attempt ${attempt} not before its backoff`);
    await clock.advance(1);
    assert.equal(gw.eventRequests.length, attempt, `attempt ${attempt} after ${delay} ms`);
  }
  // Attempt 4 was processed but its response lost; attempt 5 is a replay the gateway deduplicates.
  assert.deepEqual(gw.uniqueEvents().map((e) => e.type), ["tool.call", "tool.result"]);
  assert.equal(gw.deliveries.length, 4);
  assert.equal(vt.stats.duplicates, 2);
  assert.equal(vt.stats.retries, 4);
  assert.equal(vt.stats.dropped, 0);
  assert.equal(vt.pending, 0);
  assert.ok(errors.every((e) => e.retrying), "retryable failures are reported as retrying");
  // The same ids were sent every time.
  const idSets = gw.eventRequests.map((r) => r.body.events.map((e) => e.id).join());
  assert.equal(new Set(idSets).size, 1);
});

test("Retry-After (seconds and HTTP date) overrides the backoff", async () => {
  const { vt, gw, clock } = setup({ maxBatchEvents: 1, retryBaseMs: 100 });
  gw.fail.push({ status: 429, headers: { "retry-after": "7" } });
  vt.record("mark", { name: "a" });
  await settle();
  await clock.advance(6999);
  assert.equal(gw.eventRequests.length, 1, "not before Retry-After");
  await clock.advance(1);
  assert.equal(gw.eventRequests.length, 2);
  assert.equal(parseRetryAfter(new Date(clock.now() + 3000).toUTCString(), clock.now()), 3000);
  assert.equal(parseRetryAfter("1.5", 0), 1500);
  assert.equal(parseRetryAfter("soon", 0), null);
});

test("new events keep queueing while a batch is retried, and follow it in order", async () => {
  const { vt, gw, clock } = setup({ maxBatchEvents: 2, retryBaseMs: 1000 });
  gw.fail.push({ status: 500 });
  vt.record("mark", { name: "1" });
  vt.record("mark", { name: "2" });
  await settle();
  vt.record("mark", { name: "3" });
  vt.record("mark", { name: "4" });
  vt.record("mark", { name: "5" });
  await settle();
  assert.equal(gw.eventRequests.length, 1, "one request in flight at a time");
  await clock.advance(750);
  await vt.flush();
  assert.deepEqual(gw.eventRequests.map((r) => r.body.events.map((e) => e.name).join()), ["1,2", "1,2", "3,4", "5"]);
  assert.deepEqual(gw.uniqueEvents().map((e) => e.name), ["1", "2", "3", "4", "5"]);
});

test("gives up after maxAttempts and counts the dropped events", async () => {
  const { vt, gw, clock, errors } = setup({ maxBatchEvents: 1, maxAttempts: 3, retryBaseMs: 10 });
  gw.fail.push({ status: 503 }, { status: 503 }, { status: 503 });
  vt.record("mark", { name: "lost" });
  await clock.advance(1000);
  assert.equal(gw.eventRequests.length, 3);
  assert.equal(vt.stats.dropped, 1);
  assert.ok(errors.some((e) => e.dropped === 1));
  vt.record("mark", { name: "next" });
  await settle();
  assert.deepEqual(gw.uniqueEvents().map((e) => e.name), ["next"], "the client keeps working");
});

test("a 4xx is not retried; 413 splits the batch; per-event rejections are reported", async () => {
  const { vt, gw, clock, errors } = setup({ maxBatchEvents: 4 });
  gw.fail.push({ status: 413 });
  for (let i = 0; i < 4; i++) vt.record("mark", { name: String(i) });
  await settle();
  await vt.flush();
  assert.deepEqual(gw.eventRequests.map((r) => r.body.events.length), [4, 2, 2]);
  assert.equal(gw.uniqueEvents().length, 4);
  gw.fail.push({ status: 400 });
  for (let i = 0; i < 4; i++) vt.record("mark", { name: `b${i}` });
  await clock.advance(60_000);
  assert.equal(gw.eventRequests.length, 4, "400 is final");
  assert.equal(vt.stats.dropped, 4);
  assert.ok(errors.some((e) => e.kind === "http" && e.status === 400));
  assert.equal(vt.state, "active");
  vt.record("mark", { name: "reject-me" });
  vt.record("mark", { name: "fine" });
  await vt.flush();
  assert.equal(vt.stats.rejected, 1);
  const rej = errors.find((e) => e.kind === "rejected");
  assert.equal(rej.rejected[0].event.name, "reject-me");
  assert.deepEqual(gw.uniqueEvents().map((e) => e.name).slice(-1), ["fine"]);
});

test("401 from the gateway fails the session: no more requests, nothing thrown", async () => {
  const { vt, gw, clock, errors } = setup({ maxBatchEvents: 1 });
  vt.token = "wrong";
  vt.record("mark", { name: "a" });
  await clock.advance(10_000);
  assert.equal(vt.state, "failed");
  assert.equal(vt.record("mark", { name: "b" }), null);
  assert.equal(gw.eventRequests.length, 1);
  assert.ok(errors.some((e) => e.kind === "session_lost" && e.status === 401));
  assert.equal(await vt.end("completed"), null);
});

test("the queue is bounded: the oldest events are dropped and counted", async () => {
  const clock = new FakeClock();
  const gw = new FakeGateway();
  gw.sessionFail.push("hang");
  const errors = [];
  const vt = VoiceTrace.create({
    gatewayUrl: "http://gw.test",
    fetch: gw.fetch,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: clock.now,
    window: null,
    maxQueueEvents: 5,
    maxBatchEvents: 100,
    onError: (e) => errors.push(e),
  });
  assert.equal(vt.state, "pending");
  for (let i = 1; i <= 8; i++) vt.record("mark", { name: `m${i}` });
  assert.equal(vt.stats.dropped, 3);
  assert.equal(errors.filter((e) => e.kind === "queue_overflow").length, 1, "reported once per overflow episode");
  await settle();
  gw.hung.shift()(
    new Response(JSON.stringify({ session_id: "sess-1", token: "tok-1", traceparent: TP }), { status: 201 }),
  );
  await settle();
  assert.equal(vt.state, "active");
  await vt.flush();
  assert.deepEqual(gw.uniqueEvents().map((e) => e.name), ["m4", "m5", "m6", "m7", "m8"]);
  assert.deepEqual(gw.uniqueEvents().map((e) => e.seq), [4, 5, 6, 7, 8]);
});

test("errors never reach the app", async () => {
  const clock = new FakeClock();
  const throwing = () => {
    throw new Error("boom");
  };
  const vt = VoiceTrace.fromToken({
    gatewayUrl: "http://gw.test",
    sessionId: "s",
    token: "t",
    fetch: throwing,
    sendBeacon: throwing,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: clock.now,
    window: fakePage().window,
    onError: throwing, // even a throwing hook
    onEvent: throwing,
    maxBatchEvents: 1,
    maxAttempts: 2,
  });
  const circular = {};
  circular.self = circular;
  assert.equal(vt.record("mark", { name: "c", attributes: circular }), null);
  assert.equal(vt.record(42), null);
  assert.equal(typeof vt.record("mark", { name: "ok" }), "string");
  await clock.advance(60_000);
  assert.equal(vt.stats.dropped, 1);
  await vt.flush();
  assert.doesNotThrow(() => vt.sendBeaconNow(true));
  assert.equal(await vt.end(), null);

  // start() with a gateway that cannot be reached resolves to a failed client.
  const bad = await VoiceTrace.start({
    gatewayUrl: "http://gw.test",
    fetch: () => Promise.reject(new TypeError("Failed to fetch")),
    setTimeout: (fn) => setImmediate(fn),
    clearTimeout: () => {},
    window: null,
    startMaxAttempts: 3,
  });
  assert.equal(bad.state, "failed");
  assert.equal(bad.record("mark", { name: "x" }), null);
  assert.equal(await bad.end(), null);
  assert.equal(bad.traceparent, null);
});

test("start() creates the session with its fields, parent traceparent and api key", async () => {
  const clock = new FakeClock();
  const gw = new FakeGateway();
  gw.sessionFail.push({ status: 503 });
  const vt = VoiceTrace.create({
    gatewayUrl: "http://gw.test",
    fetch: gw.fetch,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: clock.now,
    random: () => 0.5,
    window: null,
    userId: "u-1",
    provider: "gcp.gemini",
    model: "gemini-live-2.5-flash",
    agent: "support",
    tags: ["demo"],
    attributes: { plan: "pro" },
    apiKey: "key-1",
    parentTraceparent: "00-11111111111111111111111111111111-2222222222222222-01",
  });
  vt.record("connection.open", { connection_id: "c1" });
  await clock.advance(1000); // the 503 is retried
  const client = await vt.ready;
  assert.equal(client, vt);
  const creates = gw.requests.filter((r) => r.path === "/v1/sessions");
  assert.equal(creates.length, 2);
  const req = creates[1];
  assert.equal(req.headers.get("authorization"), "Bearer key-1");
  assert.equal(req.headers.get("traceparent"), "00-11111111111111111111111111111111-2222222222222222-01");
  assert.equal(req.body.user_id, "u-1");
  assert.equal(req.body.provider, "gcp.gemini");
  assert.deepEqual(req.body.tags, ["demo"]);
  assert.match(req.body.client.sdk, /^voice-trace-js\//);
  assert.equal(vt.sessionId, "sess-1");
  assert.equal(vt.traceId, "0af7651916cd43dd8448eb211c80319c");
  assert.equal(vt.traceparent, TP);
  await clock.advance(1000);
  assert.deepEqual(gw.uniqueEvents().map((e) => e.type), ["connection.open"], "events recorded before start are sent");
});

test("end() sends the remaining events with /end, returns the summary, and is idempotent", async () => {
  const { vt, gw, clock } = setup({ maxBatchEvents: 3, flushIntervalMs: 10_000, retryBaseMs: 10 });
  for (let i = 0; i < 7; i++) vt.record("mark", { name: String(i) });
  gw.fail.push({ status: 502 });
  const p1 = vt.end("completed");
  const p2 = vt.end("other");
  assert.equal(p1, p2);
  await clock.advance(5000);
  const summary = await p1;
  assert.equal(summary.end_reason, "completed");
  assert.equal(vt.state, "ended");
  const paths = gw.requests.map((r) => r.path.split("/").pop());
  assert.equal(paths.at(-1), "end");
  assert.deepEqual(gw.uniqueEvents().map((e) => e.name), ["0", "1", "2", "3", "4", "5", "6"]);
  assert.ok(gw.requests.at(-1).body.events.length > 0, "the last events ride with the end");
  assert.equal(vt.record("mark", { name: "late" }), null);
  assert.equal(gw.ended.reason, "completed");
});

test("pagehide: remaining events and the end go by sendBeacon, text/plain, token in the query, < 64 KiB each", async () => {
  const { vt, gw, page, beacon, clock } = setup({ maxBatchEvents: 500, flushIntervalMs: 60_000, maxQueueEvents: 5000 });
  const big = "x".repeat(900);
  gw.fail.push("hang");
  vt.record("mark", { name: "first" });
  vt.flush(); // this batch hangs in flight: it must be re-sent by the beacon
  await settle();
  for (let i = 0; i < 200; i++) vt.record("user.transcript", { text: `${i} ${big} é€😀` });
  page.pagehide();
  const bodies = await beacon.bodies();
  assert.ok(bodies.length >= 4, `split into ${bodies.length} beacons`);
  for (const b of bodies) {
    assert.ok(b.bytes < 64 * 1024, `beacon of ${b.bytes} bytes`);
    assert.equal(b.type, "text/plain");
    assert.equal(b.url.searchParams.get("token"), "tok-1");
  }
  assert.ok(bodies.slice(0, -1).every((b) => b.url.pathname === "/v1/sessions/sess-1/events"));
  const last = bodies.at(-1);
  assert.equal(last.url.pathname, "/v1/sessions/sess-1/end");
  assert.equal(last.json.reason, "user_disconnect");
  assert.ok(last.json.events.length > 0, "the end carries the final events");
  const all = bodies.flatMap((b) => b.json.events);
  assert.equal(all.length, 201);
  assert.deepEqual(all.map((e) => e.seq), Array.from({ length: 201 }, (_, i) => i + 1), "each event once, in order");
  assert.equal(vt.state, "ended");
  assert.equal(vt.record("mark", { name: "after" }), null);
  const before = gw.requests.length;
  await clock.advance(120_000);
  assert.equal(gw.requests.length, before, "no fetch after the beacon");
  assert.equal(await vt.end(), null);
});

test("visibilitychange to hidden flushes by beacon without ending; the session goes on", async () => {
  const { vt, page, beacon, gw } = setup({ maxBatchEvents: 100, flushIntervalMs: 60_000 });
  vt.record("mark", { name: "a" });
  vt.record("mark", { name: "b" });
  page.hide();
  const bodies = await beacon.bodies();
  assert.equal(bodies.length, 1);
  assert.equal(bodies[0].url.pathname, "/v1/sessions/sess-1/events");
  assert.deepEqual(bodies[0].json.events.map((e) => e.name), ["a", "b"]);
  assert.equal(vt.state, "active");
  page.show();
  vt.record("mark", { name: "c" });
  await vt.flush();
  assert.deepEqual(gw.uniqueEvents().map((e) => e.name), ["c"]);
});

test("endOnHidden ends on visibilitychange; a refused beacon falls back to a keepalive fetch", async () => {
  const { vt, page, beacon, gw } = setup({ endOnHidden: true, beaconResult: false, unloadReason: "tab_hidden" });
  vt.record("mark", { name: "a" });
  page.hide();
  await settle();
  assert.equal(beacon.calls.length, 1);
  assert.equal(vt.stats.beaconFallbacks, 1);
  const req = gw.requests.at(-1);
  assert.equal(req.path, "/v1/sessions/sess-1/end");
  assert.equal(req.query.token, "tok-1");
  assert.equal(req.init.keepalive, true);
  assert.equal(gw.ended.reason, "tab_hidden");
  assert.deepEqual(gw.uniqueEvents().map((e) => e.name), ["a"]);
});

test("huge events are truncated to fit, so a beacon can always carry them", async () => {
  const { vt, beacon, page } = setup({ maxEventBytes: 4096 });
  vt.record("tool.result", { call_id: "c1", result: { rows: "y".repeat(100_000) } });
  page.pagehide();
  const [b] = await beacon.bodies();
  const ev = b.json.events[0];
  assert.equal(ev.call_id, "c1");
  assert.equal(ev.truncated, true);
  assert.ok(Buffer.byteLength(JSON.stringify(ev)) <= 4096);
  assert.equal(vt.stats.truncated, 1);
});

test("wrapFetch propagates the session traceparent to the app's backend calls", async () => {
  const { vt } = setup();
  const seen = [];
  const appFetch = async (input, init) => {
    seen.push({ input, headers: new Headers(init && init.headers) });
    return new Response("ok");
  };
  const f = vt.wrapFetch(appFetch, { propagateTo: ["https://api.example.com/"] });
  await f("https://api.example.com/tools/weather", { method: "POST", headers: { "x-app": "1" } });
  await f("https://third-party.example.org/x");
  await f("https://api.example.com/keep", { headers: { traceparent: "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01" } });
  assert.equal(seen[0].headers.get("traceparent"), TP);
  assert.equal(seen[0].headers.get("x-app"), "1");
  assert.equal(seen[1].headers.get("traceparent"), null, "not sent outside propagateTo");
  assert.equal(seen[2].headers.get("traceparent"), "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01");
  const res = await vt.traceFetch("https://any.example/", undefined, appFetch);
  assert.equal(await res.text(), "ok");
  assert.equal(seen[3].headers.get("traceparent"), TP);
  assert.deepEqual(vt.traceHeaders(), { traceparent: TP });
  const tp = parseTraceparent(TP);
  assert.equal(tp.traceId, "0af7651916cd43dd8448eb211c80319c");
  assert.equal(tp.sampled, true);
});

test("traceFetch waits for a session that is still starting", async () => {
  const gw = new FakeGateway();
  gw.sessionFail.push("hang");
  const vt = VoiceTrace.create({ gatewayUrl: "http://gw.test", fetch: gw.fetch, window: null });
  const seen = [];
  const p = vt.traceFetch("/api/tool", {}, async (input, init) => {
    seen.push(new Headers(init.headers).get("traceparent"));
    return new Response("");
  });
  await settle();
  assert.equal(seen.length, 0);
  gw.hung.shift()(new Response(JSON.stringify({ session_id: "s", token: "t", traceparent: TP }), { status: 201 }));
  await p;
  assert.deepEqual(seen, [TP]);
  vt.dispose();
});

test("tokenInQuery sends simple text/plain requests (no CORS preflight)", async () => {
  const { vt, gw } = setup({ tokenInQuery: true, maxBatchEvents: 1 });
  vt.record("mark", { name: "a" });
  await settle();
  const req = gw.eventRequests[0];
  assert.equal(req.query.token, "tok-1");
  assert.equal(req.headers.get("authorization"), null);
  assert.match(req.headers.get("content-type"), /^text\/plain/);
  assert.equal(gw.uniqueEvents().length, 1);
});

test("hidden while end() is in flight: the beacon carries the end, with the app's reason", async () => {
  const { vt, gw, page, beacon } = setup({ maxBatchEvents: 100 });
  vt.record("mark", { name: "a" });
  gw.fail.push("hang"); // the /end request never answers
  const ended = vt.end("completed");
  await settle();
  assert.equal(gw.requests.at(-1).path, "/v1/sessions/sess-1/end");
  page.hide();
  const bodies = await beacon.bodies();
  assert.equal(bodies.length, 1);
  assert.equal(bodies[0].url.pathname, "/v1/sessions/sess-1/end");
  assert.equal(bodies[0].json.reason, "completed");
  assert.deepEqual(bodies[0].json.events.map((e) => e.name), ["a"]);
  assert.equal(await ended, null);
  assert.equal(vt.state, "ended");
});

test("end() sends a batch that waits for its retry at once", async () => {
  const { vt, gw, clock } = setup({ maxBatchEvents: 2, retryBaseMs: 60_000, retryMaxMs: 60_000 });
  gw.fail.push({ status: 503 });
  vt.record("mark", { name: "1" });
  vt.record("mark", { name: "2" });
  await settle();
  assert.equal(gw.eventRequests.length, 1);
  assert.ok(clock.pendingDelays()[0] >= 30_000, "a long backoff is pending");
  const ending = vt.end("completed");
  const summary = await Promise.race([ending, settle().then(() => "still waiting")]);
  assert.notEqual(summary, "still waiting", "end did not wait for the backoff");
  assert.equal(summary.end_reason, "completed");
  assert.deepEqual(gw.uniqueEvents().map((e) => e.name), ["1", "2"]);
});

test("traceFetch waits for a starting session at most traceFetchWaitMs", async () => {
  const clock = new FakeClock();
  const gw = new FakeGateway();
  gw.sessionFail.push("hang");
  const vt = VoiceTrace.create({
    gatewayUrl: "http://gw.test",
    fetch: gw.fetch,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: clock.now,
    window: null,
    traceFetchWaitMs: 800,
  });
  const seen = [];
  const p = vt.traceFetch("/api/tool", {}, async (input, init) => {
    seen.push(new Headers(init && init.headers).get("traceparent"));
    return new Response("");
  });
  await clock.advance(799);
  assert.equal(seen.length, 0);
  await clock.advance(1);
  await p;
  assert.deepEqual(seen, [null], "the app's call went out without a traceparent rather than wait");
  vt.dispose();
});

test("events recorded while the session is created lose the words the session's capture answer leaves out", async () => {
  const gw = new FakeGateway({ capture: ["tool_arguments"] });
  const vt = VoiceTrace.create({ gatewayUrl: "http://gw.test", fetch: gw.fetch, pageLifecycle: false, requestTimeoutMs: 0 });
  // Recorded before POST /v1/sessions answered: the client does not know yet what the session keeps.
  vt.record("user.transcript", { text: "call me at 555 0100", final: true });
  vt.record("model.transcript", { text: "sure" });
  vt.record("tool.call", { call_id: "c1", name: "dial", arguments: { number: "5550100" } });
  vt.record("tool.result", { call_id: "c1", result: { ok: true }, error: "busy" });
  await vt.ready;
  await vt.end("completed");
  assert.deepEqual(vt.capture, ["tool_arguments"]);
  assert.deepEqual(
    gw.uniqueEvents().map(({ id: _i, seq: _s, ts: _t, ...rest }) => rest),
    [
      { type: "user.transcript", text: "", final: true },
      { type: "tool.call", call_id: "c1", name: "dial", arguments: { number: "5550100" } },
      { type: "tool.result", call_id: "c1", error: "tool_error" },
    ],
  );
});

test("a gateway that does not answer capture gets everything, as before", async () => {
  const gw = new FakeGateway();
  const vt = await VoiceTrace.start({ gatewayUrl: "http://gw.test", fetch: gw.fetch, pageLifecycle: false, requestTimeoutMs: 0 });
  vt.record("model.transcript", { text: "hello" });
  await vt.end("completed");
  assert.equal(vt.capture, null);
  assert.equal(vt.captures("transcripts"), true);
  assert.deepEqual(gw.uniqueEvents().map((e) => e.text), ["hello"]);
});
