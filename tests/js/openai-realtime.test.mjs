import nodeTest from "node:test";
import assert from "node:assert/strict";

import { attachOpenAIRealtime, createOpenAIRealtimeAdapter } from "../../gateway/static/adapters/openai-realtime.js";
import { FakeClock, recorderTrace } from "./helpers.mjs";

// A broken client would leave a promise pending forever: fail instead of hanging.
const test = (name, fn) => nodeTest(name, { timeout: 10000 }, fn);

const b64 = (ms) => Buffer.alloc((24000 * 2 * ms) / 1000).toString("base64");
const usage1 = {
  total_tokens: 300,
  input_tokens: 200,
  output_tokens: 100,
  input_token_details: { text_tokens: 150, audio_tokens: 50, cached_tokens: 64 },
  output_token_details: { text_tokens: 20, audio_tokens: 80 },
};
const usage2 = {
  total_tokens: 500,
  input_tokens: 320,
  output_tokens: 180,
  input_token_details: { text_tokens: 250, audio_tokens: 70, cached_tokens: 128 },
  output_token_details: { text_tokens: 30, audio_tokens: 150 },
};

/** A WebSocket / RTCDataChannel stand-in: an EventTarget with send() and readyState. */
class FakeChannel extends EventTarget {
  constructor() {
    super();
    this.readyState = "connecting";
    this.sent = [];
  }
  send(data) {
    this.sent.push(data);
  }
  open() {
    this.readyState = "open";
    this.dispatchEvent(new Event("open"));
  }
  server(ev) {
    const e = new Event("message");
    e.data = JSON.stringify(ev);
    this.dispatchEvent(e);
  }
  close(code, reason) {
    const e = new Event("close");
    e.code = code;
    e.reason = reason;
    this.dispatchEvent(e);
  }
}

