/**
 * /demo: a scripted Gemini Live voice session that runs in the browser through the real client
 * (voice-trace.js) and the real adapter (adapters/gemini-live.js). The "model" is a fake live client that
 * emits the messages Gemini Live sends (setupComplete, input/output transcription, PCM audio chunks,
 * toolCall, interrupted, generationComplete, turnComplete with usageMetadata, sessionResumptionUpdate,
 * goAway); the only network traffic is to the gateway (and, in a browser, the demo's own speech files).
 *
 * The model speaks: each scripted answer is a speech file shipped with the demo (demo-voice/*.ogg: espeak-ng,
 * `espeak-ng -v en-us -s 160 -w x.wav "<answer>"`, then `ffmpeg -i x.wav -ac 1 -ar 24000 -c:a libopus -b:a 20k
 * -application voip x.ogg`; 85 KB for the four), decoded once to 24 kHz PCM16 and sent as Gemini Live sends
 * audio: base64 chunks in serverContent.modelTurn. The app's wiring then plays them (Web Audio at speed 1, a
 * clock-only player otherwise) and the adapter hands them to the call recorder (right channel) as it would
 * for the real model. Where the files cannot be decoded (Node, a browser without Ogg Opus), a quiet tone
 * stands in.
 *
 * Automation drives it through `window.demo` (see DemoSession's methods, `demo.state`, and the README).
 * The module also exports its parts so Node tests can run the same scenario without a browser.
 */

import { VoiceTrace } from "./voice-trace.js";
import { attachGeminiLive } from "./adapters/gemini-live.js";

// ---------------------------------------------------------------- a tiny EventEmitter (eventemitter3-like)

export class Emitter {
  constructor() {
    this._listeners = new Map();
  }
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, []);
    this._listeners.get(event).push(fn);
    return this;
  }
  off(event, fn) {
    const list = this._listeners.get(event);
    if (list) {
      const i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    }
    return this;
  }
  removeListener(event, fn) {
    return this.off(event, fn);
  }
  once(event, fn) {
    const wrapped = (...args) => {
      this.off(event, wrapped);
      fn(...args);
    };
    return this.on(event, wrapped);
  }
  emit(event, ...args) {
    const list = this._listeners.get(event);
    if (!list || !list.length) return false;
    for (const fn of [...list]) fn(...args);
    return true;
  }
}

function base64ToArrayBuffer(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes.buffer;
}

/** base64 of `ms` of PCM16 mono audio at `rate` Hz (a quiet 220 Hz tone). */
export function pcmChunk(ms, rate = 24000) {
  const samples = Math.round((rate * ms) / 1000);
  let bin = "";
  for (let i = 0; i < samples; i++) {
    const v = Math.round(Math.sin((2 * Math.PI * 220 * i) / rate) * 800) & 0xffff;
    bin += String.fromCharCode(v & 0xff, v >> 8);
  }
  return btoa(bin);
}

// ---------------------------------------------------------------- the fake model

/**
 * Shaped like live-api-web-console's GenAILiveClient: same events, same `connect(model, config)`,
 * `disconnect()`, `sendToolResponse()`, `getConfig()`, and an `onmessage` instance method that `connect()`
 * captures, dispatching server messages the same way (audio parts → "audio", other parts → "content",
 * interrupted, turnComplete, toolCall, toolCallCancellation, setupComplete; the rest is not surfaced).
 */
export class FakeGenAILiveClient extends Emitter {
  constructor(options = {}) {
    super();
    this._status = "disconnected";
    this._model = null;
    this.config = null;
    this.session = null;
    this.toolResponses = [];
    this._defer = options.defer || ((fn) => Promise.resolve().then(fn));
    this.onopen = this.onopen.bind(this);
    this.onerror = this.onerror.bind(this);
    this.onclose = this.onclose.bind(this);
    this.onmessage = this.onmessage.bind(this);
  }
  get status() {
    return this._status;
  }
  get model() {
    return this._model;
  }
  getConfig() {
    return { ...this.config };
  }

  async connect(model, config) {
    if (this._status === "connected" || this._status === "connecting") return false;
    this._status = "connecting";
    this._model = model;
    this.config = config;
    // Like the SDK, the callbacks are taken when connecting.
    const callbacks = { onopen: this.onopen, onmessage: this.onmessage, onerror: this.onerror, onclose: this.onclose };
    await this._defer(() => {});
    this.session = new FakeLiveSession(callbacks, this);
    this._status = "connected";
    callbacks.onopen();
    this.session.serverSend({ setupComplete: {} });
    return true;
  }

  disconnect(reason = "") {
    if (!this.session) return false;
    const session = this.session;
    this.session = null;
    this._status = "disconnected";
    session.close(1000, reason);
    return true;
  }

  onopen() {
    this.emit("open");
  }
  onerror(e) {
    this.emit("error", e);
  }
  onclose(e) {
    this.emit("close", e);
  }

