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
 * played: from the hooked audio streamer or `playbackStarted()`), model.playback_end (its last audio played:
 * the streamer's onComplete or `playbackEnded()`), model.transcript, model.generation_complete,
 * model.turn_complete {reason?}, model.interrupted {played_ms, generated_ms}, model.usage {usage},
 * tool.call / tool.result / tool.cancel, error.
 *
 * Nothing here throws into the app: every handler catches (an exception in an EventEmitter listener would
 * break the app's own listeners).
 */

import {
  completeAttach,
  makeClock,
  makeGuard,
  makeModelAudioFeed,
  makeRecorder,
  makeTextBuffer,
  makeWarner,
} from "./common.js";
import { base64Bytes, byteLengthOf, durationToMs, errorText, sampleRateOf } from "./gemini-format.js";
import { hookAudioStreamer } from "./gemini-player.js";

const MAX_REASON = 1024;

export { base64Bytes, durationToMs };

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
    interruptReported: false, // this generation's interruption was reported (server or stopped player)
    lastGeneration: null, // {playbackTs, generatedMs, reported}: a player stopped later cuts this one
    playbackTimer: null,
    playbackDue: null, // when the queued first chunk becomes audible (the timer reports it then)
    // The player ran dry while the generation was still open: its end, if no more audio comes before turn_complete.
    drainedAt: null,
  };

  const record = makeRecorder(trace, st, onInternalError);
  const guard = makeGuard(onInternalError);
  const warn = makeWarner(trace, st, onInternalError);
  const modelText = makeTextBuffer(record, "model.transcript", now);
  const userText = makeTextBuffer(record, "user.transcript", now);
  // The model's audio into the call recording, when the app records (VoiceTrace.start({recordAudio: true})).
  const modelAudio = makeModelAudioFeed(trace, opts, st, onInternalError);
  const setTimer = typeof opts.setTimeout === "function" ? opts.setTimeout : (fn, ms) => globalThis.setTimeout(fn, ms);
  const clearTimer = typeof opts.clearTimeout === "function" ? opts.clearTimeout : (h) => globalThis.clearTimeout(h);

  function cancelPlaybackTimer() {
    if (st.playbackTimer !== null) {
      clearTimer(st.playbackTimer);
      st.playbackTimer = null;
    }
  }

  function resetGeneration() {
    modelText.flush();
    userText.flush("last");
    // The turn ended while its first chunk waited in the player's buffer: it still plays, at its due time.
    if (st.playbackTimer !== null && !st.interruptReported) adapter.playbackStarted(st.playbackDue);
    cancelPlaybackTimer();
    if (st.audioStarted) {
      st.lastGeneration = { playbackTs: st.playbackTs, generatedMs: generatedMs(), reported: st.interruptReported };
    }
    st.interruptReported = false;
    st.responding = false;
    st.audioStarted = false;
    st.generatedBytes = 0;
    st.playbackReported = false;
    st.playbackTs = null;
    st.pendingPlaybackTs = null;
    st.turnCompleteReason = null;
    st.drainedAt = null;
  }

  function ensureResponse() {
    if (!st.responding) {
      userText.flush("last");
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
    st.drainedAt = null; // more audio: the player's earlier drain was a gap, not the end
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
      modelAudio.pcm(data, opts.outputSampleRate);
    }),

    onContent: guard(function onContent(content) {
      ensureResponse();
      const parts = (content && content.modelTurn && content.modelTurn.parts) || [];
      for (const p of parts) {
        if (p && typeof p.text === "string" && p.text && !p.thought) modelText.add(p.text);
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
      // The app flushes its player now: what the recording had scheduled was never heard either.
      modelAudio.clear();
      modelText.flush();
      if (!st.interruptReported) {
        const t = now();
        const gen = generatedMs();
        const fields = { generated_ms: gen };
        if (st.playbackTs != null) fields.played_ms = Math.max(0, Math.min(gen, t - st.playbackTs));
        else fields.played_ms = 0;
        record("model.interrupted", fields);
        st.interruptReported = true;
      }
      resetGeneration();
    }),

    onTurnComplete: guard(function onTurnComplete() {
      // Sent as is: after an interruption the gateway takes it as the end of the turn already cut.
      const fields = st.turnCompleteReason ? { reason: String(st.turnCompleteReason).slice(0, 256) } : {};
      const drainedAt = st.drainedAt;
      resetGeneration();
      record("model.turn_complete", fields);
      // The player had played everything before the turn completed: without this the gateway would hold the
      // turn for a playback end that already happened.
      if (drainedAt !== null) adapter.playbackEnded(drainedAt);
    }),

    /**
     * The player played the last audio of the finished generation (attachAudioStreamer calls it from the
     * streamer's onComplete). Until then the gateway holds the turn: a barge-in still cuts it. Called before
     * turn_complete, it is sent right after it, unless more audio came in between.
     */
    playbackEnded: guard(function playbackEnded(ts) {
      if (st.audioStarted) {
        // Still generating: the end only if no more audio arrives before turn_complete (a network gap also
        // drains the player).
        if (!st.interruptReported && st.playbackTs != null) st.drainedAt = typeof ts === "number" ? ts : now();
        return;
      }
      const last = st.lastGeneration;
      if (!last || last.reported || last.ended || last.playbackTs == null) return;
      last.ended = true;
      record("model.playback_end", undefined, typeof ts === "number" ? ts : undefined);
    }),

    /**
     * The app stopped its player (the user barged in), possibly after the model finished generating: when
     * audio of the current or last generation was still unplayed, that is an interruption of its turn, with
     * played_ms and generated_ms. attachAudioStreamer calls it from the streamer's stop().
     */
    playbackStopped: guard(function playbackStopped(ts) {
      modelAudio.clear();
      const t = typeof ts === "number" ? ts : now();
      let gen;
      let started;
      if (st.audioStarted) {
        if (st.interruptReported) return;
        gen = generatedMs();
        started = st.playbackTs;
      } else {
        const last = st.lastGeneration;
        if (!last || last.reported || last.ended) return;
        last.reported = true;
        gen = last.generatedMs;
        started = last.playbackTs;
      }
      if (started == null) return; // nothing was audible yet
      const played = Math.max(0, Math.min(gen, Math.round(t - started)));
      if (played >= gen) return; // it had all been played: not an interruption
      cancelPlaybackTimer();
      modelText.flush();
      if (st.audioStarted) st.interruptReported = true;
      record("model.interrupted", { played_ms: played, generated_ms: gen }, t);
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
          userText.add(inT.text, typeof inT.finished === "boolean" ? inT.finished : undefined);
          if (inT.finished === true) userText.flush("last");
        }
        if (sc.modelTurn) {
          if (surfaced) {
            ensureResponse();
            // The client's "audio" event carries bytes only: the rate (for the recording) is in the part's type.
            for (const p of sc.modelTurn.parts || []) {
              const d = p && p.inlineData;
              if (d && String(d.mimeType || "").startsWith("audio/")) opts.outputSampleRate = sampleRateOf(d.mimeType, opts.outputSampleRate);
            }
          } else {
            const parts = sc.modelTurn.parts || [];
            const other = [];
            for (const p of parts) {
              const d = p && p.inlineData;
              if (d && String(d.mimeType || "").startsWith("audio/")) {
                opts.outputSampleRate = sampleRateOf(d.mimeType, opts.outputSampleRate);
                audioReceived(base64Bytes(d.data));
                modelAudio.base64(d.data, opts.outputSampleRate);
              } else if (p) other.push(p);
            }
            if (other.length || !parts.length) adapter.onContent({ modelTurn: { parts: other } });
          }
        }
        const outT = sc.outputTranscription;
        if (outT && typeof outT.text === "string" && outT.text) {
          ensureResponse();
          modelText.add(outT.text);
        }
        if (sc.generationComplete) {
          modelText.flush();
          record("model.generation_complete");
        }
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

    /** Client VAD or push-to-talk (`source`: "client_vad", the default, or "push_to_talk"): speech started. */
    userSpeechStart: guard(function userSpeechStart(ts, source) {
      if (st.speaking) return;
      st.speaking = true;
      record("user.speech_start", source ? { source } : undefined, ts);
    }),

    /** Client VAD or push-to-talk: the user stopped speaking. */
    userSpeechEnd: guard(function userSpeechEnd(ts, source) {
      if (!st.speaking) return;
      st.speaking = false;
      record("user.speech_end", source ? { source } : undefined, ts);
    }),

    /** Says once (onError and console.warn) that the adapter cannot see what it needs. */
    warn,

    /**
     * For `ai.live.connect({model, config, callbacks})` without a GenAILiveClient: returns callbacks that feed
     * the adapter, then call yours. `info.resumeHandle`: the handle this connection resumes with.
     */
    wrapCallbacks(callbacks = {}, info = {}) {
      const app = callbacks || {};
      const call = (name, arg) => (typeof app[name] === "function" ? app[name](arg) : undefined);
      return {
        ...app,
        onopen: () => {
          adapter.onOpen({ resumeHandle: info.resumeHandle || null });
          return call("onopen");
        },
        onmessage: (message) => {
          adapter.handleServerMessage(message);
          return call("onmessage", message);
        },
        onerror: (e) => {
          adapter.onError(e);
          return call("onerror", e);
        },
        onclose: (e) => {
          adapter.onClose(e);
          return call("onclose", e);
        },
      };
    },

    /** Wraps the connected session's sendToolResponse so tool results are recorded; returns the session. */
    wrapSession(session) {
      try {
        if (session && typeof session.sendToolResponse === "function") {
          const original = session.sendToolResponse;
          session.sendToolResponse = function sendToolResponse(params, ...rest) {
            adapter.onToolResponse(params);
            return original.call(this, params, ...rest);
          };
        } else warn("no_tool_responses", "Gemini Live session has no sendToolResponse(): tool results are not traced");
      } catch (e) {
        if (onInternalError) onInternalError(e);
      }
      return session;
    },

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
      cancelPlaybackTimer();
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
      return hookAudioStreamer(streamer, {
        queued(wasPlaying, initialBufferS) {
          if (st.playbackReported || st.playbackTimer !== null) return;
          const configured = typeof opts.playbackDelayMs === "function" ? opts.playbackDelayMs() : opts.playbackDelayMs;
          const delay = wasPlaying ? 0 : configured ?? Math.round(initialBufferS * 1000);
          // Reported when it becomes audible, not predicted: a stop before then means nothing was heard.
          if (delay <= 0) adapter.playbackStarted(now());
          else {
            st.playbackDue = now() + delay;
            st.playbackTimer = setTimer(() => {
              st.playbackTimer = null;
              adapter.playbackStarted(now());
            }, delay);
          }
        },
        stopped: () => adapter.playbackStopped(),
        playedOut: () => adapter.playbackEnded(),
      });
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

/** A client that already connected handed its message handler to the SDK: wrapping it now is too late. */
function looksConnected(client) {
  try {
    return client.status === "connected" || !!client.session || !!client._session;
  } catch (_) {
    return false;
  }
}

/**
 * Raw server messages carry what the client's events drop (usage, transcriptions, generationComplete, goAway,
 * resumption). live-api-web-console's client names its handler `onmessage`; other GenAILiveClients name it
 * `onMessage` and bind it inside connect(). Either is wrapped on the instance, so connect() hands the wrapper to
 * the SDK.
 */
function hookRawMessages(client, adapter, undo, seen) {
  const name = typeof client.onmessage === "function" ? "onmessage" : typeof client.onMessage === "function" ? "onMessage" : null;
  if (!name) {
    adapter.warn(
      "no_raw_messages",
      "attachGeminiLive: the client has no onmessage/onMessage handler; usage, transcripts, generationComplete, " +
        "goAway and resumption are not traced (feed raw messages to adapter.handleServerMessage)",
    );
    return;
  }
  if (looksConnected(client)) {
    adapter.warn(
      "attached_after_connect",
      "attachGeminiLive: the client is already connected; attach before connect() or usage and transcripts are lost",
    );
  }
  const hadOwn = Object.prototype.hasOwnProperty.call(client, name);
  const original = client[name];
  const wrapped = function (message, ...rest) {
    seen.raw = true;
    adapter.handleServerMessage(message, { surfaced: true });
    return original.call(this, message, ...rest);
  };
  client[name] = wrapped;
  undo.push(() => {
    if (client[name] !== wrapped) return;
    if (hadOwn) client[name] = original;
    else delete client[name];
  });
}

/**
 * Attaches to a GenAILiveClient-shaped client. Options: `audioStreamer` (hook its first playback),
 * `rawMessages` (default true: wrap `client.onmessage` or `client.onMessage`), `toolResponses` (default true: wrap
 * `client.sendToolResponse`), plus createGeminiLiveAdapter's options. Returns the adapter with `detach()`.
 */
export function attachGeminiLive(client, trace, options = {}) {
  const adapter = createGeminiLiveAdapter(trace, options);
  const undo = [];
  const seen = { raw: false };
  try {
    for (const [event, method] of Object.entries(CLIENT_EVENTS)) {
      let handler = adapter[method];
      if (event === "setupcomplete" && options.rawMessages !== false) {
        // The raw handler sees setupComplete before the client emits it: if it did not, the client calls a
        // handler it captured before the adapter wrapped it (or under another name), and the raw messages are lost.
        handler = () => {
          if (!seen.raw) {
            adapter.warn(
              "raw_messages_not_seen",
              "attachGeminiLive: the client's raw message handler was not called (attached after connect(), or " +
                "it keeps its own reference); usage, transcripts, generationComplete, goAway and resumption are lost",
            );
          }
          adapter.onSetupComplete();
        };
      }
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
    if (options.rawMessages !== false) hookRawMessages(client, adapter, undo, seen);
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
