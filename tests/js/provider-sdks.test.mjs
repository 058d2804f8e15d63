// The providers' official SDKs (pinned in tests/js/package.json) talk to a local server that plays the
// conformance fixtures (tests/fixtures/providers); the gateway's client and adapters are attached as README.md
// shows. These tests check the exact canonical events the gateway receives.

import nodeTest from "node:test";
import assert from "node:assert/strict";

import { VoiceTrace } from "../../gateway/static/voice-trace.js";
import { attachGeminiLive } from "../../gateway/static/adapters/gemini-live.js";
import { attachOpenAIRealtime } from "../../gateway/static/adapters/openai-realtime.js";
import { FakeGateway } from "./helpers.mjs";
import { loadFixture } from "./sdk/provider-server.mjs";
import { GenAILiveClient } from "./sdk/genai-live-client.mjs";
import { geminiCallbacks, geminiOnMessageClient, openaiAgentsSession, openaiRealtimeWS } from "./sdk/scenarios.mjs";

const test = (name, fn) => nodeTest(name, { timeout: 60000 }, fn);

const G = loadFixture("gemini-live").sequences;
const O = loadFixture("openai-realtime").sequences;
const WEATHER = { temp_c: 18, condition: "light rain" };
const geminiUsage = (seq) => seq.find((m) => m.usageMetadata).usageMetadata;
const openaiUsage = (seq) => seq.find((m) => m.type === "response.done").response.usage;

/** Runs a scenario with the real client posting to a recording gateway; returns the canonical events. */
async function run(scenario, { capture, ...options } = {}) {
  const gw = new FakeGateway({ capture });
  const recorded = [];
  const problems = [];
  const trace = await VoiceTrace.start({
    gatewayUrl: "http://gw.test",
    fetch: gw.fetch,
    pageLifecycle: false,
    onEvent: (e) => recorded.push(e),
    onError: (e) => problems.push(e),
  });
  const info = await scenario({ trace, recorded, ...options });
  await trace.end("completed");
  assert.deepEqual(problems.map((p) => p.message), [], "nothing went wrong on the way");
  const events = gw.uniqueEvents().map(({ id: _id, seq: _seq, ts: _ts, ...fields }) => fields);
  return { events, info, gw };
}

/** Takes out the played_ms that depends on real time, after checking its bounds. */
function withoutPlayed(events) {
  return events.map((e) => {
    if (e.type !== "model.interrupted") return e;
    assert.ok(e.played_ms >= 0 && e.played_ms <= e.generated_ms, `played ${e.played_ms} of ${e.generated_ms} ms`);
    const { played_ms: _played, ...rest } = e;
    return rest;
  });
}

const GEMINI_EVENTS = [
  { type: "connection.open", connection_id: "conn-1" },
  { type: "connection.setup_complete" },
  { type: "user.speech_start" },
  { type: "user.speech_end" },
  { type: "user.transcript", text: "What's the weather in Paris?", final: true },
  { type: "model.response_start" },
  { type: "tool.call", call_id: "fc-weather-1", name: "get_weather", arguments: { city: "Paris" } },
  { type: "tool.result", call_id: "fc-weather-1", result: WEATHER },
  { type: "model.audio_start" },
  { type: "model.playback_start" },
  { type: "model.transcript", text: "It's 18 degrees in Paris." },
  { type: "model.generation_complete" },
  { type: "model.usage", usage: geminiUsage(G.turn1_answer) },
  { type: "model.turn_complete" },
  { type: "user.speech_start" },
  { type: "user.speech_end" },
  { type: "user.transcript", text: "Tell me about the Eiffel Tower.", final: true },
  { type: "model.response_start" },
  { type: "tool.call", call_id: "fc-lookup-2", name: "lookup_landmark", arguments: { name: "Eiffel Tower" } },
  { type: "model.audio_start" },
  { type: "model.playback_start" },
  { type: "user.speech_start" },
  { type: "model.transcript", text: "The Eiffel Tower was built" },
  { type: "model.interrupted", generated_ms: 1000 },
  { type: "tool.cancel", call_ids: ["fc-lookup-2"] },
  { type: "model.usage", usage: geminiUsage(G.turn2_interrupted) },
  // Gemini closes the interrupted turn with turnComplete: sent as is, the gateway ends that same turn with it.
  { type: "model.turn_complete" },
  { type: "user.speech_end" },
  { type: "connection.go_away", time_left_ms: 10000 },
  { type: "connection.close", code: 1005 },
  { type: "connection.open", connection_id: "conn-2" },
  { type: "connection.setup_complete" },
  { type: "connection.resumed", handle: "resume-handle-2" },
  { type: "user.speech_start" },
  { type: "user.speech_end" },
  { type: "user.transcript", text: "And tomorrow?", final: true },
  { type: "model.response_start" },
  { type: "model.audio_start" },
  { type: "model.playback_start" },
  { type: "model.transcript", text: "Sunny, 22 degrees." },
  { type: "model.generation_complete" },
  { type: "model.usage", usage: geminiUsage(G.turn3_answer) },
  { type: "model.turn_complete" },
  { type: "connection.close", code: 1005 },
];