  onmessage(message) {
    if (message.setupComplete) {
      this.emit("setupcomplete");
      return;
    }
    if (message.toolCall) {
      this.emit("toolcall", message.toolCall);
      return;
    }
    if (message.toolCallCancellation) {
      this.emit("toolcallcancellation", message.toolCallCancellation);
      return;
    }
    const sc = message.serverContent;
    if (sc) {
      if ("interrupted" in sc) {
        this.emit("interrupted");
        return;
      }
      if ("turnComplete" in sc) this.emit("turncomplete");
      if ("modelTurn" in sc) {
        const parts = (sc.modelTurn && sc.modelTurn.parts) || [];
        const audio = parts.filter((p) => p.inlineData && String(p.inlineData.mimeType || "").startsWith("audio/pcm"));
        const other = parts.filter((p) => !audio.includes(p));
        for (const p of audio) if (p.inlineData.data) this.emit("audio", base64ToArrayBuffer(p.inlineData.data));
        if (other.length) this.emit("content", { modelTurn: { parts: other } });
      }
    }
  }

  sendToolResponse(toolResponse) {
    if (toolResponse && toolResponse.functionResponses && toolResponse.functionResponses.length) {
      this.toolResponses.push(toolResponse);
      if (this.session) this.session.receiveToolResponse(toolResponse);
    }
  }
  sendRealtimeInput() {}
  send() {}
}

/** The server end of one fake WebSocket. */
class FakeLiveSession {
  constructor(callbacks) {
    this.callbacks = callbacks;
    this.open = true;
    this._toolWaiters = [];
  }
  serverSend(message) {
    if (this.open) this.callbacks.onmessage(message);
  }
  close(code, reason) {
    if (!this.open) return;
    this.open = false;
    this.callbacks.onclose({ type: "close", code, reason, wasClean: true });
  }
  receiveToolResponse(tr) {
    const waiters = this._toolWaiters;
    this._toolWaiters = [];
    for (const w of waiters) w(tr);
  }
  nextToolResponse() {
    return new Promise((resolve) => this._toolWaiters.push(resolve));
  }
}

/**
 * An audio player shaped like live-api-web-console's AudioStreamer (addPCM16, stop, isPlaying,
 * initialBufferTime, onComplete), without Web Audio: it keeps time only, at the demo's speed. Playback starts
 * after the initial buffer, chunks play back to back, and onComplete fires when the queue has played out.
 */
export class FakeAudioStreamer {
  constructor(options = {}) {
    this.isPlaying = false;
    this.initialBufferTime = 0.1;
    this.queuedMs = 0;
    this.chunks = 0;
    this.sampleRate = 24000;
    this.onComplete = () => {};
    this._setTimeout = options.setTimeout || ((fn, ms) => setTimeout(fn, ms));
    this._clearTimeout = options.clearTimeout || ((h) => clearTimeout(h));
    this._now = options.now || (() => Date.now());
    this._speed = options.speed || (() => 1);
    this._timer = null;
    this._endAt = 0;
    this.addPCM16 = this.addPCM16.bind(this);
  }
  addPCM16(chunk) {
    const ms = (chunk.byteLength / 2 / this.sampleRate) * 1000;
    const speed = this._speed() || 1;
    const now = this._now();
    this.queuedMs += ms;
    this.chunks++;
    if (!this.isPlaying) {
      this.isPlaying = true;
      this._endAt = now + (this.initialBufferTime * 1000) / speed;
    }
    this._endAt = Math.max(this._endAt, now) + ms / speed;
    if (this._timer) this._clearTimeout(this._timer);
    this._timer = this._setTimeout(() => {
      this._timer = null;
      this.isPlaying = false;
      this.onComplete();
    }, this._endAt - now);
  }
  stop() {
    this.isPlaying = false;
    this.queuedMs = 0;
    if (this._timer) this._clearTimeout(this._timer);
    this._timer = null;
  }
  complete() {}
}

/**
 * The same player through Web Audio, for a person at /demo (speed 1): PCM16 chunks scheduled back to back on
 * the context's clock, after the initial buffer when idle; onComplete when the last one has played.
 */
export class WebAudioStreamer {
  constructor(context) {
    this.context = context;
    this.isPlaying = false;
    this.initialBufferTime = 0.1;
    this.sampleRate = 24000;
    this.chunks = 0;
    this.onComplete = () => {};
    this._cursor = 0;
    this._sources = new Set();
    this.addPCM16 = this.addPCM16.bind(this);
  }
  addPCM16(chunk) {
    const ctx = this.context;
    const samples = new Int16Array(chunk.buffer, chunk.byteOffset, chunk.byteLength >> 1);
    if (!samples.length) return;
    const buffer = ctx.createBuffer(1, samples.length, this.sampleRate);
    const data = buffer.getChannelData(0);
    for (let i = 0; i < samples.length; i++) data[i] = samples[i] / 32768;
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    if (!this.isPlaying) {
      this.isPlaying = true;
      this._cursor = ctx.currentTime + this.initialBufferTime;
    }
    const at = Math.max(this._cursor, ctx.currentTime);
    source.start(at);
    this._cursor = at + buffer.duration;
    this.chunks++;
    this._sources.add(source);
    source.onended = () => {
      this._sources.delete(source);
      if (this.isPlaying && !this._sources.size) {
        this.isPlaying = false;
        this.onComplete();
      }
    };
  }
  stop() {
    this.isPlaying = false; // first: the stopped sources' onended must not report a completion
    for (const source of this._sources) {
      try {
        source.stop();
      } catch (_) {
        /* not started */
      }
    }
    this._sources.clear();
  }
  complete() {}
}

