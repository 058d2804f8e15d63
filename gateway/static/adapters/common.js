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
