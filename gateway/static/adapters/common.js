// Shared by the adapters: an adapter must never throw into the app, whatever the provider sends it.

/** A `record(type, fields, ts)` that goes quiet once `state.detached` and reports its own failures. */
export function makeRecorder(trace, state, onInternalError) {
  return function record(type, fields, ts) {
    if (state.detached) return null;
    try {
      return trace.record(type, fields, ts != null ? { ts } : undefined);
    } catch (e) {
      if (onInternalError) onInternalError(e);
      return null;
    }
  };
}

/** Wraps a handler so that an exception inside it is reported, not thrown into the caller. */
export function makeGuard(onInternalError) {
  return function guard(fn) {
    return function guarded(...args) {
      try {
        return fn.apply(this, args);
      } catch (e) {
        try {
          if (onInternalError) onInternalError(e);
        } catch (_) {
          /* never into the app */
        }
        return undefined;
      }
    };
  };
}

/** Reports a failure to hook a client (never thrown), and makes `detach()` undo every hook in reverse. */
export function completeAttach(adapter, undo, error, onError) {
  if (error !== undefined && typeof onError === "function") {
    try {
      onError(error);
    } catch (_) {
      /* ignore */
    }
  }
  const stopRecording = adapter.detach;
  adapter.detach = () => {
    stopRecording();
    for (const u of undo.splice(0).reverse()) {
      try {
        u();
      } catch (_) {
        /* ignore */
      }
    }
  };
  return adapter;
}

/** The adapter's clock: the app's `now` option, else the trace client's, else Date.now; never throws. */
export function makeClock(opts, trace) {
  return () => {
    try {
      if (typeof opts.now === "function") return opts.now();
      if (trace && typeof trace.now === "function") return trace.now();
    } catch (_) {
      /* fall through */
    }
    return Date.now();
  };
}

/**
 * Says once, loudly, that an adapter cannot see what it needs (so the trace would be empty or wrong): through
 * the trace client's onError (kind "adapter") and the adapter's own onError, and a console warning.
 */
export function makeWarner(trace, state, onError) {
  const said = new Set();
  return function warn(code, message) {
    if (said.has(code)) return;
    said.add(code);
    const text = `[voice-trace] ${message}`;
    try {
      if (trace && typeof trace.reportProblem === "function") trace.reportProblem("adapter", text, { code });
    } catch (_) {
      /* ignore */
    }
    try {
      if (typeof onError === "function") onError(new Error(text));
    } catch (_) {
      /* ignore */
    }
    try {
      if (typeof console !== "undefined" && console.warn) console.warn(text);
    } catch (_) {
      /* ignore */
    }
    state.warnings = [...(state.warnings || []), code];
  };
}

/**
 * Collects streamed transcript chunks so one event goes out per utterance instead of one per delta.
 * `flush()` records what was collected (at the first chunk's time) and empties it.
 */
export function makeTextBuffer(record, type, now) {
  let text = "";
  let ts = null;
  let lastTs = null;
  let final;
  return {
    add(chunk, isFinal) {
      if (typeof chunk !== "string" || !chunk) return;
      if (ts === null) ts = now();
      lastTs = now();
      text += chunk;
      if (typeof isFinal === "boolean") final = isFinal;
    },
    /** `at`: "first" (default) or "last" chunk's time for the event. */
    flush(at = "first") {
      if (ts === null) return;
      const fields = { text };
      if (final !== undefined) fields.final = final;
      const when = at === "last" ? lastTs : ts;
      text = "";
      ts = null;
      lastTs = null;
      final = undefined;
      record(type, fields, when);
    },
    get pending() {
      return ts !== null;
    },
  };
}

/**
 * The model's audio into the call recording (recorder.js), as the adapter sees it: PCM chunks, or a remote track.
 * Quiet when the app did not ask to record (`trace.recorder` is null) or passed `recordModelAudio: false`; the
 * recorder itself ignores audio once it is off, stopped or failed; a detached adapter feeds nothing. Never throws
 * into the adapter.
 */
export function makeModelAudioFeed(trace, opts, state, onInternalError) {
  const recorder = () => {
    if (opts.recordModelAudio === false || state.detached) return null;
    try {
      const r = trace && trace.recorder;
      return r && typeof r.feedModelPcm === "function" ? r : null;
    } catch (_) {
      return null;
    }
  };
  const safe = (fn) => {
    try {
      fn();
    } catch (e) {
      if (onInternalError) onInternalError(e);
    }
  };
  const tracks = new WeakSet();
  return {
    get active() {
      return recorder() !== null;
    },
    /** PCM16 little-endian mono (ArrayBuffer, a typed array over one, or an Int16Array) at `rate` Hz. */
    pcm(data, rate) {
      const r = recorder();
      if (!r) return;
      safe(() => {
        const samples = int16Of(data);
        if (samples && samples.length) r.feedModelPcm(samples, rate);
      });
    },
    /** base64 PCM16 (OpenAI Realtime WebSocket deltas, Gemini inlineData). */
    base64(b64, rate) {
      const r = recorder();
      if (!r || typeof b64 !== "string" || !b64) return;
      safe(() => {
        const samples = pcm16FromBase64(b64);
        if (samples.length) r.feedModelPcm(samples, rate);
      });
    },
    /** The app flushed its player (an interruption): what was scheduled but not yet played goes too. */
    clear() {
      const r = recorder();
      if (r && typeof r.clearModelAudio === "function") safe(() => r.clearModelAudio());
    },
    /** A remote audio track (OpenAI WebRTC), added once. */
    track(t) {
      const r = recorder();
      if (!r || !t || tracks.has(t) || typeof r.addModelTrack !== "function") return;
      tracks.add(t);
      safe(() => r.addModelTrack(t));
    },
  };
}

/** Int16 samples over PCM16 LE bytes; copies only when the bytes are not 2-aligned. */
export function int16Of(data) {
  if (!data) return null;
  if (data instanceof Int16Array) return data;
  if (data instanceof ArrayBuffer) return new Int16Array(data, 0, data.byteLength >> 1);
  if (ArrayBuffer.isView(data)) {
    const n = data.byteLength >> 1;
    if (data.byteOffset % 2 === 0) return new Int16Array(data.buffer, data.byteOffset, n);
    return new Int16Array(new Uint8Array(data.buffer, data.byteOffset, n * 2).slice().buffer);
  }
  return null;
}

export function pcm16FromBase64(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length & ~1);
  for (let i = 0; i < bytes.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Int16Array(bytes.buffer);
}
