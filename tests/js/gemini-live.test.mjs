import nodeTest from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";

import { attachGeminiLive, createGeminiLiveAdapter, durationToMs, base64Bytes } from "../../gateway/static/adapters/gemini-live.js";
import { FakeClock, recorderTrace } from "./helpers.mjs";

// A broken client would leave a promise pending forever: fail instead of hanging.
const test = (name, fn) => nodeTest(name, { timeout: 10000 }, fn);

/**
 * A stand-in for live-api-web-console's GenAILiveClient (src/lib/genai-live-client.ts): an EventEmitter whose
 * constructor binds `onmessage`, whose `connect()` hands that method to the SDK, and whose dispatch surfaces
 * only setupComplete, toolCall, toolCallCancellation, interrupted, turnComplete and modelTurn parts (audio
 * parts as "audio" ArrayBuffers, the others as "content"). Here `server(msg)` plays the SDK's callback.
 */
class GenAILiveClientShape extends EventEmitter {
  constructor() {
    super();
    this.config = null;
    this.sent = [];
    this.onmessage = this.onmessage.bind(this);
  }
  getConfig() {
    return { ...this.config };
  }
  async connect(model, config) {
    this.config = config;
    this.callbacks = { onmessage: this.onmessage };
    this.emit("open");
    return true;
  }
  server(msg) {
    this.callbacks.onmessage(msg);
  }
  disconnect() {
    this.emit("close", { code: 1000, reason: "bye" });
  }
  sendToolResponse(tr) {
    this.sent.push(tr);
  }
  onmessage(message) {
    if (message.setupComplete) return void this.emit("setupcomplete");
    if (message.toolCall) return void this.emit("toolcall", message.toolCall);
    if (message.toolCallCancellation) return void this.emit("toolcallcancellation", message.toolCallCancellation);
    if (message.serverContent) {
      const sc = message.serverContent;
      if ("interrupted" in sc) return void this.emit("interrupted");
      if ("turnComplete" in sc) this.emit("turncomplete");
      if ("modelTurn" in sc) {
        const parts = sc.modelTurn?.parts || [];
        const audio = parts.filter((p) => p.inlineData && p.inlineData.mimeType?.startsWith("audio/pcm"));
        const other = parts.filter((p) => !audio.includes(p));
        for (const p of audio) {
          const buf = Buffer.from(p.inlineData.data, "base64");
          this.emit("audio", buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
        }
        if (other.length) this.emit("content", { modelTurn: { parts: other } });
      }
    }
  }
}

const pcm = (ms) => Buffer.alloc((24000 * 2 * ms) / 1000).toString("base64");
const audioMsg = (ms) => ({ serverContent: { modelTurn: { parts: [{ inlineData: { mimeType: "audio/pcm;rate=24000", data: pcm(ms) } }] } } });
const usage = { promptTokenCount: 500, responseTokenCount: 40, totalTokenCount: 540, responseTokensDetails: [{ modality: "AUDIO", tokenCount: 40 }] };

test("Gemini adapter maps GenAILiveClient events and raw messages to the event catalogue", async () => {
  const clock = new FakeClock(1000);
  const trace = recorderTrace(clock);
  const client = new GenAILiveClientShape();
  // The app's own player is wired before the adapter, as in use-live-api.ts.
  const streamer = { isPlaying: false, initialBufferTime: 0.1, chunks: 0, addPCM16() { this.isPlaying = true; this.chunks++; } };
  client.on("audio", (data) => streamer.addPCM16(new Uint8Array(data)));
  client.on("interrupted", () => (streamer.isPlaying = false));
  const appErrors = [];
  client.on("error", (e) => appErrors.push(e));
  const tracer = attachGeminiLive(client, trace, { audioStreamer: streamer, setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout });

  await client.connect("models/gemini-live", { responseModalities: ["AUDIO"] });
  client.server({ setupComplete: {} });

  // Turn 1: the user asks, the model calls a tool, the app answers it, the model speaks.
  tracer.userSpeechStart();
  client.server({ serverContent: { inputTranscription: { text: "Weather in" } } });
  client.server({ serverContent: { inputTranscription: { text: " Paris?", finished: true } } });
  tracer.userSpeechEnd();
  client.server({ toolCall: { functionCalls: [{ id: "fc-1", name: "get_weather", args: { city: "Paris" } }] } });
  client.sendToolResponse({ functionResponses: [{ id: "fc-1", name: "get_weather", response: { output: { temp_c: 18 } } }] });
  clock.t += 500;
  client.server(audioMsg(200)); // first audio: the streamer starts playing after its 100 ms buffer
  client.server({ serverContent: { outputTranscription: { text: "It's 18" } } });
  client.server(audioMsg(200));
  client.server({ serverContent: { modelTurn: { parts: [{ text: "thinking", thought: true }, { text: "(text part)" }] } } });
  client.server({ serverContent: { generationComplete: true } });
  client.server({ serverContent: { turnComplete: true }, usageMetadata: usage });
  client.server({ sessionResumptionUpdate: { newHandle: "h-1", resumable: true } });

  // Turn 2: interrupted 350 ms after playback started.
  streamer.isPlaying = false; // turn 1's audio has finished playing
  tracer.userSpeechStart();
  client.server({ serverContent: { inputTranscription: { text: "Tell me a story", finished: true } } });
  tracer.userSpeechEnd();
  const t2 = clock.t;
  client.server(audioMsg(400));
  client.server(audioMsg(400));
  await clock.advance(450); // its first chunk became audible after the player's 100 ms buffer
  tracer.userSpeechStart(); // barge-in (client VAD)
  client.server({ serverContent: { interrupted: true }, usageMetadata: usage });
  client.server({ toolCallCancellation: { ids: ["fc-x"] } });

  // Reconnect: goAway, close, a new connection resuming with the handle.
  client.server({ goAway: { timeLeft: "9.5s" } });
  client.disconnect();
  await client.connect("models/gemini-live", { ...client.getConfig(), sessionResumption: { handle: tracer.resumptionHandle } });
  client.server({ setupComplete: {} });
  client.server({ sessionResumptionUpdate: { newHandle: "h-2", resumable: false } });
  client.server({ serverContent: { turnComplete: true, turnCompleteReason: "NEED_MORE_INPUT" } });
  client.emit("error", { message: "socket hiccup" });

  assert.deepEqual(trace.events, [
    { type: "connection.open", connection_id: "conn-1" },
    { type: "connection.setup_complete" },
    { type: "user.speech_start" },
    { type: "user.transcript", text: "Weather in Paris?", final: true, ts: 1000 },
    { type: "user.speech_end" },
    { type: "model.response_start" },
    { type: "tool.call", call_id: "fc-1", name: "get_weather", arguments: { city: "Paris" } },
    { type: "tool.result", call_id: "fc-1", result: { temp_c: 18 } },
    { type: "model.audio_start" },
    // One transcript event per generation, not one per chunk.
    { type: "model.transcript", text: "It's 18(text part)", ts: 1500 },
    { type: "model.generation_complete" },
    { type: "model.usage", usage },
    // The turn ended while the first chunk waited in the player's buffer: it plays at its due time.
    { type: "model.playback_start", ts: 1600 },
    { type: "model.turn_complete" },
    { type: "user.speech_start" },
    { type: "user.transcript", text: "Tell me a story", final: true, ts: 1500 },
    { type: "user.speech_end" },
    { type: "model.response_start" },
    { type: "model.audio_start" },
    { type: "model.playback_start", ts: t2 + 100 },
    { type: "user.speech_start" },
    { type: "model.usage", usage },
    { type: "model.interrupted", generated_ms: 800, played_ms: 350 },
    { type: "tool.cancel", call_ids: ["fc-x"] },
    { type: "connection.go_away", time_left_ms: 9500 },
    { type: "connection.close", code: 1000, reason: "bye" },
    { type: "connection.open", connection_id: "conn-2" },
    { type: "connection.setup_complete" },
    { type: "connection.resumed", handle: "h-1" },
    { type: "model.turn_complete", reason: "NEED_MORE_INPUT" },
    { type: "error", error_type: "connection_error", message: "socket hiccup" },
  ]);
  assert.equal(tracer.resumptionHandle, "h-1", "a non-resumable update does not replace the handle");
  assert.equal(client.sent.length, 1, "the app's tool response still reaches the model");
  assert.equal(streamer.chunks, 4, "the app's audio still reaches the player");
  assert.equal(appErrors.length, 1);

  tracer.detach();
  client.server({ usageMetadata: usage });
  client.emit("turncomplete");
  assert.equal(trace.events.length, 31, "nothing after detach");
});

test("Gemini adapter fed raw server messages only (no GenAILiveClient) emits the same catalogue", () => {
  const clock = new FakeClock(0);
  const trace = recorderTrace(clock);
  const a = createGeminiLiveAdapter(trace);
  a.onOpen();
  a.handleServerMessage({ setupComplete: {} });
  a.handleServerMessage({ serverContent: { inputTranscription: { text: "hi", finished: true } } });
  a.handleServerMessage({ toolCall: { functionCalls: [{ id: "c1", name: "lookup", args: { q: 1 } }] } });
  a.toolResult("c1", undefined, new Error("backend down"));
  a.handleServerMessage(audioMsg(100));
  a.playbackStarted(); // the app's own player reports its first playback
  a.handleServerMessage({ serverContent: { outputTranscription: { text: "hello" } } });
  a.handleServerMessage({ serverContent: { generationComplete: true } });
  a.handleServerMessage({ serverContent: { turnComplete: true }, usageMetadata: usage });
  a.handleServerMessage({ toolCallCancellation: { ids: ["c9"] } });
  a.handleServerMessage(audioMsg(100));
  a.handleServerMessage({ serverContent: { interrupted: true } });
  a.onClose({ code: 1011, reason: "internal" });
  assert.deepEqual(trace.events, [
    { type: "connection.open", connection_id: "conn-1" },
    { type: "connection.setup_complete" },
    { type: "user.transcript", text: "hi", final: true, ts: 0 },
    { type: "model.response_start" },
    { type: "tool.call", call_id: "c1", name: "lookup", arguments: { q: 1 } },
    { type: "tool.result", call_id: "c1", error: "backend down" },
    { type: "model.audio_start" },
    { type: "model.playback_start", ts: 0 },
    { type: "model.transcript", text: "hello", ts: 0 },
    { type: "model.generation_complete" },
    { type: "model.usage", usage },
    { type: "model.turn_complete" },
    { type: "tool.cancel", call_ids: ["c9"] },
    { type: "model.response_start" },
    { type: "model.audio_start" },
    { type: "model.interrupted", generated_ms: 100, played_ms: 0 },
    { type: "connection.close", code: 1011, reason: "internal" },
  ]);
});

test("Gemini adapter never throws into the app's emitter", () => {
  const client = new GenAILiveClientShape();
  const throwingTrace = {
    now: () => 0,
    record() {
      throw new Error("trace broken");
    },
  };
  const internal = [];
  attachGeminiLive(client, throwingTrace, { onError: (e) => internal.push(e) });
  let appSaw = 0;
  client.on("turncomplete", () => appSaw++);
  assert.doesNotThrow(() => {
    client.connect("m", {});
    client.callbacks.onmessage({ serverContent: { turnComplete: true }, usageMetadata: usage });
    client.callbacks.onmessage({ goAway: { timeLeft: {} }, sessionResumptionUpdate: 7 });
    client.callbacks.onmessage({ serverContent: { modelTurn: null } });
    client.emit("toolcall", null);
    client.emit("audio", undefined);
  });
  assert.equal(appSaw, 1, "the app's listener after ours still runs");
  assert.ok(internal.length > 0);
});

test("duration and base64 helpers", () => {
  assert.equal(durationToMs("10s"), 10000);
  assert.equal(durationToMs("1.5s"), 1500);
  assert.equal(durationToMs("250ms"), 250);
  assert.equal(durationToMs({ seconds: 2, nanos: 500000000 }), 2500);
  assert.equal(durationToMs("soon"), undefined);
  assert.equal(base64Bytes(Buffer.alloc(4801).toString("base64")), 4801);
  assert.equal(base64Bytes(Buffer.alloc(4800).toString("base64")), 4800);
  assert.equal(base64Bytes(Buffer.alloc(4799).toString("base64")), 4799);
});

test("Gemini: the player stopped after the generation finished is a barge-in with played and generated ms", async () => {
  const clock = new FakeClock(0);
  const trace = recorderTrace(clock);
  const player = { isPlaying: false, initialBufferTime: 0.1, addPCM16() { this.isPlaying = true; }, stop() { this.isPlaying = false; }, onComplete() {} };
  const a = createGeminiLiveAdapter(trace, { setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout });
  a.attachAudioStreamer(player);
  const turn = async (ms) => {
    a.handleServerMessage(audioMsg(ms));
    player.addPCM16(new Uint8Array(8));
    a.handleServerMessage({ serverContent: { generationComplete: true } });
    a.handleServerMessage({ serverContent: { turnComplete: true } });
  };
  await turn(3000);
  await clock.advance(100); // its first chunk is heard after the player's 100 ms buffer: reported then
  await clock.advance(1000);
  player.stop(); // the app stops its player: the user barged in 1 s into 3 s of answer
  await turn(500);
  await clock.advance(2000);
  player.onComplete(); // it played out
  player.stop(); // a later stop cuts nothing
  const seen = trace.events.filter((e) => e.type.startsWith("model.playback") || e.type === "model.interrupted");
  assert.deepEqual(seen, [
    { type: "model.playback_start", ts: 100 },
    { type: "model.interrupted", played_ms: 1000, generated_ms: 3000, ts: 1100 },
    { type: "model.playback_start", ts: 1200 },
    { type: "model.playback_end" },
  ]);
});

test("Gemini: a player that plays out before turn_complete still ends playback, right after the turn completes", async () => {
  const clock = new FakeClock(0);
  const trace = recorderTrace(clock);
  const player = { isPlaying: false, initialBufferTime: 0.1, addPCM16() { this.isPlaying = true; }, stop() { this.isPlaying = false; }, onComplete() {} };
  const a = createGeminiLiveAdapter(trace, { setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout });
  a.attachAudioStreamer(player);
  a.handleServerMessage(audioMsg(200));
  player.addPCM16(new Uint8Array(8));
  await clock.advance(100); // audible after the player's buffer
  await clock.advance(200);
  player.onComplete(); // played out at 300, the generation still open
  await clock.advance(50);
  a.handleServerMessage({ serverContent: { generationComplete: true } });
  a.handleServerMessage({ serverContent: { turnComplete: true } });
  player.stop(); // nothing left to cut
  const seen = trace.events.filter((e) => e.type.startsWith("model.playback") || ["model.interrupted", "model.turn_complete"].includes(e.type));
  assert.deepEqual(seen, [
    { type: "model.playback_start", ts: 100 },
    { type: "model.turn_complete" },
    { type: "model.playback_end", ts: 300 },
  ]);
});

test("Gemini: a player that runs dry between chunks of one generation has not ended playback", async () => {
  const clock = new FakeClock(0);
  const trace = recorderTrace(clock);
  const player = { isPlaying: false, initialBufferTime: 0.1, addPCM16() { this.isPlaying = true; }, stop() { this.isPlaying = false; }, onComplete() { this.isPlaying = false; } };
  const a = createGeminiLiveAdapter(trace, { setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout });
  a.attachAudioStreamer(player);
  a.handleServerMessage(audioMsg(200));
  player.addPCM16(new Uint8Array(8));
  await clock.advance(300);
  player.onComplete(); // a network gap drained it
  a.handleServerMessage(audioMsg(1000)); // more of the same answer
  player.addPCM16(new Uint8Array(8));
  a.handleServerMessage({ serverContent: { turnComplete: true } });
  await clock.advance(500);
  player.stop(); // a barge-in while the rest still plays: it cuts this turn
  const seen = trace.events.filter((e) => e.type.startsWith("model.playback") || e.type === "model.interrupted");
  assert.deepEqual(seen.map((e) => e.type), ["model.playback_start", "model.interrupted"]);
});
