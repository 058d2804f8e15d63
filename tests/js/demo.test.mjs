// The /demo scenario, run in Node against the fake gateway: the same DemoSession the page drives, with the
// real client and adapter. (The browser runs of /demo are the Python end-to-end tests.)
import nodeTest from "node:test";
import assert from "node:assert/strict";

import { DemoSession } from "../../gateway/static/demo.js";
import { FakeGateway, fakePage } from "./helpers.mjs";

// A broken client would leave a promise pending forever: fail instead of hanging.
const test = (name, fn) => nodeTest(name, { timeout: 30000 }, fn);

function demoWith(gw, page, extra = {}, options = {}) {
  return new DemoSession({
    gatewayUrl: "http://gw.test",
    speed: 1000,
    fetch: gw.fetch,
    window: page.window,
    traceOptions: {
      document: page.document,
      retryBaseMs: 1,
      // Beacons go to the fake gateway too.
      sendBeacon: (url, blob) => {
        blob.text().then((body) => gw.fetch(url, { method: "POST", body }));
        return true;
      },
      ...extra,
    },
    ...options,
  });
}

function count(events, type) {
  return events.filter((e) => e.type === type).length;
}

test("runScripted: 3 turns (tool call, interrupted, after a resumed reconnect), every event delivered once", async () => {
  const gw = new FakeGateway();
  const page = fakePage();
  const demo = demoWith(gw, page);
  const result = await demo.runScripted();
  assert.equal(result.sessionId, "sess-1");
  assert.equal(result.traceId, "0af7651916cd43dd8448eb211c80319c");
  assert.equal(result.summary.end_reason, "completed");
  assert.equal(gw.ended.reason, "completed");

  const events = gw.uniqueEvents();
  assert.equal(events.length, demo.state.events.length, "everything recorded was delivered");
  assert.deepEqual(events.map((e) => e.seq), Array.from({ length: events.length }, (_, i) => i + 1));
  assert.equal(gw.deliveries.length, events.length, "no duplicates needed on a healthy network");

  assert.equal(count(events, "tool.call"), 1);
  assert.equal(count(events, "tool.result"), 1);
  assert.equal(count(events, "model.turn_complete"), 2);
  assert.equal(count(events, "model.interrupted"), 1);
  assert.equal(count(events, "model.response_start"), 3);
  assert.equal(count(events, "model.audio_start"), 3);
  assert.equal(count(events, "model.playback_start"), 3);
  assert.equal(count(events, "model.usage"), 3);
  assert.equal(count(events, "connection.open"), 2);
  assert.equal(count(events, "connection.close"), 2);
  assert.equal(count(events, "connection.go_away"), 1);
  assert.equal(count(events, "user.speech_start"), 3);
  assert.equal(count(events, "user.speech_end"), 3);

  const types = events.map((e) => e.type);
  const resumed = events.find((e) => e.type === "connection.resumed");
  assert.ok(resumed.handle.startsWith("resume-"));
  assert.ok(types.indexOf("connection.resumed") > types.indexOf("connection.go_away"));
  // Turn 3 is answered on the new connection.
  assert.ok(types.lastIndexOf("model.response_start") > types.indexOf("connection.resumed"));
  // Usage of the interrupted generation comes before the interruption.
  const cut = types.indexOf("model.interrupted");
  assert.ok(types.lastIndexOf("model.usage", cut) > types.lastIndexOf("model.response_start", cut));
  assert.deepEqual(
    { turns: demo.state.turns, interruptions: demo.state.interruptions, toolCalls: demo.state.toolCalls, connections: demo.state.connections },
    { turns: 3, interruptions: 1, toolCalls: 1, connections: 2 },
  );
});

test("closeTabAbruptly mid-turn: the beacon delivers the rest and the end", async () => {
  const gw = new FakeGateway();
  const page = fakePage();
  const demo = demoWith(gw, page, { flushIntervalMs: 60_000, maxBatchEvents: 1000 });
  await demo.start();
  await demo.callTool();
  const r = await demo.closeTabAbruptly();
  assert.equal(r.sessionId, "sess-1");
  assert.ok(r.pendingAtClose > 0, "events were still queued when the tab closed");
  await new Promise((res) => setTimeout(res, 20));
  assert.equal(gw.ended.reason, "user_disconnect");
  const events = gw.uniqueEvents();
  assert.equal(events.length, demo.state.events.length);
  const firstTurnEnd = events.find((e) => e.type === "model.turn_complete").seq;
  assert.ok(events.some((e) => e.type === "model.audio_start" && e.seq > firstTurnEnd), "the mid-turn events arrived");
  assert.equal(r.pendingAtClose, events.length, "with a long flush interval, all of them went by beacon");
  assert.equal(demo.state.status, "closed");
  const beaconUrls = gw.requests.filter((q) => q.query.token === "tok-1");
  assert.ok(beaconUrls.length >= 1);
  assert.equal(beaconUrls.at(-1).path, "/v1/sessions/sess-1/end");
});

test("injected failures are retried and every event still arrives exactly once", async () => {
  const gw = new FakeGateway();
  const page = fakePage();
  const demo = demoWith(gw, page, { maxBatchEvents: 5, flushIntervalMs: 5 });
  await demo.start();
  demo.failRequests(2, "503", 0);
  demo.failRequests(2, "network");
  demo.failRequests(2, "lost");
  await demo.callTool();
  await demo.end();
  const events = gw.uniqueEvents();
  assert.equal(events.length, demo.state.events.length);
  assert.ok(gw.deliveries.length > events.length, "lost responses caused replays");
  assert.equal(demo.stats.dropped, 0);
  assert.ok(demo.stats.retries >= 6);
  assert.ok(demo.stats.duplicates >= 1);
});

test("the model speaks the demo's speech files: its audio chunks carry the voice, playback ends once it played", async () => {
  const gw = new FakeGateway();
  const page = fakePage();
  // One second of a recognisable waveform in place of weather.ogg (Node cannot decode Ogg Opus).
  const voice = Int16Array.from({ length: 24000 }, (_, i) => (i % 200) * 100 - 10000);
  const speed = 20;
  const demo = demoWith(gw, page, {}, { voices: { weather: voice }, speed });
  await demo.start();
  const heard = [];
  demo.client.on("audio", (data) => heard.push(new Int16Array(data.slice(0))));
  await demo.callTool();
  const played = heard.flatMap((c) => Array.from(c));
  assert.equal(heard.length, 5, "200 ms per server message");
  assert.deepEqual(played, Array.from(voice));
  // The turn's action ended after its audio played out: playback_end was reported, after the audio's length.
  const events = demo.state.events;
  const start = events.find((e) => e.type === "model.playback_start");
  const end = events.find((e) => e.type === "model.playback_end");
  assert.ok(start && end, events.map((e) => e.type).join(","));
  assert.ok(end.ts - start.ts >= 1000 / speed - 5, `${end.ts - start.ts} ms`);
  await demo.end();
});
