import nodeTest from "node:test";
import assert from "node:assert/strict";

import { VoiceTrace } from "../../gateway/static/voice-trace.js";
import { pickMimeType } from "../../gateway/static/recorder.js";
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
