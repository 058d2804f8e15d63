import nodeTest from "node:test";
import assert from "node:assert/strict";

import { VoiceTrace } from "../../gateway/static/voice-trace.js";
import { EventEmitter } from "node:events";

import { pickMimeType } from "../../gateway/static/recorder.js";
import { attachGeminiLive, createGeminiLiveAdapter } from "../../gateway/static/adapters/gemini-live.js";
import { attachOpenAIRealtime, createOpenAIRealtimeAdapter } from "../../gateway/static/adapters/openai-realtime.js";
import { FakeClock, settle } from "./helpers.mjs";

const test = (name, fn) => nodeTest(name, { timeout: 10000 }, fn);

// Web Audio and MediaRecorder stand-ins: the graph is recorded, the recorder emits what the test says.
class FakeNode {
  constructor(kind) {
    this.kind = kind;
    this.connections = [];
  }
  connect(target, output = 0, input = 0) {
    this.connections.push({ target, output, input });
  }
  disconnect() {}
}

class FakeAudioContext {
  constructor() {
    this.state = "running";
    this.currentTime = 0;
    this.started = [];
    FakeAudioContext.last = this;
  }
  createGain() { return new FakeNode("gain"); }
  createChannelMerger() { return new FakeNode("merger"); }
  createMediaStreamDestination() { const n = new FakeNode("dest"); n.stream = { id: "mixed" }; return n; }
  createMediaStreamSource(stream) { const n = new FakeNode("source"); n.stream = stream; return n; }
  createBuffer(channels, length, rate) {
    const data = new Float32Array(length);
    return { duration: length / rate, getChannelData: () => data };
  }
  createBufferSource() {
    const n = new FakeNode("buffer");
    n.start = (at) => this.started.push({ at, buffer: n.buffer });
    n.stop = () => {};
    return n;
  }
  close() { this.state = "closed"; return Promise.resolve(); }
}

class FakeMediaRecorder {
  static isTypeSupported(type) { return type === "audio/webm;codecs=opus"; }
  constructor(stream, options) {
    this.stream = stream;
    this.mimeType = options.mimeType;
    this.state = "inactive";
    FakeMediaRecorder.last = this;
  }
  start(timeslice) { this.state = "recording"; this.timeslice = timeslice; }
  requestData() { this.requested = (this.requested || 0) + 1; }
  stop() { this.state = "inactive"; this.ondataavailable({ data: new Blob(["last"]) }); this.onstop(); }
  emit(text) { this.ondataavailable({ data: new Blob([text]) }); }
}

function setup({ answers = [], recording = { enabled: true }, recorder = {} } = {}) {
  const clock = new FakeClock();
  const uploads = [];
  const script = [...answers];
  const fetch = async (url, init) => {
    const u = new URL(url);
    if (!u.pathname.endsWith("/recording")) return new Response("{}", { status: 202 });
    const body = await init.body.text();
    const status = script.length ? script.shift() : 201;
    uploads.push({ chunk: u.searchParams.get("chunk"), start: u.searchParams.get("start"), body, status,
                   type: init.headers["Content-Type"], auth: init.headers.Authorization });
    if (status === "network") throw new TypeError("network down");
    return new Response(JSON.stringify({ detail: `said ${status}` }), { status });
  };
  const errors = [];
  const vt = VoiceTrace.fromToken({
    gatewayUrl: "http://gw.test", sessionId: "s1", token: "tok", fetch, setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout, now: clock.now, random: () => 0.5, pageLifecycle: false, requestTimeoutMs: 0,
    onError: (e) => errors.push(e), recordAudio: true, recording, microphone: { id: "mic" }, recorder,
    AudioContext: FakeAudioContext, MediaRecorder: FakeMediaRecorder,
  });
  return { clock, uploads, errors, vt };
}

test("the microphone goes left, the model right, into one recorder writing Opus in WebM", async () => {
  const { vt } = setup();
  await settle();
  const ctx = FakeAudioContext.last;
  const rec = vt.recorder;
  assert.equal(rec.state, "recording");
  assert.equal(rec.mimeType, "audio/webm;codecs=opus");
  const [userBus, modelBus] = [rec._userBus, rec._modelBus];
  assert.deepEqual(userBus.connections.map((c) => c.input), [0]);
  assert.deepEqual(modelBus.connections.map((c) => c.input), [1]);
  assert.equal(rec._sources[0].stream.id, "mic");
  assert.equal(rec._sources[0].connections[0].target, userBus);
  // PCM is scheduled back to back, as a player would.
  vt.recorder.feedModelPcm(new Int16Array(2400), 24000);
  vt.recorder.feedModelPcm(new Int16Array(4800), 24000);
  assert.deepEqual(ctx.started.map((s) => s.at), [0, 0.1]);
});

