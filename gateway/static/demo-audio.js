// The demo's players and voices: a clock-only player and a Web Audio one, both shaped like
// live-api-web-console's AudioStreamer, and the scripted answers' speech files decoded to PCM.

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