test("OpenAI Realtime adapter maps server and client events to the catalogue", () => {
  const clock = new FakeClock(10_000);
  const trace = recorderTrace(clock);
  const ch = new FakeChannel();
  const tracer = attachOpenAIRealtime(ch, trace);
  ch.open();
  ch.server({ type: "session.created", session: { id: "sess_1" } });
  ch.server({ type: "session.updated" });

  // Turn 1: speech, transcription, a function call, its output, a second response that speaks.
  ch.server({ type: "input_audio_buffer.speech_started", audio_start_ms: 100 });
  ch.server({ type: "input_audio_buffer.speech_stopped", audio_end_ms: 900 });
  ch.server({ type: "conversation.item.input_audio_transcription.delta", delta: "Weather" });
  ch.server({ type: "conversation.item.input_audio_transcription.completed", transcript: "Weather in Paris?" });
  ch.server({ type: "response.created", response: { id: "resp_1" } });
  ch.server({ type: "response.output_item.added", item: { type: "function_call", call_id: "call_1", name: "get_weather" } });
  ch.server({ type: "response.function_call_arguments.delta", call_id: "call_1", delta: "{\"ci" });
  ch.server({ type: "response.function_call_arguments.done", call_id: "call_1", arguments: "{\"city\":\"Paris\"}" });
  ch.server({ type: "response.done", response: { id: "resp_1", status: "completed", output: [{ type: "function_call", call_id: "call_1" }], usage: usage1 } });
  ch.send(JSON.stringify({ type: "conversation.item.create", item: { type: "function_call_output", call_id: "call_1", output: "{\"temp_c\":18}" } }));
  ch.send(JSON.stringify({ type: "response.create" }));
  ch.server({ type: "response.created", response: { id: "resp_2" } });
  ch.server({ type: "response.output_audio.delta", delta: b64(100) });
  tracer.playbackStarted(); // a WebSocket app's player reports its first playback
  ch.server({ type: "response.output_audio_transcript.delta", delta: "It's 18." });
  ch.server({ type: "response.audio.delta", delta: b64(100) }); // legacy name
  ch.server({ type: "response.done", response: { id: "resp_2", status: "completed", output: [{ type: "message" }], usage: usage2 } });

  // Turn 2: WebRTC playback signal, then a barge-in cancels the response.
  ch.server({ type: "response.created", response: { id: "resp_3" } });
  ch.server({ type: "output_audio_buffer.started", response_id: "resp_3" });
  ch.server({ type: "response.audio_transcript.delta", delta: "Once upon" });
  clock.t += 700;
  ch.server({ type: "input_audio_buffer.speech_started" });
  ch.send(JSON.stringify({ type: "conversation.item.truncate", item_id: "item_3", content_index: 0, audio_end_ms: 640 }));
  ch.server({ type: "response.done", response: { id: "resp_3", status: "cancelled", status_details: { reason: "turn_detected" }, usage: usage1 } });

  // Turn 3: a failed response, a protocol error, a closed connection.
  ch.server({ type: "response.created", response: { id: "resp_4" } });
  ch.server({
    type: "response.done",
    response: { id: "resp_4", status: "failed", status_details: { type: "failed", error: { type: "server_error", message: "overloaded" } } },
  });
  ch.server({ type: "error", error: { type: "invalid_request_error", code: "bad_event", message: "unknown event" } });
  ch.server({ type: "rate_limits.updated", rate_limits: [] });
  ch.close(1006, "");

  assert.deepEqual(trace.events, [
    { type: "connection.open", connection_id: "conn-1" },
    { type: "connection.setup_complete" },
    { type: "user.speech_start", source: "provider_vad" },
    { type: "user.speech_end", source: "provider_vad" },
    { type: "user.transcript", text: "Weather in Paris?", final: true },
    { type: "model.response_start" },
    { type: "tool.call", call_id: "call_1", name: "get_weather", arguments: { city: "Paris" } },
    { type: "model.usage", usage: usage1 },
    { type: "model.generation_complete" },
    { type: "tool.result", call_id: "call_1", result: { temp_c: 18 } },
    // The response answering with the tool's output: a response of its own, its usage as sent (not summed).
    { type: "model.response_start" },
    { type: "model.audio_start" },
    { type: "model.playback_start", ts: 10_000 },
    { type: "model.transcript", text: "It's 18.", ts: 10_000 },
    { type: "model.usage", usage: usage2 },
    { type: "model.generation_complete" },
    { type: "model.turn_complete" },
    { type: "model.response_start" },
    { type: "model.audio_start" },
    { type: "model.playback_start", ts: 10_000 },
    { type: "user.speech_start", source: "provider_vad" },
    { type: "model.transcript", text: "Once upon", ts: 10_000 },
    { type: "model.usage", usage: usage1 },
    { type: "model.generation_complete" },
    { type: "model.interrupted", played_ms: 640 },
    { type: "model.response_start" },
    { type: "model.generation_complete" },
    { type: "error", error_type: "server_error", message: "overloaded" },
    { type: "model.turn_complete", reason: "failed" },
    { type: "error", error_type: "invalid_request_error", message: "unknown event" },
    { type: "connection.close", code: 1006 },
  ]);
  assert.equal(ch.sent.length, 3, "the app's client events still go out");
});

test("OpenAI adapter estimates played_ms from playback start when the app does not truncate", () => {
  const clock = new FakeClock(0);
  const trace = recorderTrace(clock);
  const a = createOpenAIRealtimeAdapter(trace);
  a.handleServerEvent({ type: "response.created" });
  a.handleServerEvent({ type: "response.output_audio.delta", delta: b64(500) });
  a.handleServerEvent({ type: "response.output_audio.delta", delta: b64(500) });
  a.playbackStarted(100);
  clock.t = 400;
  a.handleServerEvent({ type: "response.done", response: { status: "cancelled", status_details: { reason: "client_cancelled" } } });
  assert.deepEqual(trace.events.at(-1), { type: "model.interrupted", generated_ms: 1000, played_ms: 300 });
  a.handleServerEvent("not json");
  a.handleServerEvent(null);
  a.handleServerEvent({ type: "response.function_call_arguments.done" });
  assert.equal(trace.events.length, 5, "junk is ignored");
});