test("chunks upload in order, chunk 0 with the start time, retried on 503 and network errors", async () => {
  const { vt, uploads, clock, errors } = setup({ answers: [503, "network"] });
  await settle();
  const started = vt.recorder.startedAt;
  assert.equal(started, clock.now());
  await clock.advance(1000);
  assert.equal(FakeMediaRecorder.last.requested, 1); // the first chunk is cut early
  FakeMediaRecorder.last.emit("c0");
  FakeMediaRecorder.last.emit("c1");
  await clock.advance(60_000);
  const done = vt.recorder.stop();
  await clock.advance(1000);
  await done;
  assert.deepEqual(uploads.map((u) => [u.chunk, u.body, u.status]),
                   [["0", "c0", 503], ["0", "c0", "network"], ["0", "c0", 201], ["1", "c1", 201], ["2", "last", 201]]);
  assert.equal(uploads[0].start, String(started));
  assert.equal(uploads[3].start, null);
  assert.ok(uploads.every((u) => u.type === "audio/webm;codecs=opus" && u.auth === "Bearer tok"));
  assert.equal(vt.recorder.state, "stopped");
  assert.deepEqual(vt.recorder.stats, { chunks: 3, uploaded: 3, bytes: 8, retries: 2, pendingBytes: 0 });
  assert.deepEqual(errors, []);
});

test("a refusal stops the recording and is reported, never thrown", async () => {
  const { vt, uploads, clock, errors } = setup({ answers: [413] });
  await settle();
  FakeMediaRecorder.last.emit("too big");
  await clock.advance(1000);
  await vt.recorder.done;
  assert.equal(vt.recorder.state, "failed");
  assert.equal(uploads.length, 1);
  assert.equal(errors[0].kind, "recording_failed");
  assert.match(errors[0].message, /said 413/);
  assert.equal(FakeMediaRecorder.last.state, "inactive");
});

test("memory is bounded: past maxPendingBytes waiting for the gateway, it stops", async () => {
  const { vt, clock, errors } = setup({ answers: ["network", "network", "network"], recorder: { maxPendingBytes: 10 } });
  await settle();
  FakeMediaRecorder.last.emit("123456");
  FakeMediaRecorder.last.emit("789012");
  await clock.advance(10);
  assert.equal(vt.recorder.state, "failed");
  assert.equal(vt.recorder.stats.pendingBytes, 0);
  assert.match(errors[0].message, /waiting for the gateway/);
});

test("when the gateway does not record the session, nothing is recorded", async () => {
  const { vt, uploads, errors } = setup({ recording: { enabled: false, reason: "audio capture is off" } });
  await vt.recorder.done;
  assert.equal(vt.recorder.state, "off");
  assert.equal(FakeAudioContext.last.state, "closed");
  assert.equal(uploads.length, 0);
  assert.equal(errors[0].kind, "recording_off");
});

test("the first supported type wins; none supported lets the browser choose", () => {
  assert.equal(pickMimeType(["audio/ogg", "audio/webm;codecs=opus"], FakeMediaRecorder), "audio/webm;codecs=opus");
  assert.equal(pickMimeType(["audio/ogg"], FakeMediaRecorder), "");
  assert.equal(pickMimeType(["audio/ogg"], undefined), "");
});

// ---------------------------------------------------------------- adapters feed the recorder themselves

function pcmBase64(values) {
  return Buffer.from(Int16Array.from(values).buffer).toString("base64");
}

test("Gemini Live: the adapter hands the model's PCM chunks to the recorder, and drops them on an interruption", async () => {
  const { vt } = setup();
  await settle();
  const rec = vt.recorder;
  let cleared = 0;
  const clear = rec.clearModelAudio.bind(rec);
  rec.clearModelAudio = () => {
    cleared++;
    clear();
  };
  const fed = [];
  const feed = rec.feedModelPcm.bind(rec);
  rec.feedModelPcm = (samples, rate) => {
    fed.push({ samples: Array.from(samples), rate });
    feed(samples, rate);
  };
  const tracer = createGeminiLiveAdapter(vt);
  // The GenAILiveClient's "audio" event: an ArrayBuffer of PCM16 at the rate of the part's type.
  tracer.handleServerMessage(
    { serverContent: { modelTurn: { parts: [{ inlineData: { mimeType: "audio/pcm;rate=16000", data: pcmBase64([1000, -2000, 3000]) } }] } } },
  );
  tracer.onAudio(Int16Array.from([16384, -16384]).buffer);
  assert.deepEqual(fed, [
    { samples: [1000, -2000, 3000], rate: 16000 },
    { samples: [16384, -16384], rate: 16000 },
  ]);
  // Into the model's bus (the right channel), back to back, as the player plays them.
  const ctx = FakeAudioContext.last;
  assert.deepEqual(ctx.started.map((s) => s.at), [0, 3 / 16000]);
  assert.deepEqual(Array.from(ctx.started[1].buffer.getChannelData(0)), [0.5, -0.5]);
  tracer.handleServerMessage({ serverContent: { interrupted: true } });
  assert.equal(cleared, 1);
});

