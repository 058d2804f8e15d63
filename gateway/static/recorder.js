/**
 * recorder.js: records a voice call in stereo for the Voice Trace Gateway (README "Recordings").
 *
 * The user's microphone goes to the left channel, the model's audio to the right, mixed with Web Audio
 * (each side downmixed to mono → ChannelMergerNode → MediaStreamAudioDestinationNode) and encoded by the
 * browser's own MediaRecorder: Opus in WebM where available (Chrome, Edge, Firefox; Safari 18.4+), else
 * Opus in Ogg or MP4, else what the browser has (older Safari: AAC in MP4, `audio/mp4`). The gateway takes
 * all of these.
 *
 * Time: the recording's 0 is the client clock (`client.now()`) when MediaRecorder started; the first chunk
 * carries it (`start`) and is cut after `firstChunkMs`, so the gateway can place every turn on the recording.
 * Later chunks follow every `chunkMs`; a closed tab loses at most the last one.
 *
 * Uploads go one at a time, in order, numbered from 0, retried with backoff like events (the gateway answers
 * a repeated chunk again and never stores it twice). Memory is bounded: chunks wait only while the gateway is
 * unreachable, and past `maxPendingBytes` the recorder stops (and reports) rather than grow. Nothing here
 * throws into the app or waits inside the audio path: failures go to the client's `onError`.
 *
 * Model audio, as the adapters see it:
 *   - `feedModelPcm(int16Array, sampleRate)`: PCM chunks (Gemini Live 24 kHz, OpenAI Realtime WebSocket
 *     `response.output_audio.delta` decoded from base64), scheduled back to back as a player would;
 *     `clearModelAudio()` drops what is scheduled (the model was interrupted and the app flushed its player);
 *   - `addModelTrack(trackOrStream)`: a MediaStreamTrack or MediaStream (the OpenAI WebRTC remote track).
 *     Chrome only lets a remote WebRTC track into Web Audio while the track also plays in a media element.
 * The user's side: the `microphone` option of `VoiceTrace.start`, or `addUserStream(stream)` later.
 *
 * Create the client (and so this recorder) from the user's gesture that starts the call, as the microphone
 * needs anyway: browsers start an AudioContext made outside a gesture suspended.
 */

export const RECORDER_DEFAULTS = Object.freeze({
  chunkMs: 4000,
  firstChunkMs: 1000,
  audioBitsPerSecond: 64000,
  maxPendingBytes: 8 * 1024 * 1024,
  maxAttempts: 8,
  mimeTypes: [
    "audio/webm;codecs=opus",
    "audio/ogg;codecs=opus",
    "audio/mp4;codecs=opus",
    "audio/mp4;codecs=mp4a.40.2",
    "audio/mp4",
    "audio/webm",
  ],
});

const RETRYABLE = (status) => status === 408 || status === 425 || status === 429 || status >= 500;

/** Picks the first type this browser's MediaRecorder can write; "" lets the browser choose. */
export function pickMimeType(candidates, MediaRecorderImpl = globalThis.MediaRecorder) {
  if (!MediaRecorderImpl || typeof MediaRecorderImpl.isTypeSupported !== "function") return "";
  for (const type of candidates) {
    try {
      if (MediaRecorderImpl.isTypeSupported(type)) return type;
    } catch (_) {
      /* next */
    }
  }
  return "";
}

export class CallRecorder {
  /**
   * @param client the VoiceTrace client: its session (id, token, the answer's `recording`), clock and reports
   * @param options `recorder` (overrides of RECORDER_DEFAULTS), `microphone` (MediaStream),
   *                `AudioContext` / `MediaRecorder` (injectable)
   */
  constructor(client, options = {}) {
    this.client = client;
    this.options = { ...RECORDER_DEFAULTS, ...(options.recorder || {}) };
    const g = globalThis;
    this._AudioContext = options.AudioContext ?? g.AudioContext ?? g.webkitAudioContext;
    this._MediaRecorder = options.MediaRecorder ?? g.MediaRecorder;
    this.state = "waiting"; // waiting → recording → stopping → stopped; or off / failed
    this.mimeType = null;
    this.startedAt = null; // client ms epoch of the recording's 0
    this.stats = { chunks: 0, uploaded: 0, bytes: 0, retries: 0, pendingBytes: 0 };
    this._pending = []; // [{n, blob}] in order
    this._uploading = false;
    this._next = 0;
    this._stopRequested = false;
    this._modelCursor = 0;
    this._modelSources = new Set();
    this._sources = [];
    this.done = new Promise((resolve) => {
      this._doneResolve = resolve;
    });
    this._safe(() => this._buildGraph());
    if (options.microphone) this.addUserStream(options.microphone);
    Promise.resolve(client.ready).then(
      () => this._safe(() => this._begin()),
      () => this._finish("off"),
    );
  }

