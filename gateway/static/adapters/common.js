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