test("@google/genai ai.live.connect with wrapped callbacks: the gateway gets the fixture's conversation", async () => {
  const { events, info } = await run(geminiCallbacks);
  assert.deepEqual(withoutPlayed(events), GEMINI_EVENTS);
  assert.equal(info.resumedWith, "resume-handle-2", "the app reconnected with the adapter's newest handle");
});

test("a GenAILiveClient with onMessage bound in connect(): the same events as the callbacks", async () => {
  const { events } = await run(geminiOnMessageClient);
  assert.deepEqual(withoutPlayed(events), GEMINI_EVENTS);
});

const U1 = openaiUsage(O.turn1_tool_call);
const OPENAI_TURN1 = [
  { type: "connection.open", connection_id: "conn-1" },
  { type: "connection.setup_complete" },
  { type: "user.speech_start", source: "provider_vad" },
  { type: "user.speech_end", source: "provider_vad" },
  { type: "user.transcript", text: "What's the weather in Paris?", final: true },
  { type: "model.response_start" },
  { type: "tool.call", call_id: "call_weather_1", name: "get_weather", arguments: { city: "Paris" } },
];
const OPENAI_TURN1_ANSWER = [
  { type: "model.response_start" }, // the turn's second response: an inference span of its own
  { type: "model.audio_start" },
  { type: "model.playback_start" },
  { type: "model.transcript", text: "It's 18 degrees and lightly raining." },
  { type: "model.usage", usage: openaiUsage(O.turn1_answer) },
  { type: "model.generation_complete" },
  { type: "model.turn_complete" },
];
const OPENAI_TURN3_END = [
  { type: "user.speech_end", source: "provider_vad" },
  { type: "user.transcript", text: "And tomorrow?", final: true },
  { type: "model.response_start" },
  { type: "model.audio_start" },
  { type: "model.playback_start" },
  { type: "model.transcript", text: "Sunny, 22 degrees." },
  { type: "model.usage", usage: openaiUsage(O.turn3_answer) },
  { type: "model.generation_complete" },
  { type: "model.turn_complete" },
  { type: "error", error_type: "invalid_request_error", message: "Invalid value for 'voice'." },
];

for (const attachTo of ["session", "transport"]) {
  test(`@openai/agents-realtime RealtimeSession (attached to its ${attachTo}): barge-in after the answer was generated`, async () => {
    const { events, info } = await run(openaiAgentsSession, { attachTo });
    assert.ok(info.truncate.audio_end_ms < 20000, "the SDK truncated the answer it was still playing");
    assert.deepEqual(events, [
      ...OPENAI_TURN1,
      { type: "model.usage", usage: U1 },
      { type: "model.generation_complete" },
      // The SDK runs the tool after the response that asked for it is done.
      { type: "tool.result", call_id: "call_weather_1", result: WEATHER },
      ...OPENAI_TURN1_ANSWER,
      { type: "user.speech_start", source: "provider_vad" },
      { type: "user.speech_end", source: "provider_vad" },
      { type: "user.transcript", text: "Tell me about the Eiffel Tower.", final: true },
      { type: "model.response_start" },
      { type: "model.audio_start" },
      { type: "model.playback_start" },
      { type: "model.transcript", text: "The Eiffel Tower was built for the 1889 World's Fair, and it was meant to stand for only twenty years." },
      { type: "model.usage", usage: openaiUsage(O.turn2_answer) },
      { type: "model.generation_complete" },
      { type: "model.turn_complete" },
      { type: "user.speech_start", source: "provider_vad" },
      // After its turn_complete: the gateway attaches it to the turn it cuts.
      { type: "model.interrupted", played_ms: info.truncate.audio_end_ms, generated_ms: 20000 },
      ...OPENAI_TURN3_END,
      { type: "connection.close" },
    ]);
  });
}

test("openai OpenAIRealtimeWS: the app cancels and truncates an answer still generating", async () => {
  const { events } = await run(openaiRealtimeWS);
  assert.deepEqual(events, [
    ...OPENAI_TURN1,
    // This app sends the tool output as soon as the arguments are done.
    { type: "tool.result", call_id: "call_weather_1", result: WEATHER },
    { type: "model.usage", usage: U1 },
    { type: "model.generation_complete" },
    ...OPENAI_TURN1_ANSWER,
    { type: "user.speech_start", source: "provider_vad" },
    { type: "user.speech_end", source: "provider_vad" },
    { type: "user.transcript", text: "Tell me about the Eiffel Tower.", final: true },
    { type: "model.response_start" },
    { type: "model.audio_start" },
    { type: "model.playback_start" },
    { type: "user.speech_start", source: "provider_vad" },
    { type: "model.transcript", text: "Once upon a time" },
    { type: "model.usage", usage: openaiUsage(O.cancelled_answer_done) },
    { type: "model.generation_complete" },
    { type: "model.interrupted", generated_ms: 1000, played_ms: 300 },
    ...OPENAI_TURN3_END,
    { type: "connection.close", code: 1000, reason: "OK" },
  ]);
});

