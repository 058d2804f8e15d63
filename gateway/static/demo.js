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
 * The fake model is in demo-model.js, the players and voices in demo-audio.js, the page in demo-page.js, which
 * exposes the session as `window.demo` for automation (see DemoSession's methods, `demo.state`, and the README).
 */

import { VoiceTrace } from "./voice-trace.js";
import { attachGeminiLive } from "./adapters/gemini-live.js";
import { FakeGenAILiveClient, pcmChunk } from "./demo-model.js";
import { FakeAudioStreamer, WebAudioStreamer, loadVoices, pcmBase64 } from "./demo-audio.js";

// Its parts, for Node tests that run the same scenario without a browser.
export { Emitter, FakeGenAILiveClient, pcmChunk } from "./demo-model.js";
export { FakeAudioStreamer, VOICES, WebAudioStreamer, loadVoices, pcmBase64 } from "./demo-audio.js";

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