  // ---------------------------------------------------------------- public API

  /** The user's side: a MediaStream with an audio track (the app's microphone stream). */
  addUserStream(stream) {
    this._safe(() => this._connect(stream, this._userBus));
  }

  /** The model's side as a track or stream (OpenAI WebRTC's remote track). */
  addModelTrack(trackOrStream) {
    this._safe(() => {
      const stream = trackOrStream instanceof MediaStream ? trackOrStream : new MediaStream([trackOrStream]);
      this._connect(stream, this._modelBus);
    });
  }

  /** The model's side as PCM (Int16Array, or Float32Array in -1..1), played into the recording back to back. */
  feedModelPcm(samples, sampleRate = 24000) {
    this._safe(() => {
      const ctx = this._ctx;
      if (!ctx || !samples || !samples.length || this.state === "stopped" || this.state === "off") return;
      const buffer = ctx.createBuffer(1, samples.length, sampleRate);
      const data = buffer.getChannelData(0);
      if (samples instanceof Float32Array) data.set(samples);
      else for (let i = 0; i < samples.length; i++) data[i] = samples[i] / 32768;
      const source = ctx.createBufferSource();
      source.buffer = buffer;
      source.connect(this._modelBus);
      const at = Math.max(ctx.currentTime, this._modelCursor);
      source.start(at);
      this._modelCursor = at + buffer.duration;
      this._modelSources.add(source);
      source.onended = () => this._modelSources.delete(source);
    });
  }

  /** Drops model audio scheduled but not yet played (after an interruption). */
  clearModelAudio() {
    this._safe(() => {
      for (const source of this._modelSources) {
        try {
          source.stop();
        } catch (_) {
          /* already ended */
        }
      }
      this._modelSources.clear();
      this._modelCursor = 0;
    });
  }

  /** Stops recording; resolves (as `done` does) once the last chunk is uploaded or given up. */
  stop() {
    this._safe(() => {
      this._stopRequested = true;
      if (this.state === "recording") {
        this.state = "stopping";
        this._clearFirstTimer();
        this._recorder.stop(); // its last dataavailable, then onstop
      } else if (this.state === "waiting") {
        this._finish("off");
      }
    });
    return this.done;
  }

  // ---------------------------------------------------------------- recording

  _buildGraph() {
    if (!this._AudioContext || !this._MediaRecorder) throw new Error("this browser cannot record (Web Audio or MediaRecorder missing)");
    const ctx = new this._AudioContext();
    this._ctx = ctx;
    const mono = (node) => {
      node.channelCount = 1;
      node.channelCountMode = "explicit";
      node.channelInterpretation = "speakers";
      return node;
    };
    this._userBus = mono(ctx.createGain());
    this._modelBus = mono(ctx.createGain());
    const merger = ctx.createChannelMerger(2);
    this._userBus.connect(merger, 0, 0); // left: the user
    this._modelBus.connect(merger, 0, 1); // right: the model
    this._dest = ctx.createMediaStreamDestination();
    this._dest.channelCount = 2;
    merger.connect(this._dest);
    if (ctx.state === "suspended" && typeof ctx.resume === "function") ctx.resume().catch(() => {});
  }

  _connect(stream, bus) {
    if (!this._ctx || !stream) return;
    const source = this._ctx.createMediaStreamSource(stream);
    source.connect(bus);
    this._sources.push(source);
  }

  _begin() {
    const c = this.client;
    // A session the app's backend created (VoiceTrace.fromToken) passes its answer's `recording` as an option.
    const answer = (c.session && c.session.recording) || c.options.recording;
    if (this._stopRequested || c.state === "failed" || c.state === "ended" || !answer || !answer.enabled) {
      if (answer && !answer.enabled) c._report("recording_off", answer.reason || "the gateway does not record this session");
      this._finish("off");
      return;
    }
    if (!this._dest) {
      this._fail("this browser cannot record the call (Web Audio or MediaRecorder missing)");
      return;
    }
    const o = this.options;
    const mimeType = pickMimeType(o.mimeTypes, this._MediaRecorder);
    const rec = new this._MediaRecorder(this._dest.stream, {
      ...(mimeType ? { mimeType } : {}),
      audioBitsPerSecond: o.audioBitsPerSecond,
    });
    this._recorder = rec;
    rec.ondataavailable = (e) => this._safe(() => this._chunk(e.data));
    rec.onstop = () => this._safe(() => this._afterStop());
    rec.onerror = (e) => this._safe(() => this._fail(`MediaRecorder failed: ${e && e.error ? e.error.message : e}`));
    rec.start(o.chunkMs);
    this.startedAt = c.now();
    this.mimeType = rec.mimeType || mimeType || "audio/webm";
    this.state = "recording";
    // The first chunk early: it tells the gateway when the recording began, before the first turn ends.
    if (o.firstChunkMs > 0 && o.firstChunkMs < o.chunkMs) {
      this._firstTimer = c._setTimeout(() => {
        this._firstTimer = null;
        this._safe(() => {
          if (this.state === "recording" && rec.state === "recording") rec.requestData();
        });
      }, o.firstChunkMs);
    }
  }