test("a session that keeps no content gets no words: empty user transcripts, no model text, no tool payloads", async () => {
  const { events } = await run(geminiCallbacks, { capture: [] });
  const types = events.map((e) => e.type);
  assert.equal(types.filter((t) => t === "model.transcript").length, 0);
  assert.deepEqual(events.filter((e) => e.type === "user.transcript").map((e) => e.text), ["", "", ""]);
  assert.deepEqual(events.find((e) => e.type === "tool.call"), { type: "tool.call", call_id: "fc-weather-1", name: "get_weather" });
  assert.deepEqual(events.find((e) => e.type === "tool.result"), { type: "tool.result", call_id: "fc-weather-1" });
  assert.equal(JSON.stringify(events).includes("Paris"), false, "no word of the conversation left");
  // Everything else is as with content on.
  assert.deepEqual(types, GEMINI_EVENTS.map((e) => e.type).filter((t) => t !== "model.transcript"));
});

test("a session that keeps transcripts only gets the words but no tool payloads", async () => {
  const { events } = await run(openaiRealtimeWS, { capture: ["transcripts"] });
  assert.ok(events.some((e) => e.type === "model.transcript" && e.text === "Sunny, 22 degrees."));
  assert.deepEqual(events.find((e) => e.type === "tool.call"), { type: "tool.call", call_id: "call_weather_1", name: "get_weather" });
  assert.deepEqual(events.find((e) => e.type === "tool.result"), { type: "tool.result", call_id: "call_weather_1" });
});

/** Captures console.warn while `fn` runs. */
async function warnings(fn) {
  const original = console.warn;
  const said = [];
  console.warn = (...args) => said.push(args.join(" "));
  try {
    await fn();
  } finally {
    console.warn = original;
  }
  return said;
}

test("adapters that cannot see what they need say so once, through onError and console.warn", async () => {
  const problems = [];
  const gw = new FakeGateway();
  const trace = await VoiceTrace.start({ gatewayUrl: "http://gw.test", fetch: gw.fetch, pageLifecycle: false, onError: (e) => problems.push(e) });
  const said = await warnings(async () => {
    attachOpenAIRealtime({ connect() {} }, trace);
    // A client with neither onmessage nor onMessage: no usage, transcripts, goAway...
    const bare = new GenAILiveClient({ apiKey: "k" });
    bare.onMessage = undefined;
    attachGeminiLive(bare, trace);
    // A client that connected before the adapter was attached already handed its handler to the SDK.
    const late = new GenAILiveClient({ apiKey: "k" });
    late.status = "connected";
    const tracer = attachGeminiLive(late, trace);
    tracer.warn("attached_after_connect", "again"); // said once per adapter
  });
  assert.deepEqual(
    problems.map((p) => [p.kind, p.code]),
    [
      ["adapter", "unknown_target"],
      ["adapter", "no_raw_messages"],
      ["adapter", "attached_after_connect"],
    ],
  );
  assert.equal(said.length, 3);
  assert.ok(said.every((s) => s.startsWith("[voice-trace] ")));
  await trace.end();
});

test("a GenAILiveClient that calls a handler it captured before attach is reported, not silently lost", async () => {
  const problems = [];
  const gw = new FakeGateway();
  const trace = await VoiceTrace.start({ gatewayUrl: "http://gw.test", fetch: gw.fetch, pageLifecycle: false, onError: (e) => problems.push(e) });
  const client = new GenAILiveClient({ apiKey: "k" });
  const captured = client.onMessage.bind(client); // what connect() would have handed the SDK before the attach
  const said = await warnings(async () => {
    attachGeminiLive(client, trace);
    captured({ setupComplete: {} });
  });
  assert.deepEqual(problems.map((p) => p.code), ["raw_messages_not_seen"]);
  assert.equal(said.length, 1);
  await trace.end();
});

test("an agents transport without raw events is reported when a response starts", async () => {
  const { EventEmitter } = await import("node:events");
  const problems = [];
  const gw = new FakeGateway();
  const trace = await VoiceTrace.start({ gatewayUrl: "http://gw.test", fetch: gw.fetch, pageLifecycle: false, onError: (e) => problems.push(e) });
  const transport = Object.assign(new EventEmitter(), { sendEvent() {} });
  await warnings(async () => {
    attachOpenAIRealtime({ transport }, trace);
    transport.emit("turn_started", { type: "response_started" });
    transport.emit("turn_started", { type: "response_started" });
  });
  assert.deepEqual(problems.map((p) => p.code), ["no_raw_events"]);
  await trace.end();
});