/** The demo's speech files, by script answer: decoded once into 24 kHz PCM16 (null where that fails). */
export const VOICES = { weather: "weather.ogg", history: "history.ogg", tomorrow: "tomorrow.ogg", generic: "generic.ogg" };

export async function loadVoices(baseUrl, fetchImpl = globalThis.fetch, rate = 24000) {
  const Offline = globalThis.OfflineAudioContext || globalThis.webkitOfflineAudioContext;
  const voices = {};
  if (!Offline || !fetchImpl) return voices;
  await Promise.all(
    Object.entries(VOICES).map(async ([name, file]) => {
      try {
        const res = await fetchImpl(`${baseUrl}/${file}`);
        if (!res.ok) return;
        const decoded = await new Offline(1, 1, rate).decodeAudioData(await res.arrayBuffer());
        const f = decoded.getChannelData(0);
        const pcm = new Int16Array(f.length);
        for (let i = 0; i < f.length; i++) pcm[i] = Math.max(-32768, Math.min(32767, Math.round(f[i] * 32767)));
        voices[name] = pcm;
      } catch (_) {
        /* this browser cannot decode Ogg Opus: the tone stands in */
      }
    }),
  );
  return voices;
}

/** base64 of PCM16 samples (little-endian, as Gemini Live sends them). */
export function pcmBase64(samples) {
  const bytes = new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

// ---------------------------------------------------------------- the scenario

class Cancelled extends Error {}

const SCRIPT = {
  weather: {
    question: "What's the weather in Paris right now?",
    tool: { name: "get_weather", args: { city: "Paris" }, result: { temp_c: 18, condition: "light rain" } },
    answer: "It's 18 degrees and lightly raining in Paris right now. You might want an umbrella.",
  },
  history: {
    question: "Can you tell me about the history of the Eiffel Tower?",
    answer:
      "The Eiffel Tower was built by Gustave Eiffel's company for the 1889 World's Fair, and at first many " +
      "Parisian artists called it an eyesore. It was meant to stand for only twenty years, but it proved useful " +
      "as a radio antenna, which saved it from demolition.",
    bargeIn: "Wait, sorry. What about tomorrow?",
  },
  tomorrow: { answer: "Tomorrow in Paris looks dry and sunny, with a high of 22 degrees." },
  generic: {
    question: "Tell me a fun fact.",
    answer: "Honey never spoils: archaeologists have found edible honey in ancient Egyptian tombs.",
  },
};

// Which speech file says which scripted answer.
const VOICE_OF = new Map(Object.entries(SCRIPT).map(([name, line]) => [line.answer, name]));

const MODEL = "models/gemini-2.5-flash-native-audio-preview";
const CHUNK_MS = 200; // audio per server message
const AUDIO_TOKENS_PER_S = 32;

/**
 * One demo session: a VoiceTrace client, the adapter, the fake model and a fake player. Every action is
 * serialized (one after the other) except `interrupt()` during a model answer and `closeTabAbruptly()`.
 */
export class DemoSession {
  constructor(options = {}) {
    this.options = {
      gatewayUrl: "",
      speed: 1,
      traceOptions: {},
      toolFetchUrl: null,
      voices: null, // {weather, history, tomorrow, generic}: Int16Array PCM at 24 kHz (see loadVoices)
      voiceUrl: null, // where to load them from at start (the page: /static/demo-voice)
      audible: false, // play the model through Web Audio (at speed 1; the page sets it)
      recordAudio: false, // record the call (README "Recordings"); getMicrophone() gives the user's side
      getMicrophone: null,
      ...options,
    };
    this._setTimeout = this.options.setTimeout || ((fn, ms) => globalThis.setTimeout(fn, ms));
    this._clearTimeout = this.options.clearTimeout || ((h) => globalThis.clearTimeout(h));
    this._window = this.options.window !== undefined ? this.options.window : globalThis.window;
    this.faults = [];
    this.state = {
      status: "idle", // idle → starting → connected ⇄ reconnecting → ended | closed | failed
      busy: false,
      action: null,
      sessionId: null,
      traceId: null,
      traceparent: null,
      connections: 0,
      turns: 0,
      interruptions: 0,
      toolCalls: 0,
      modelSpeaking: false,
      events: [],
      errors: [],
      transcript: [],
      transcriptRev: 0,
      summary: null,
      closedAt: null,
    };
    this.trace = null;
    this.client = null;
    this.streamer = null;
    this.tracer = null;
    this._chain = Promise.resolve();
    this._interruptNow = null;
    this._cancelled = false;
    this._listeners = new Set();
    this._promptTokens = 420;
  }

  // ------------------------------------------------------------ public API (window.demo delegates here)

  /** Creates the session at the gateway and connects the fake model. Resolves to {sessionId, traceId}. */
  start(opts = {}) {
    return this._serial("start", async () => {
      if (this.trace && this.state.status !== "ended" && this.state.status !== "closed") return this._ids();
      this._cancelled = false;
      this._set({ status: "starting", events: [], errors: [], transcript: [], transcriptRev: 0, summary: null, turns: 0, interruptions: 0, toolCalls: 0, connections: 0 });
      const o = this.options;
      if (!o.voices && o.voiceUrl) o.voices = await loadVoices(o.voiceUrl, o.fetch || globalThis.fetch);
      const recording = {};
      if (o.recordAudio) {
        recording.recordAudio = true;
        const mic = typeof o.getMicrophone === "function" ? await o.getMicrophone().catch(() => null) : null;
        if (mic) recording.microphone = mic;
      }
      this.trace = await VoiceTrace.start({
        gatewayUrl: opts.gatewayUrl ?? o.gatewayUrl,
        provider: "gcp.gemini",
        model: MODEL.replace(/^models\//, ""),
        agent: "demo-weather-agent",
        userId: opts.userId ?? "demo-user",
        tags: ["demo", ...(opts.tags || [])],
        attributes: { "demo.scripted": true, ...(opts.attributes || {}) },
        ...(opts.sessionId ? { sessionId: opts.sessionId } : {}),
        fetch: (url, init) => this._fetch(url, init),
        window: this._window,
        ...recording,
        ...o.traceOptions,
        ...(opts.traceOptions || {}),
        onEvent: (e) => this._onTraceEvent(e),
        onError: (err) => this._onTraceError(err),
      });
      if (this.trace.state === "failed") {
        this._set({ status: "failed" });
        throw new Error(`could not start a session: ${this.state.errors.map((e) => e.message).join("; ")}`);
      }
      this._set({ sessionId: this.trace.sessionId, traceId: this.trace.traceId, traceparent: this.trace.traceparent });
      this.client = new FakeGenAILiveClient({ defer: (fn) => this._sleep(30).then(fn) });
      this.streamer = (await this._audiblePlayer()) || new FakeAudioStreamer({
        setTimeout: this._setTimeout,
        clearTimeout: this._clearTimeout,
        speed: () => this.options.speed,
      });
      // The app's own wiring, as in live-api-web-console's use-live-api.ts...
      this.client.on("audio", (data) => this.streamer.addPCM16(new Uint8Array(data)));
      this.client.on("interrupted", () => this.streamer.stop());
      this.client.on("toolcall", (tc) => this._runTools(tc));
      this.client.on("open", () => this._set({ connections: this.state.connections + 1 }));
      // ...and the one line that traces it.
      this.tracer = attachGeminiLive(this.client, this.trace, {
        audioStreamer: this.streamer,
        // The demo plays its script faster than real time: so does its player's initial buffer.
        playbackDelayMs: () => (this.streamer.initialBufferTime * 1000) / (this.options.speed || 1),
      });
      await this.client.connect(MODEL, { responseModalities: ["AUDIO"], sessionResumption: {} });
      await this._sleep(50);
      this._set({ status: "connected" });
      return this._ids();
    });
  }

  /**
   * One turn: the user speaks (client VAD reports speech start/end, Gemini transcribes), the model may call a
   * tool, then answers with audio and output transcription. Options: question, answer, tool ({name, args,
   * result} or true), skipUser, interruptAfterChunks, bargeIn, answerBargeIn.
   */
  turn(opts = {}) {
    return this._serial("turn", () => this._turn(opts));
  }

  /** A turn in which the model calls a tool (get_weather) before answering. */
  callTool(opts = {}) {
    return this.turn({ ...SCRIPT.weather, tool: SCRIPT.weather.tool, ...opts });
  }

  /**
   * Barge-in. While the model is answering, the user talks over it now; otherwise a turn with a long answer
   * is started and interrupted after a few chunks. The model then answers the barge-in question unless
   * `{answer: false}`.
   */
  interrupt(opts = {}) {
    if (this.state.modelSpeaking && this._interruptNow) {
      const fire = this._interruptNow;
      return new Promise((resolve) => fire({ ...opts, resolve }));
    }
    return this._serial("interrupt", async () => {
      const result = await this._turn({
        ...SCRIPT.history,
        interruptAfterChunks: opts.afterChunks ?? 4,
        bargeIn: opts.bargeIn ?? SCRIPT.history.bargeIn,
      });
      if (opts.answer !== false) await this._turn({ skipUser: true, ...SCRIPT.tomorrow });
      return result;
    });
  }

  /** The server says goAway; the app reconnects with the newest session resumption handle. */
  reconnect() {
    return this._serial("reconnect", async () => {
      this._need();
      const handle = this.tracer.resumptionHandle || `resume-${Math.random().toString(36).slice(2, 10)}`;
      if (!this.tracer.resumptionHandle) this._server({ sessionResumptionUpdate: { newHandle: handle, resumable: true } });
      this._server({ goAway: { timeLeft: "10s" } });
      this._set({ status: "reconnecting" });
      await this._sleep(150);
      const closed = this._once("close");
      this.client.disconnect("reconnecting after goAway");
      await closed;
      await this._sleep(100);
      await this.client.connect(MODEL, { ...this.client.getConfig(), sessionResumption: { handle } });
      await this._sleep(50);
      this._set({ status: "connected" });
      return { handle, connections: this.state.connections };
    });
  }

  /** Disconnects the model and ends the session; resolves to the gateway's summary. */
  end(reason = "completed") {
    return this._serial("end", async () => {
      if (!this.trace || this.state.status === "ended" || this.state.status === "closed") return this.state.summary;
      if (this.client && this.client.session) {
        const closed = this._once("close");
        this.client.disconnect("user hung up");
        await closed;
      }
      const summary = await this.trace.end(reason);
      this._set({ status: "ended", summary });
      return summary;
    });
  }

  /**
   * Simulates the tab closing mid-session: by default a turn is started and, once the model's audio is
   * flowing, `pagehide` is dispatched (the client then sends what is left and the end with sendBeacon).
   * `{navigate: true}` navigates away for real instead; `{midTurn: false}` closes at once.
   */
  async closeTabAbruptly(opts = {}) {
    const midTurn = opts.midTurn !== false && this.trace && this.state.status === "connected";
    if (midTurn && !this.state.modelSpeaking) {
      this._serial("turn", () => this._turn({ ...SCRIPT.generic })).catch(() => {});
      await this._until(() => this.state.modelSpeaking || this._cancelled, 10000);
      await this._sleep(2 * CHUNK_MS * 0.4);
    }
    const pendingAtClose = this.trace ? this.trace.pending : 0;
    const ids = this._ids();
    this._cancelled = true;
    this._set({ status: "closed", closedAt: Date.now(), modelSpeaking: false });
    if (opts.navigate) {
      globalThis.location.href = "about:blank";
      return { ...ids, pendingAtClose };
    }
    const win = this._window;
    if (win && typeof win.dispatchEvent === "function") {
      const ev =
        typeof PageTransitionEvent !== "undefined"
          ? new PageTransitionEvent("pagehide", { persisted: false })
          : new Event("pagehide");
      win.dispatchEvent(ev);
    } else if (this.trace) {
      this.trace.sendBeaconNow(true);
    }
    if (this.client && this.client.session) this.client.disconnect("tab closed");
    return { ...ids, pendingAtClose, beacons: this.trace ? this.trace.stats.beacons : 0 };
  }

  /**
   * The whole story: start, turn 1 with a tool call, turn 2 interrupted by a barge-in, a reconnect (goAway +
   * resumption), turn 3 answers the barge-in, end. `{end: false}` leaves the session open;
   * `{closeAbruptly: true}` closes the tab in the middle of turn 3 instead of ending.
   */
  async runScripted(opts = {}) {
    await this.start(opts);
    await this.callTool();
    await this.interrupt({ answer: false });
    await this.reconnect();
    if (opts.closeAbruptly) {
      const r = await this.closeTabAbruptly({ midTurn: true });
      return { ...r, summary: null };
    }
    await this.turn({ skipUser: true, ...SCRIPT.tomorrow });
    const summary = opts.end === false ? null : await this.end("completed");
    return { ...this._ids(), summary };
  }

  /** Sends whatever is queued now; resolves to the client's counters. */
  async flush() {
    if (this.trace) await this.trace.flush();
    return this.stats;
  }

  /** Resolves when no action is running. */
  waitIdle() {
    return this._chain.then(() => this.state);
  }

  /**
   * Client-side fault injection for the next `n` event/end requests: "network" (fails before reaching the
   * gateway), "lost" (reaches the gateway, the response is lost: the retry is a duplicate), or an HTTP status
   * (answered here without reaching the gateway), with optional Retry-After seconds.
   */
  failRequests(n = 1, kind = "network", retryAfterS) {
    for (let i = 0; i < n; i++) this.faults.push({ kind, retryAfterS });
    return this.faults.length;
  }

  get stats() {
    return this.trace ? { ...this.trace.stats, pending: this.trace.pending, state: this.trace.state } : null;
  }

  /** Calls `fn(state)` after every change; returns an unsubscribe function. */
  subscribe(fn) {
    this._listeners.add(fn);
    return () => this._listeners.delete(fn);
  }

  // ------------------------------------------------------------ the script

  async _turn(opts) {
    this._need();
    const turnNo = this.state.turns + 1;
    if (!opts.skipUser) await this._userSays(opts.question ?? SCRIPT.generic.question);
    await this._sleep(250); // the model thinks
    if (opts.tool) {
      const spec = opts.tool === true ? SCRIPT.weather.tool : opts.tool;
      const id = `fc-${turnNo}-${Math.random().toString(36).slice(2, 8)}`;
      const answered = this.client.session.nextToolResponse();
      this._tool = spec;
      this._server({ toolCall: { functionCalls: [{ id, name: spec.name, args: spec.args }] } });
      this._set({ toolCalls: this.state.toolCalls + 1 });
      await answered;
      this._check();
      await this._sleep(200);
    }
    const r = await this._modelSays(opts.answer ?? SCRIPT.generic.answer, opts);
    this._set({ turns: this.state.turns + 1 });
    if (r.interrupted) {
      this._set({ interruptions: this.state.interruptions + 1 });
      if (r.answerBargeIn) await this._turn({ skipUser: true, ...SCRIPT.tomorrow });
    }
    return { turn: turnNo, interrupted: !!r.interrupted };
  }

  async _userSays(text, { alreadySpeaking = false } = {}) {
    if (!alreadySpeaking) this.tracer.userSpeechStart(); // client VAD
    const line = this._say("user", "");
    const words = text.split(" ");
    const pieces = [];
    for (let i = 0; i < words.length; i += 3) pieces.push(words.slice(i, i + 3).join(" ") + (i + 3 < words.length ? " " : ""));
    for (let i = 0; i < pieces.length; i++) {
      await this._sleep(180);
      this._check();
      this._server({ serverContent: { inputTranscription: { text: pieces[i], ...(i === pieces.length - 1 ? { finished: true } : {}) } } });
      this._appendSaid(line, pieces[i]);
    }
    await this._sleep(120);
    this.tracer.userSpeechEnd();
    this._speechMs = 180 * pieces.length + 120;
  }

  /** A Web Audio player when a person listens (speed 1, `audible`), if the browser lets audio play now. */
  async _audiblePlayer() {
    const Ctx = globalThis.AudioContext || globalThis.webkitAudioContext;
    if (!this.options.audible || this.options.speed !== 1 || !Ctx) return null;
    try {
      if (!this._audioContext || this._audioContext.state === "closed") this._audioContext = new Ctx();
      const ctx = this._audioContext;
      if (ctx.state !== "running") await Promise.race([ctx.resume(), this._sleep(500)]);
      // Suspended (no user gesture yet): its clock stands still, so playback would never end; keep time instead.
      return ctx.state === "running" ? new WebAudioStreamer(ctx) : null;
    } catch (_) {
      return null;
    }
  }

  /** The model answers `text`; when it was not cut, the action ends once its audio has played out. */
  async _modelSays(text, opts = {}) {
    const r = await this._modelSpeaks(text, opts);
    if (!r.interrupted && this.streamer) {
      await this._until(() => !this.streamer.isPlaying || this._cancelled, (r.audioMs || 0) + 10000);
    }
    return r;
  }

  async _modelSpeaks(text, opts = {}) {
    const words = text.split(" ");
    const voiceName = VOICE_OF.get(text);
    const voice = (this.options.voices && voiceName && this.options.voices[voiceName]) || null;
    const perChunkSamples = (24000 * CHUNK_MS) / 1000;
    const chunks = voice ? Math.max(1, Math.ceil(voice.length / perChunkSamples)) : Math.max(3, Math.ceil(words.length / 3));
    const tone = voice ? null : pcmChunk(CHUNK_MS);
    const audioOf = (i) => (voice ? pcmBase64(voice.subarray(i * perChunkSamples, (i + 1) * perChunkSamples)) : tone);
    const line = this._say("model", "");
    let interruptRequest = null;
    const interruptPromise = new Promise((resolve) => {
      this._interruptNow = (req) => {
        interruptRequest = req;
        resolve();
      };
    });
    this._set({ modelSpeaking: true });
    try {
      for (let i = 0; i < chunks; i++) {
        this._server({
          serverContent: { modelTurn: { parts: [{ inlineData: { mimeType: "audio/pcm;rate=24000", data: audioOf(i) } }] } },
        });
        // The words spread over the audio, as the output transcription follows the speech.
        const piece = words.slice(Math.floor((i * words.length) / chunks), Math.floor(((i + 1) * words.length) / chunks)).join(" ");
        if (piece) {
          this._server({ serverContent: { outputTranscription: { text: (i ? " " : "") + piece } } });
          this._appendSaid(line, (i ? " " : "") + piece);
        }
        const due = opts.interruptAfterChunks != null && i + 1 >= opts.interruptAfterChunks;
        await Promise.race([this._sleep(CHUNK_MS * 0.4), interruptPromise]);
        this._check();
        if (due || interruptRequest) {
          const req = interruptRequest || {};
          // Barge-in: the user talks over the model (client VAD), Gemini's server VAD interrupts it.
          this.tracer.userSpeechStart();
          await this._sleep(150);
          // Usage for the cut generation rides on the interrupted message, so it lands in this turn.
          this._server({ serverContent: { interrupted: true }, usageMetadata: this._usage(i + 1) });
          this._set({ modelSpeaking: false });
          this._appendSaid(line, " …", true);
          await this._userSays(req.bargeIn ?? opts.bargeIn ?? SCRIPT.history.bargeIn, { alreadySpeaking: true });
          if (req.resolve) {
            const answer = req.answer !== false;
            // The caller of a live interrupt() waits for the answer too.
            this._interruptNow = null;
            if (answer) {
              await this._sleep(200);
              await this._modelSays(SCRIPT.tomorrow.answer, {});
              this._set({ turns: this.state.turns + 1 });
            }
            req.resolve({ interrupted: true });
          }
          return { interrupted: true, answerBargeIn: false };
        }
      }
      this._server({ serverContent: { generationComplete: true } });
      await this._sleep(60);
      this._server({ serverContent: { turnComplete: true }, usageMetadata: this._usage(chunks) });
      this._server({
        sessionResumptionUpdate: { newHandle: `resume-${Math.random().toString(36).slice(2, 10)}`, resumable: true },
      });
      return { interrupted: false, audioMs: chunks * CHUNK_MS };
    } finally {
      this._interruptNow = null;
      this._set({ modelSpeaking: false });
    }
  }

  _usage(chunksSent) {
    const inAudio = Math.round(((this._speechMs || 1500) / 1000) * AUDIO_TOKENS_PER_S);
    const outAudio = Math.round(((chunksSent * CHUNK_MS) / 1000) * AUDIO_TOKENS_PER_S);
    const prompt = this._promptTokens + inAudio;
    this._promptTokens = prompt + outAudio;
    const usage = {
      promptTokenCount: prompt,
      responseTokenCount: outAudio,
      totalTokenCount: prompt + outAudio,
      promptTokensDetails: [
        { modality: "TEXT", tokenCount: prompt - inAudio },
        { modality: "AUDIO", tokenCount: inAudio },
      ],
      responseTokensDetails: [{ modality: "AUDIO", tokenCount: outAudio }],
    };
    return usage;
  }

  async _runTools(toolCall) {
    for (const fc of toolCall.functionCalls || []) {
      const spec = this._tool && this._tool.name === fc.name ? this._tool : SCRIPT.weather.tool;
      // The app's backend call joins the session's trace through the traceparent header.
      if (this.options.toolFetchUrl) {
        try {
          await this.trace.traceFetch(this.options.toolFetchUrl, { method: "GET" });
        } catch (_) {
          /* the demo's backend call is optional */
        }
      }
      await this._sleep(300);
      if (this._cancelled || !this.client.session) return;
      this.client.sendToolResponse({ functionResponses: [{ id: fc.id, name: fc.name, response: { output: spec.result } }] });
    }
  }

  // ------------------------------------------------------------ plumbing

  _server(message) {
    if (this._cancelled || !this.client || !this.client.session) return;
    this.client.session.serverSend(message);
  }

  _ids() {
    return { sessionId: this.state.sessionId, traceId: this.state.traceId };
  }

  _need() {
    this._check();
    if (!this.trace || !this.client || !this.client.session) throw new Error("start the session first");
  }

  _check() {
    if (this._cancelled) throw new Cancelled("the tab was closed");
  }

  _serial(name, fn) {
    const run = async () => {
      this._set({ busy: true, action: name });
      try {
        return await fn();
      } finally {
        this._set({ busy: false, action: null });
      }
    };
    const p = this._chain.then(run, run);
    this._chain = p.catch(() => {});
    return p;
  }

  _sleep(ms) {
    return new Promise((resolve) => this._setTimeout(resolve, ms / (this.options.speed || 1)));
  }

  async _until(cond, maxMs) {
    for (let waited = 0; !cond() && waited < maxMs; waited += 20) await this._sleep(20);
  }

  _once(event) {
    return new Promise((resolve) => {
      const t = this._setTimeout(resolve, 2000);
      this.client.once(event, () => {
        this._clearTimeout(t);
        resolve();
      });
    });
  }

  async _fetch(url, init) {
    const isIngest = /\/(events|end)(\?|$)/.test(String(url));
    const fault = isIngest ? this.faults.shift() : undefined;
    if (fault) {
      this._set({ lastFault: fault.kind });
      if (fault.kind === "network") throw new TypeError("Failed to fetch (injected)");
      if (fault.kind === "lost") {
        await (this.options.fetch || globalThis.fetch)(url, init).catch(() => {});
        throw new TypeError("response lost (injected)");
      }
      const status = Number(fault.kind) || 503;
      const headers = { "content-type": "application/problem+json" };
      if (fault.retryAfterS != null) headers["retry-after"] = String(fault.retryAfterS);
      return new Response(JSON.stringify({ title: "injected", status }), { status, headers });
    }
    return (this.options.fetch || globalThis.fetch)(url, init);
  }

  _say(who, text) {
    const line = { who, text, interrupted: false };
    this.state.transcript.push(line);
    this.state.transcriptRev = (this.state.transcriptRev || 0) + 1;
    this._notify();
    return line;
  }

  _appendSaid(line, text, interrupted = false) {
    line.text += text;
    if (interrupted) line.interrupted = true;
    this.state.transcriptRev = (this.state.transcriptRev || 0) + 1;
    this._notify();
  }

  _onTraceEvent(e) {
    this.state.events.push({ type: e.type, id: e.id, seq: e.seq, ts: e.ts });
    this._notify();
  }

  _onTraceError(err) {
    this.state.errors.push({ kind: err.kind, message: err.message, status: err.status, retrying: !!err.retrying });
    this._notify();
  }

  _set(patch) {
    Object.assign(this.state, patch);
    this._notify();
  }

  _notify() {
    for (const fn of this._listeners) {
      try {
        fn(this.state);
      } catch (_) {
        /* UI only */
      }
    }
  }
}

export { SCRIPT, Cancelled };

// ---------------------------------------------------------------- the page

function mountPage() {
  const params = new URLSearchParams(globalThis.location.search);
  const num = (k) => (params.has(k) && Number.isFinite(Number(params.get(k))) ? Number(params.get(k)) : undefined);
  const traceOptions = {};
  if (num("batch") !== undefined) traceOptions.maxBatchEvents = num("batch");
  if (num("flush") !== undefined) traceOptions.flushIntervalMs = num("flush");
  if (params.get("endOnHidden") === "1") traceOptions.endOnHidden = true;
  const session = new DemoSession({
    gatewayUrl: params.get("gateway") || "",
    speed: num("speed") || 1,
    traceOptions,
    toolFetchUrl: params.get("toolFetch") ?? null,
    voiceUrl: new URL("./demo-voice", import.meta.url).href,
    audible: params.get("mute") !== "1",
    recordAudio: params.get("record") === "1",
    getMicrophone: () => navigator.mediaDevices.getUserMedia({ audio: true }),
  });

  const $ = (id) => document.getElementById(id);
  const busyButtons = ["btn-start", "btn-turn", "btn-tool", "btn-reconnect", "btn-end", "btn-scripted"];
  const log = (text, cls = "") => {
    const li = document.createElement("li");
    li.textContent = text;
    if (cls) li.className = cls;
    $("log").prepend(li);
    while ($("log").children.length > 300) $("log").lastChild.remove();
  };
  const run = (label, fn) => async () => {
    try {
      const r = await fn();
      if (r !== undefined) log(`${label}: ${JSON.stringify(r).slice(0, 400)}`, "ok");
    } catch (e) {
      log(`${label}: ${e.message}`, "err");
    }
  };
  let shownEvents = 0;
  let shownRev = -1;
  let shownErrors = 0;
  const render = (s) => {
    $("status").textContent = s.status + (s.action ? ` (${s.action})` : "");
    $("status").dataset.status = s.status;
    $("session-id").textContent = s.sessionId || "–";
    $("trace-id").textContent = s.traceId || "–";
    $("ui-link").href = s.sessionId ? `/ui?session=${encodeURIComponent(s.sessionId)}` : "/ui";
    $("counts").textContent = `turns ${s.turns} · interruptions ${s.interruptions} · tool calls ${s.toolCalls} · connections ${s.connections}`;
    const st = session.stats;
    $("stats").textContent = st
      ? `recorded ${st.recorded} · accepted ${st.accepted} · duplicates ${st.duplicates} · pending ${st.pending} · retries ${st.retries} · dropped ${st.dropped} · beacons ${st.beacons}`
      : "–";
    if (s.events.length < shownEvents) shownEvents = 0; // a new session
    if (s.errors.length < shownErrors) shownErrors = 0;
    for (; shownEvents < s.events.length; shownEvents++) {
      const e = s.events[shownEvents];
      log(`#${e.seq} ${e.type}`, "event");
    }
    for (; shownErrors < s.errors.length; shownErrors++) {
      const e = s.errors[shownErrors];
      log(`client ${e.kind}${e.status ? ` ${e.status}` : ""}: ${e.message}${e.retrying ? " (retrying)" : ""}`, "err");
    }
    if (s.transcriptRev !== shownRev) {
      shownRev = s.transcriptRev;
      $("transcript").replaceChildren(
        ...s.transcript
          .filter((t) => t.text)
          .map((t) => {
            const p = document.createElement("p");
            p.className = t.who + (t.interrupted ? " interrupted" : "");
            p.textContent = t.text;
            return p;
          }),
      );
      $("transcript").scrollTop = $("transcript").scrollHeight;
    }
    for (const id of busyButtons) $(id).disabled = s.busy || s.status === "closed";
    $("btn-interrupt").disabled = s.status === "closed" || (s.busy && !s.modelSpeaking);
    document.documentElement.dataset.demoStatus = s.status;
  };
  session.subscribe(render);

  $("btn-start").onclick = run("start", () => session.start());
  $("btn-turn").onclick = run("turn", () => session.turn());
  $("btn-tool").onclick = run("tool call", () => session.callTool());
  $("btn-interrupt").onclick = run("interrupt", () => session.interrupt());
  $("btn-reconnect").onclick = run("reconnect", () => session.reconnect());
  $("btn-end").onclick = run("end", () => session.end("completed"));
  $("btn-close").onclick = run("close tab", () => session.closeTabAbruptly({ navigate: $("chk-navigate").checked }));
  $("btn-scripted").onclick = run("scripted", () => session.runScripted());
  $("btn-fail").onclick = () => log(`next ${session.failRequests(3, "503", 0)} ingest requests will fail with 503`);

  const api = {
    ready: true,
    session,
    get state() {
      return session.state;
    },
    get stats() {
      return session.stats;
    },
    /** The call recording (`?record=1`): its state and counters; `await demo.recording.done` after end(). */
    get recording() {
      const r = session.trace && session.trace.recorder;
      return r ? { state: r.state, mimeType: r.mimeType, stats: { ...r.stats }, done: r.done.then(() => r.state) } : null;
    },
    start: (o) => session.start(o),
    turn: (o) => session.turn(o),
    callTool: (o) => session.callTool(o),
    interrupt: (o) => session.interrupt(o),
    reconnect: () => session.reconnect(),
    end: (reason) => session.end(reason),
    closeTabAbruptly: (o) => session.closeTabAbruptly(o),
    runScripted: (o) => session.runScripted(o),
    flush: () => session.flush(),
    waitIdle: () => session.waitIdle(),
    failRequests: (n, kind, retryAfterS) => session.failRequests(n, kind, retryAfterS),
    configure(o = {}) {
      if (o.speed) session.options.speed = o.speed;
      if (o.gatewayUrl !== undefined) session.options.gatewayUrl = o.gatewayUrl;
      if (o.traceOptions) Object.assign(session.options.traceOptions, o.traceOptions);
      if (o.toolFetchUrl !== undefined) session.options.toolFetchUrl = o.toolFetchUrl;
      return { ...session.options };
    },
  };
  globalThis.demo = api;
  render(session.state);
  document.documentElement.dataset.demoReady = "1";
  if (params.get("autorun") === "1") {
    api.lastRun = session.runScripted().then(
      (r) => {
        api.result = r;
        document.documentElement.dataset.demoResult = JSON.stringify(r);
        return r;
      },
      (e) => {
        api.result = { error: e.message };
        return api.result;
      },
    );
  }
}

if (typeof document !== "undefined" && typeof window !== "undefined" && document.getElementById("demo-root")) {
  mountPage();
}