  _chunk(blob) {
    if (!blob || !blob.size || this.state === "failed") return;
    if (this.stats.pendingBytes + blob.size > this.options.maxPendingBytes) {
      // A chunk cannot be skipped (the recording would have a hole): stop here, keep what was uploaded.
      this._fail(`recording stopped: ${this.stats.pendingBytes} bytes waiting for the gateway, the limit`);
      return;
    }
    this._pending.push({ n: this._next++, blob });
    this.stats.chunks++;
    this.stats.pendingBytes += blob.size;
    this._pump();
  }

  _afterStop() {
    this._stopped = true;
    this._release();
    if (!this._pending.length && !this._uploading) this._finish("stopped");
  }

  async _pump() {
    if (this._uploading) return;
    this._uploading = true;
    try {
      while (this._pending.length && this.state !== "failed") {
        const item = this._pending[0];
        const ok = await this._upload(item);
        if (!ok) return;
        this._pending.shift();
        this.stats.pendingBytes -= item.blob.size;
        this.stats.uploaded++;
        this.stats.bytes += item.blob.size;
      }
    } finally {
      this._uploading = false;
      if (this._stopped && !this._pending.length && this.state !== "failed") this._finish("stopped");
    }
  }

  async _upload(item) {
    const c = this.client;
    const params = new URLSearchParams({ chunk: String(item.n) });
    if (item.n === 0) params.set("start", String(this.startedAt));
    const url = `${c.gatewayUrl}/v1/sessions/${encodeURIComponent(c.sessionId)}/recording?${params}`;
    for (let attempt = 1; ; attempt++) {
      let res = null;
      try {
        res = await c._fetch(url, {
          method: "POST",
          headers: { Authorization: `Bearer ${c.token}`, "Content-Type": this.mimeType },
          body: item.blob,
          credentials: "omit",
        });
      } catch (_) {
        res = null;
      }
      if (res && res.ok) return true;
      if (res && !RETRYABLE(res.status)) {
        let detail = `HTTP ${res.status}`;
        try {
          detail = (await res.json()).detail || detail;
        } catch (_) {
          /* not JSON */
        }
        this._fail(`recording chunk ${item.n} refused: ${detail}`, res.status);
        return false;
      }
      if (attempt >= this.options.maxAttempts) {
        this._fail(`recording chunk ${item.n} not delivered after ${attempt} attempts`, res ? res.status : null);
        return false;
      }
      this.stats.retries++;
      await new Promise((resolve) => c._setTimeout(resolve, c._retryDelay(attempt, res)));
    }
  }

  _fail(message, status) {
    if (this.state === "failed") return;
    this.state = "failed"; // first: stopping MediaRecorder below hands over one more chunk, which is dropped
    this.client._report("recording_failed", message, status ?? null);
    this._pending = [];
    this.stats.pendingBytes = 0;
    try {
      if (this._recorder && this._recorder.state !== "inactive") this._recorder.stop();
    } catch (_) {
      /* already stopped */
    }
    this._release();
    this._finish("failed");
  }

  _finish(state) {
    if (!["stopped", "off", "failed"].includes(this.state)) this.state = state;
    if (state === "off") this._release();
    this._doneResolve(this);
  }

  _release() {
    this._clearFirstTimer();
    for (const source of this._sources) {
      try {
        source.disconnect();
      } catch (_) {
        /* gone */
      }
    }
    this._sources = [];
    this.clearModelAudio();
    if (this._ctx && this._ctx.state !== "closed") this._ctx.close().catch(() => {});
  }

  _clearFirstTimer() {
    if (this._firstTimer) {
      this.client._clearTimeout(this._firstTimer);
      this._firstTimer = null;
    }
  }

  _safe(fn) {
    try {
      return fn();
    } catch (e) {
      try {
        this.client._report("recording_failed", e);
      } catch (_) {
        /* never into the app */
      }
      return undefined;
    }
  }
}

export default CallRecorder;