test("Gemini Live through attachGeminiLive: the client's audio events reach the recorder, a stopped player clears it", async () => {
  const { vt } = setup();
  await settle();
  const fed = [];
  vt.recorder.feedModelPcm = (samples, rate) => fed.push([samples.length, rate]);
  let cleared = 0;
  vt.recorder.clearModelAudio = () => cleared++;
  const client = new EventEmitter();
  client.onmessage = function (msg) {
    for (const p of msg.serverContent.modelTurn.parts) {
      const buf = Buffer.from(p.inlineData.data, "base64");
      this.emit("audio", buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    }
  };
  const streamer = { isPlaying: false, initialBufferTime: 0, addPCM16() {}, stop() {} };
  attachGeminiLive(client, vt, { audioStreamer: streamer });
  client.onmessage({ serverContent: { modelTurn: { parts: [{ inlineData: { mimeType: "audio/pcm;rate=24000", data: pcmBase64([1, 2, 3, 4]) } }] } } });
  assert.deepEqual(fed, [[4, 24000]]);
  streamer.stop(); // the app flushes its player (a barge-in)
  assert.equal(cleared, 1);
});

test("OpenAI Realtime over WebSocket: audio deltas reach the recorder, the app's truncation clears it", async () => {
  const { vt } = setup();
  await settle();
  const fed = [];
  vt.recorder.feedModelPcm = (samples, rate) => fed.push([Array.from(samples), rate]);
  let cleared = 0;
  vt.recorder.clearModelAudio = () => cleared++;
  const tracer = createOpenAIRealtimeAdapter(vt);
  tracer.handleServerEvent({ type: "response.created", response: {} });
  tracer.handleServerEvent({ type: "response.output_audio.delta", item_id: "i1", delta: pcmBase64([5, -5]) });
  tracer.handleServerEvent(JSON.stringify({ type: "response.audio.delta", item_id: "i1", delta: pcmBase64([7]) }));
  assert.deepEqual(fed, [[[5, -5], 24000], [[7], 24000]]);
  tracer.handleClientEvent({ type: "conversation.item.truncate", item_id: "i1", content_index: 0, audio_end_ms: 40 });
  assert.equal(cleared, 1);
});

test("OpenAI Realtime over WebRTC: the remote audio track of the peer connection is recorded, once", async () => {
  globalThis.MediaStream ??= class MediaStream {
    constructor(tracks) {
      this.tracks = tracks;
    }
  };
  const { vt, errors } = setup();
  await settle();
  const tracks = [];
  vt.recorder.addModelTrack = (t) => tracks.push(t);
  const remote = { kind: "audio", id: "remote-audio" };
  const pc = new EventTarget();
  pc.getReceivers = () => [{ track: { kind: "video", id: "v" } }, { track: remote }];
  const channel = new EventTarget();
  channel.readyState = "connecting";
  channel.send = () => {};
  attachOpenAIRealtime(channel, vt, { peerConnection: pc });
  const later = { kind: "audio", id: "later" };
  const ev = new Event("track");
  ev.track = later;
  pc.dispatchEvent(ev);
  pc.dispatchEvent(Object.assign(new Event("track"), { track: remote }));
  assert.deepEqual(tracks.map((t) => t.id), ["remote-audio", "later"]);

  // The agents SDK's WebRTC transport: its peer connection, once connected.
  const transport = new EventEmitter();
  transport.sendEvent = () => {};
  transport.connectionState = { status: "connected", peerConnection: { getReceivers: () => [{ track: { kind: "audio", id: "sdk" } }] } };
  attachOpenAIRealtime(transport, vt);
  transport.emit("connected");
  assert.deepEqual(tracks.map((t) => t.id), ["remote-audio", "later", "sdk"]);
  // And for real, into the recorder's graph (the model's bus), with no error reported.
  const { vt: vt2, errors: errors2 } = setup();
  await settle();
  createOpenAIRealtimeAdapter(vt2).addModelAudio({ kind: "audio", id: "real" });
  const source = vt2.recorder._sources.at(-1);
  assert.equal(source.stream.tracks[0].id, "real");
  assert.equal(source.connections[0].target, vt2.recorder._modelBus);
  assert.deepEqual([...errors, ...errors2], []);
});

test("nothing is fed without a recorder, nor with recordModelAudio: false", async () => {
  const { vt } = setup();
  await settle();
  const fed = [];
  vt.recorder.feedModelPcm = (samples) => fed.push(samples.length);
  createGeminiLiveAdapter(vt, { recordModelAudio: false }).onAudio(new ArrayBuffer(8));
  createOpenAIRealtimeAdapter(vt, { recordModelAudio: false }).handleServerEvent({ type: "response.output_audio.delta", delta: pcmBase64([1]) });
  assert.deepEqual(fed, []);
  // A trace without a recorder (recordAudio not asked): the adapter still traces, and throws nothing.
  const events = [];
  const bare = { record: (type) => events.push(type), now: () => 0, recorder: null };
  createGeminiLiveAdapter(bare).onAudio(new ArrayBuffer(8));
  createOpenAIRealtimeAdapter(bare).handleServerEvent({ type: "response.output_audio.delta", delta: pcmBase64([1]) });
  assert.ok(events.includes("model.audio_start"));
  // Odd byte offsets (a view into a larger buffer) are copied, never misread.
  const adapter = createGeminiLiveAdapter(vt);
  const bytes = new Uint8Array(7);
  adapter.onAudio(bytes.subarray(1, 5));
  assert.deepEqual(fed, [2]);
});
