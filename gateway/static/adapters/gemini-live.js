/**
 * Gemini Live adapter for voice-trace.js.
 *
 * Turns what a Gemini Live session does into the gateway's event catalogue (DESIGN §4).
 *
 *   import { VoiceTrace } from "/static/voice-trace.js";
 *   import { attachGeminiLive } from "/static/adapters/gemini-live.js";
 *   const trace = await VoiceTrace.start({ gatewayUrl, provider: "gcp.gemini", model });
 *   const tracer = attachGeminiLive(client, trace, { audioStreamer });   // before client.connect(...)
 *   micVad.onStart = () => tracer.userSpeechStart();                    // client VAD / push-to-talk
 *
 * `client` is shaped like live-api-web-console's `GenAILiveClient`: an EventEmitter with the events open,
 * close, error, setupcomplete, toolcall, toolcallcancellation, interrupted, turncomplete, content, audio.
 * That client drops some server messages (usageMetadata, input/output transcription, generationComplete,
 * goAway, sessionResumptionUpdate, turnCompleteReason); the adapter sees them by wrapping the client's
 * `onmessage` instance method (which `connect()` hands to the SDK, so attach before connecting). Without such
 * a client, create the adapter with `createGeminiLiveAdapter(trace)` and feed it every raw server message with
 * `handleServerMessage(msg)` plus `onOpen` / `onClose` / `onError` from your WebSocket callbacks.
 *
 * Events emitted: connection.open / setup_complete / go_away / resumed / close, user.transcript,
 * user.speech_start / speech_end (from userSpeechStart/End), model.response_start (first server content of
 * a generation), model.audio_start (first audio chunk received), model.playback_start (first audio chunk
 * played: from the hooked audio streamer or `playbackStarted()`), model.transcript, model.generation_complete,
 * model.turn_complete {reason?}, model.interrupted {played_ms, generated_ms}, model.usage {usage},
 * tool.call / tool.result / tool.cancel, error.
 *
 * Nothing here throws into the app: every handler catches (an exception in an EventEmitter listener would
 * break the app's own listeners).
 */

import { completeAttach, makeClock, makeGuard, makeRecorder } from "./common.js";

const MAX_REASON = 1024;
const MAX_MESSAGE = 4096;