test("OpenAI adapter never throws into the app", () => {
  const ch = new FakeChannel();
  const trace = {
    now: () => 0,
    record() {
      throw new Error("trace broken");
    },
  };
  const tracer = attachOpenAIRealtime(ch, trace);
  assert.doesNotThrow(() => {
    ch.open();
    ch.server({ type: "response.done", response: { usage: usage1 } });
    ch.send("{not json");
  });
  assert.equal(ch.sent.length, 1);
  tracer.detach();
  assert.equal(ch.send, FakeChannel.prototype.send, "detach restores send");
});

test("a truncation after the response finished is a barge-in on that turn; a full play or a played-out answer is not", () => {
  const clock = new FakeClock(0);
  const trace = recorderTrace(clock);
  const ch = new FakeChannel();
  attachOpenAIRealtime(ch, trace);
  const answer = (id, ms) => {
    ch.server({ type: "response.created", response: { id } });
    ch.server({ type: "response.output_audio.delta", item_id: `item_${id}`, delta: b64(ms) });
    ch.server({ type: "response.done", response: { id, status: "completed", output: [{ type: "message" }] } });
  };
  answer("r1", 2000);
  ch.server({ type: "input_audio_buffer.speech_started" });
  ch.send(JSON.stringify({ type: "conversation.item.truncate", item_id: "item_r1", content_index: 0, audio_end_ms: 1200 }));
  ch.server({ type: "conversation.item.truncated", item_id: "item_r1", content_index: 0, audio_end_ms: 1200 }); // the server's echo
  answer("r2", 1000);
  ch.send(JSON.stringify({ type: "conversation.item.truncate", item_id: "item_r2", content_index: 0, audio_end_ms: 1000 }));
  answer("r3", 1000);
  ch.server({ type: "output_audio_buffer.stopped", response_id: "r3" }); // WebRTC: it played out
  ch.server({ type: "conversation.item.truncated", item_id: "item_r3", content_index: 0, audio_end_ms: 500 });
  answer("r4", 1000);
  // WebRTC: the server truncates by itself on a barge-in; only its event tells.
  ch.server({ type: "conversation.item.truncated", item_id: "item_r4", content_index: 0, audio_end_ms: 250 });
  const cuts = trace.events.filter((e) => ["model.interrupted", "model.playback_end"].includes(e.type));
  assert.deepEqual(cuts, [
    { type: "model.interrupted", played_ms: 1200, generated_ms: 2000 },
    { type: "model.playback_end" },
    { type: "model.interrupted", played_ms: 250, generated_ms: 1000 },
  ]);
});

test("capture: the client sends no words the session does not keep", async () => {
  const { VoiceTrace } = await import("../../gateway/static/voice-trace.js");
  const sent = [];
  const trace = VoiceTrace.fromToken({
    gatewayUrl: "http://gw.test",
    sessionId: "s1",
    token: "t",
    capture: ["tool_results"],
    pageLifecycle: false,
    onEvent: (e) => sent.push(e),
    fetch: async () => new Response("{}", { status: 202 }),
  });
  trace.record("user.transcript", { text: "my card is 4111", final: true });
  trace.record("model.transcript", { text: "noted" });
  trace.record("tool.call", { call_id: "c", name: "pay", arguments: { card: "4111" } });
  trace.record("tool.result", { call_id: "c", result: { ok: true } });
  assert.deepEqual(
    sent.map(({ id: _i, seq: _s, ts: _t, ...rest }) => rest),
    [
      { type: "user.transcript", text: "", final: true },
      { type: "tool.call", call_id: "c", name: "pay" },
      { type: "tool.result", call_id: "c", result: { ok: true } },
    ],
  );
  assert.equal(trace.captures("transcripts"), false);
  assert.equal(trace.captures("tool_results"), true);
  trace.dispose();
});