/** "12s", "1.5s", "500ms", {seconds, nanos} or a number of seconds → ms. */
export function durationToMs(d) {
  if (d == null) return undefined;
  if (typeof d === "number") return Math.max(0, d * 1000);
  if (typeof d === "object") {
    const s = Number(d.seconds || 0) + Number(d.nanos || 0) / 1e9;
    return Number.isFinite(s) ? Math.max(0, s * 1000) : undefined;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$/.exec(String(d));
  if (!m) return undefined;
  const n = parseFloat(m[1]);
  const unit = m[2] || "s";
  return Math.round(unit === "ms" ? n : unit === "m" ? n * 60000 : n * 1000);
}

/** Decoded byte length of a base64 string, without decoding it. */
export function base64Bytes(b64) {
  if (typeof b64 !== "string" || !b64) return 0;
  const len = b64.replace(/[\s]/g, "").length;
  const pad = b64.endsWith("==") ? 2 : b64.endsWith("=") ? 1 : 0;
  return Math.max(0, Math.floor((len * 3) / 4) - pad);
}

function byteLengthOf(data) {
  if (data == null) return 0;
  if (typeof data.byteLength === "number") return data.byteLength;
  if (typeof data.length === "number") return data.length;
  return 0;
}

function sampleRateOf(mimeType, fallback) {
  const m = /rate=(\d+)/.exec(String(mimeType || ""));
  return m ? parseInt(m[1], 10) : fallback;
}

function errorText(e) {
  if (e == null) return undefined;
  if (typeof e === "string") return e.slice(0, MAX_MESSAGE);
  if (e.message) return String(e.message).slice(0, MAX_MESSAGE);
  if (e.error && e.error.message) return String(e.error.message).slice(0, MAX_MESSAGE);
  try {
    return JSON.stringify(e).slice(0, MAX_MESSAGE);
  } catch (_) {
    return String(e).slice(0, MAX_MESSAGE);
  }
}

export function createGeminiLiveAdapter(trace, options = {}) {
  const opts = {
    outputSampleRate: 24000, // Gemini Live speaks PCM16 mono at 24 kHz
    connectionIdPrefix: "conn-",
    playbackDelayMs: null, // null: read the streamer's initialBufferTime (100 ms in live-api-web-console)
    ...options,
  };
  const now = makeClock(opts, trace);
  const onInternalError = typeof opts.onError === "function" ? opts.onError : null;

  const st = {
    connections: 0,
    connectionId: null,
    resumeHandle: null, // handle the current connection resumed with (reported at setup_complete)
    latestHandle: null, // newest resumable handle from sessionResumptionUpdate
    speaking: false,
    responding: false, // a generation is under way (from its first server content to turn end)
    audioStarted: false,
    generatedBytes: 0,
    playbackReported: false,
    playbackTs: null,
    pendingPlaybackTs: null, // the streamer started playing before the adapter saw the audio event
    turnCompleteReason: null,
  };

  const record = makeRecorder(trace, st, onInternalError);
  const guard = makeGuard(onInternalError);

  function resetGeneration() {
    st.responding = false;
    st.audioStarted = false;
    st.generatedBytes = 0;
    st.playbackReported = false;
    st.playbackTs = null;
    st.pendingPlaybackTs = null;
    st.turnCompleteReason = null;
  }

  function ensureResponse() {
    if (!st.responding) {
      st.responding = true;
      record("model.response_start");
    }
  }

  function generatedMs() {
    return Math.round((st.generatedBytes / 2 / opts.outputSampleRate) * 1000);
  }

  function audioReceived(bytes) {
    ensureResponse();
    if (!st.audioStarted) {
      st.audioStarted = true;
      record("model.audio_start");
      if (st.pendingPlaybackTs != null) {
        const ts = Math.max(st.pendingPlaybackTs, now());
        st.pendingPlaybackTs = null;
        adapter.playbackStarted(ts);
      }
    }
    st.generatedBytes += bytes;
  }

  const adapter = {
    /** Stops recording (callbacks captured earlier, e.g. by an open connection, become no-ops). */
    detach() {
      st.detached = true;
    },
    /** The newest session resumption handle the server sent (reconnect with it). */
    get resumptionHandle() {
      return st.latestHandle;
    },
    get state() {
      return { ...st, generatedMs: generatedMs() };
    },

    onOpen: guard(function onOpen(info) {
      st.connections++;
      st.connectionId = (info && info.connectionId) || `${opts.connectionIdPrefix}${st.connections}`;
      st.resumeHandle = (info && info.resumeHandle) || null;
      record("connection.open", { connection_id: st.connectionId });
    }),

    onSetupComplete: guard(function onSetupComplete() {
      record("connection.setup_complete");
      if (st.resumeHandle) {
        record("connection.resumed", { handle: String(st.resumeHandle).slice(0, 1024) });
        st.resumeHandle = null;
      }
    }),

    onClose: guard(function onClose(ev) {
      const fields = {};
      if (ev && typeof ev.code === "number") fields.code = ev.code;
      if (ev && ev.reason) fields.reason = String(ev.reason).slice(0, MAX_REASON);
      record("connection.close", fields);
      st.connectionId = null;
    }),

    onError: guard(function onError(ev, errorType = "connection_error") {
      const message = errorText(ev);
      record("error", { error_type: errorType, ...(message ? { message } : {}) });
    }),

    onAudio: guard(function onAudio(data) {
      audioReceived(byteLengthOf(data));
    }),

    onContent: guard(function onContent(content) {
      ensureResponse();
      const parts = (content && content.modelTurn && content.modelTurn.parts) || [];
      for (const p of parts) {
        if (p && typeof p.text === "string" && p.text && !p.thought) record("model.transcript", { text: p.text });
      }
    }),

    onToolCall: guard(function onToolCall(toolCall) {
      ensureResponse();
      const calls = (toolCall && toolCall.functionCalls) || [];
      calls.forEach((fc, i) => {
        const fields = { call_id: String(fc.id || `${fc.name || "call"}-${now()}-${i}`), name: String(fc.name || "unknown") };
        if (fc.args !== undefined) fields.arguments = fc.args;
        record("tool.call", fields);
      });
    }),

    onToolCallCancellation: guard(function onToolCallCancellation(c) {
      const ids = ((c && c.ids) || []).filter(Boolean).map(String);
      if (ids.length) record("tool.cancel", { call_ids: ids });
    }),

    onInterrupted: guard(function onInterrupted() {
      const t = now();
      const gen = generatedMs();
      const fields = { generated_ms: gen };
      if (st.playbackTs != null) fields.played_ms = Math.max(0, Math.min(gen, t - st.playbackTs));
      else fields.played_ms = 0;
      record("model.interrupted", fields);
      resetGeneration();
    }),

    onTurnComplete: guard(function onTurnComplete() {
      const fields = st.turnCompleteReason ? { reason: String(st.turnCompleteReason).slice(0, 256) } : {};
      record("model.turn_complete", fields);
      resetGeneration();
    }),

    /**
     * A raw Gemini Live server message (LiveServerMessage). With `{surfaced: true}` (what attachGeminiLive
     * uses) the parts the client already emits as events are left to those events; otherwise all is mapped.
     */
    handleServerMessage: guard(function handleServerMessage(msg, how) {
      if (!msg || typeof msg !== "object") return;
      const surfaced = !!(how && how.surfaced);
      if (msg.setupComplete && !surfaced) adapter.onSetupComplete();
      const sc = msg.serverContent;
      if (sc) {
        if (sc.turnCompleteReason) st.turnCompleteReason = sc.turnCompleteReason;
        const inT = sc.inputTranscription;
        if (inT && typeof inT.text === "string" && inT.text) {
          const fields = { text: inT.text };
          if (typeof inT.finished === "boolean") fields.final = inT.finished;
          record("user.transcript", fields);
        }
        if (sc.modelTurn) {
          if (surfaced) ensureResponse();
          else {
            const parts = sc.modelTurn.parts || [];
            const other = [];
            for (const p of parts) {
              const d = p && p.inlineData;
              if (d && String(d.mimeType || "").startsWith("audio/")) {
                opts.outputSampleRate = sampleRateOf(d.mimeType, opts.outputSampleRate);
                audioReceived(base64Bytes(d.data));
              } else if (p) other.push(p);
            }
            if (other.length || !parts.length) adapter.onContent({ modelTurn: { parts: other } });
          }
        }
        const outT = sc.outputTranscription;
        if (outT && typeof outT.text === "string" && outT.text) {
          ensureResponse();
          record("model.transcript", { text: outT.text });
        }
        if (sc.generationComplete) record("model.generation_complete");
      }
      if (msg.toolCall && !surfaced) adapter.onToolCall(msg.toolCall);
      if (msg.toolCallCancellation && !surfaced) adapter.onToolCallCancellation(msg.toolCallCancellation);
      // Usage usually rides on the turnComplete message: report it before the turn closes.
      if (msg.usageMetadata) record("model.usage", { usage: msg.usageMetadata });
      if (sc && !surfaced) {
        if (sc.interrupted) adapter.onInterrupted();
        else if (sc.turnComplete) adapter.onTurnComplete();
      }
      if (msg.goAway) {
        const ms = durationToMs(msg.goAway.timeLeft);
        record("connection.go_away", ms !== undefined ? { time_left_ms: ms } : {});
      }
      const sru = msg.sessionResumptionUpdate;
      if (sru && sru.newHandle && sru.resumable !== false) st.latestHandle = sru.newHandle;
    }),

    /** Client VAD or push-to-talk: the user started speaking. */
    userSpeechStart: guard(function userSpeechStart(ts) {
      if (st.speaking) return;
      st.speaking = true;
      record("user.speech_start", undefined, ts);
    }),

    /** Client VAD or push-to-talk: the user stopped speaking. */
    userSpeechEnd: guard(function userSpeechEnd(ts) {
      if (!st.speaking) return;
      st.speaking = false;
      record("user.speech_end", undefined, ts);
    }),

    /** A tool finished; `error` (string or object) when it failed. */
    toolResult: guard(function toolResult(callId, result, error) {
      const fields = { call_id: String(callId) };
      if (result !== undefined) fields.result = result;
      if (error !== undefined && error !== null) fields.error = typeof error === "string" ? error : errorText(error);
      record("tool.result", fields);
    }),

    /** What the app passes to `client.sendToolResponse` ({functionResponses: [{id, name, response}]}). */
    onToolResponse: guard(function onToolResponse(toolResponse) {
      const list = (toolResponse && toolResponse.functionResponses) || [];
      for (const fr of Array.isArray(list) ? list : [list]) {
        if (!fr || !fr.id) continue;
        const resp = fr.response;
        const hasOutput = resp && typeof resp === "object" && "output" in resp;
        const hasError = resp && typeof resp === "object" && "error" in resp && resp.error != null;
        adapter.toolResult(fr.id, hasOutput ? resp.output : hasError ? undefined : resp, hasError ? resp.error : undefined);
      }
    }),

    /**
     * The first audio chunk of the current generation started playing (call it from your audio player, or let
     * attachAudioStreamer do it). `ts` defaults to now. Reported once per generation.
     */
    playbackStarted: guard(function playbackStarted(ts) {
      if (st.playbackReported) return;
      const t = typeof ts === "number" ? ts : now();
      if (!st.audioStarted) {
        st.pendingPlaybackTs = t;
        return;
      }
      st.playbackReported = true;
      st.playbackTs = t;
      record("model.playback_start", undefined, t);
    }),

    /**
     * Hooks an audio player shaped like live-api-web-console's AudioStreamer (addPCM16, isPlaying,
     * initialBufferTime): the first chunk queued while it is idle starts playing after its initial buffer.
     * Returns an undo function.
     */
    attachAudioStreamer: guard(function attachAudioStreamer(streamer) {
      if (!streamer || typeof streamer.addPCM16 !== "function") return () => {};
      const original = streamer.addPCM16;
      const wrapped = function addPCM16(...args) {
        let wasPlaying = true;
        try {
          wasPlaying = !!streamer.isPlaying;
        } catch (_) {
          /* ignore */
        }
        const out = original.apply(this, args);
        try {
          if (!st.playbackReported) {
            const bufferS = typeof streamer.initialBufferTime === "number" ? streamer.initialBufferTime : 0.1;
            const delay = wasPlaying ? 0 : opts.playbackDelayMs ?? Math.round(bufferS * 1000);
            adapter.playbackStarted(now() + delay);
          }
        } catch (_) {
          /* never into the app */
        }
        return out;
      };
      streamer.addPCM16 = wrapped;
      return () => {
        if (streamer.addPCM16 === wrapped) streamer.addPCM16 = original;
      };
    }),
  };
  return adapter;
}

const CLIENT_EVENTS = {
  open: "onOpen",
  close: "onClose",
  error: "onError",
  setupcomplete: "onSetupComplete",
  toolcall: "onToolCall",
  toolcallcancellation: "onToolCallCancellation",
  interrupted: "onInterrupted",
  turncomplete: "onTurnComplete",
  content: "onContent",
  audio: "onAudio",
};

/**
 * Attaches to a GenAILiveClient-shaped client. Options: `audioStreamer` (hook its first playback),
 * `rawMessages` (default true: wrap `client.onmessage`), `toolResponses` (default true: wrap
 * `client.sendToolResponse`), plus createGeminiLiveAdapter's options. Returns the adapter with `detach()`.
 */
export function attachGeminiLive(client, trace, options = {}) {
  const adapter = createGeminiLiveAdapter(trace, options);
  const undo = [];
  try {
    for (const [event, method] of Object.entries(CLIENT_EVENTS)) {
      let handler = adapter[method];
      if (event === "open") {
        handler = () => {
          let resumeHandle = null;
          try {
            const cfg = typeof client.getConfig === "function" ? client.getConfig() : client.config;
            resumeHandle = (cfg && cfg.sessionResumption && cfg.sessionResumption.handle) || null;
          } catch (_) {
            /* ignore */
          }
          adapter.onOpen({ resumeHandle });
        };
      }
      if (event === "error") handler = (e) => adapter.onError(e);
      client.on(event, handler);
      undo.push(() => (client.off || client.removeListener).call(client, event, handler));
    }
    if (options.rawMessages !== false && typeof client.onmessage === "function") {
      const original = client.onmessage;
      const wrapped = function onmessage(message, ...rest) {
        adapter.handleServerMessage(message, { surfaced: true });
        return original.call(this, message, ...rest);
      };
      client.onmessage = wrapped;
      undo.push(() => {
        if (client.onmessage === wrapped) client.onmessage = original;
      });
    }
    if (options.toolResponses !== false && typeof client.sendToolResponse === "function") {
      const original = client.sendToolResponse;
      const wrapped = function sendToolResponse(toolResponse, ...rest) {
        adapter.onToolResponse(toolResponse);
        return original.call(this, toolResponse, ...rest);
      };
      client.sendToolResponse = wrapped;
      undo.push(() => {
        if (client.sendToolResponse === wrapped) client.sendToolResponse = original;
      });
    }
    if (options.audioStreamer) undo.push(adapter.attachAudioStreamer(options.audioStreamer));
  } catch (e) {
    return completeAttach(adapter, undo, e, options.onError);
  }
  return completeAttach(adapter, undo, undefined, options.onError);
}

export default attachGeminiLive;
