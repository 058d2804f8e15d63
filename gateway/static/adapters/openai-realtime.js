/**
 * OpenAI Realtime adapter for voice-trace.js.
 *
 * Maps OpenAI Realtime server events (WebRTC data channel "oai-events" or WebSocket) to the gateway's event
 * catalogue (DESIGN §4):
 *
 *   input_audio_buffer.speech_started / speech_stopped      → user.speech_start / user.speech_end
 *   conversation.item.input_audio_transcription.completed   → user.transcript {text, final: true}
 *   response.created                                        → model.response_start (once per turn)
 *   response.output_audio.delta (legacy response.audio.delta) → model.audio_start (first of the turn)
 *   output_audio_buffer.started (WebRTC)                    → model.audio_start + model.playback_start
 *   response.output_audio_transcript.delta (legacy response.audio_transcript.delta, text deltas)
 *                                                           → model.transcript {text}
 *   response.function_call_arguments.done                   → tool.call {call_id, name, arguments}
 *   response.done                                           → model.usage {usage} (summed over the turn's
 *                                                             responses), model.generation_complete, then
 *                                                             model.interrupted when cancelled, nothing when
 *                                                             it only asked for tools (the turn goes on after
 *                                                             the tool output), else model.turn_complete
 *   error, ...transcription.failed                          → error
 * and client events the app sends: conversation.item.create with a function_call_output → tool.result;
 * conversation.item.truncate {audio_end_ms} gives the interruption's played_ms.
 *
 *   const tracer = attachOpenAIRealtime(dataChannel, trace);   // or a WebSocket; wraps send() too
 *   // or: const tracer = createOpenAIRealtimeAdapter(trace); ws.onmessage = (e) => tracer.handleServerEvent(e.data)
 */

import { completeAttach, makeClock, makeGuard, makeRecorder } from "./common.js";

const MAX_MESSAGE = 4096;

function parseMaybeJson(v) {
  if (typeof v !== "string") return v;
  try {
    return JSON.parse(v);
  } catch (_) {
    return v;
  }
}

function base64Bytes(b64) {
  if (typeof b64 !== "string" || !b64) return 0;
  const pad = b64.endsWith("==") ? 2 : b64.endsWith("=") ? 1 : 0;
  return Math.max(0, Math.floor((b64.length * 3) / 4) - pad);
}

/** Adds numeric leaves of b into a (recursively); returns a new object. */
function sumUsage(a, b) {
  if (!a) return b && typeof b === "object" ? JSON.parse(JSON.stringify(b)) : b;
  const out = { ...a };
  for (const [k, v] of Object.entries(b || {})) {
    if (typeof v === "number") out[k] = (typeof out[k] === "number" ? out[k] : 0) + v;
    else if (v && typeof v === "object" && !Array.isArray(v)) out[k] = sumUsage(out[k] && typeof out[k] === "object" ? out[k] : null, v);
    else if (!(k in out)) out[k] = v;
  }
  return out;
}

export function createOpenAIRealtimeAdapter(trace, options = {}) {
  const opts = { outputSampleRate: 24000, connectionIdPrefix: "conn-", ...options };
  const now = makeClock(opts, trace);
  const onInternalError = typeof opts.onError === "function" ? opts.onError : null;

  const st = {
    connections: 0,
    connectionId: null,
    setupDone: false,
    turnActive: false, // from the first response.created to turn_complete / interrupted
    audioStarted: false,
    generatedBytes: 0,
    playbackReported: false,
    playbackTs: null,
    truncateMs: null,
    usage: null,
    interrupted: false,
    toolNames: new Map(),
  };

  const record = makeRecorder(trace, st, onInternalError);
  const guard = makeGuard(onInternalError);

  function resetTurn() {
    st.turnActive = false;
    st.audioStarted = false;
    st.generatedBytes = 0;
    st.playbackReported = false;
    st.playbackTs = null;
    st.truncateMs = null;
    st.usage = null;
    st.interrupted = false;
  }

  function generatedMs() {
    return Math.round((st.generatedBytes / 2 / opts.outputSampleRate) * 1000);
  }

  function audioStart() {
    if (!st.turnActive) {
      st.turnActive = true;
      record("model.response_start");
    }
    if (!st.audioStarted) {
      st.audioStarted = true;
      record("model.audio_start");
    }
  }

  function interrupted() {
    if (st.interrupted) return;
    const gen = generatedMs();
    const fields = {};
    if (st.generatedBytes) fields.generated_ms = gen;
    if (st.truncateMs != null) fields.played_ms = st.truncateMs;
    else if (st.playbackTs != null) {
      const played = Math.max(0, now() - st.playbackTs);
      fields.played_ms = st.generatedBytes ? Math.min(played, gen) : played;
    } else if (st.audioStarted) fields.played_ms = 0;
    record("model.interrupted", fields);
    resetTurn();
  }

  const adapter = {
    /** Stops recording (callbacks captured earlier, e.g. by an open connection, become no-ops). */
    detach() {
      st.detached = true;
    },
    get state() {
      return { ...st, toolNames: undefined, generatedMs: generatedMs() };
    },

    onOpen: guard(function onOpen(info) {
      st.connections++;
      st.setupDone = false;
      st.connectionId = (info && info.connectionId) || `${opts.connectionIdPrefix}${st.connections}`;
      record("connection.open", { connection_id: st.connectionId });
    }),

    onClose: guard(function onClose(ev) {
      const fields = {};
      if (ev && typeof ev.code === "number") fields.code = ev.code;
      if (ev && ev.reason) fields.reason = String(ev.reason).slice(0, 1024);
      record("connection.close", fields);
    }),

    onError: guard(function onError(ev, errorType = "connection_error") {
      const message = ev && (ev.message || (ev.error && ev.error.message));
      record("error", { error_type: errorType, ...(message ? { message: String(message).slice(0, MAX_MESSAGE) } : {}) });
    }),

    /** One server event (object or JSON string). */
    handleServerEvent: guard(function handleServerEvent(raw) {
      const ev = parseMaybeJson(raw);
      if (!ev || typeof ev !== "object" || typeof ev.type !== "string") return;
      switch (ev.type) {
        case "session.created":
          if (!st.setupDone) {
            st.setupDone = true;
            record("connection.setup_complete");
          }
          break;
        case "input_audio_buffer.speech_started":
          record("user.speech_start");
          break;
        case "input_audio_buffer.speech_stopped":
          record("user.speech_end");
          break;
        case "conversation.item.input_audio_transcription.completed":
          if (typeof ev.transcript === "string" && ev.transcript) {
            record("user.transcript", { text: ev.transcript, final: true });
          }
          break;
        case "conversation.item.input_audio_transcription.failed":
          adapter.onError(ev.error || { message: "input audio transcription failed" }, "transcription_failed");
          break;
        case "response.created":
          if (!st.turnActive) {
            st.turnActive = true;
            record("model.response_start");
          }
          break;
        case "response.output_audio.delta":
        case "response.audio.delta":
          audioStart();
          st.generatedBytes += base64Bytes(ev.delta);
          break;
        case "output_audio_buffer.started":
          audioStart();
          adapter.playbackStarted();
          break;
        case "response.output_audio_transcript.delta":
        case "response.audio_transcript.delta":
        case "response.output_text.delta":
        case "response.text.delta":
          if (typeof ev.delta === "string" && ev.delta) {
            if (!st.turnActive) {
              st.turnActive = true;
              record("model.response_start");
            }
            record("model.transcript", { text: ev.delta });
          }
          break;
        case "response.output_item.added":
        case "response.output_item.done":
          if (ev.item && ev.item.type === "function_call" && ev.item.call_id) {
            st.toolNames.set(ev.item.call_id, ev.item.name);
          }
          break;
        case "response.function_call_arguments.done": {
          const callId = ev.call_id || ev.item_id;
          if (!callId) break;
          if (!st.turnActive) {
            st.turnActive = true;
            record("model.response_start");
          }
          const name = ev.name || st.toolNames.get(callId) || "unknown";
          const fields = { call_id: String(callId), name: String(name) };
          if (ev.arguments !== undefined) fields.arguments = parseMaybeJson(ev.arguments);
          record("tool.call", fields);
          break;
        }
        case "response.done": {
          const r = ev.response || {};
          if (r.usage) {
            st.usage = sumUsage(st.usage, r.usage);
            record("model.usage", { usage: st.usage });
          }
          record("model.generation_complete");
          const status = r.status || "completed";
          const output = Array.isArray(r.output) ? r.output : [];
          const askedForTools = output.some((it) => it && it.type === "function_call");
          if (status === "failed") {
            const err = (r.status_details && r.status_details.error) || {};
            record("error", {
              error_type: String(err.type || err.code || "response_failed").slice(0, 256),
              ...(err.message ? { message: String(err.message).slice(0, MAX_MESSAGE) } : {}),
            });
          }
          if (status === "cancelled") {
            interrupted();
          } else if (askedForTools && status === "completed") {
            // The turn continues: the app runs the tool and asks for another response.
          } else {
            const reason = status === "completed" ? undefined : (r.status_details && r.status_details.reason) || status;
            record("model.turn_complete", reason ? { reason: String(reason).slice(0, 256) } : {});
            resetTurn();
          }
          break;
        }
        case "error": {
          const e = ev.error || {};
          record("error", {
            error_type: String(e.type || e.code || "error").slice(0, 256),
            ...(e.message ? { message: String(e.message).slice(0, MAX_MESSAGE) } : {}),
          });
          break;
        }
        default:
          break;
      }
    }),

    /** One client event the app sends (object or JSON string): tool outputs and truncation. */
    handleClientEvent: guard(function handleClientEvent(raw) {
      const ev = parseMaybeJson(raw);
      if (!ev || typeof ev !== "object") return;
      if (ev.type === "conversation.item.create" && ev.item && ev.item.type === "function_call_output") {
        adapter.toolResult(ev.item.call_id, parseMaybeJson(ev.item.output));
      } else if (ev.type === "conversation.item.truncate" && typeof ev.audio_end_ms === "number") {
        st.truncateMs = ev.audio_end_ms;
      }
    }),

    /** A tool finished; `error` when it failed. */
    toolResult: guard(function toolResult(callId, result, error) {
      if (!callId) return;
      const fields = { call_id: String(callId) };
      if (result !== undefined) fields.result = result;
      if (error !== undefined && error !== null) fields.error = typeof error === "string" ? error : String(error.message || error);
      record("tool.result", fields);
    }),

    /** The first audio of the turn started playing (WebSocket apps: call it from the player). */
    playbackStarted: guard(function playbackStarted(ts) {
      if (st.playbackReported || !st.turnActive) return;
      const t = typeof ts === "number" ? ts : now();
      st.playbackReported = true;
      st.playbackTs = t;
      record("model.playback_start", undefined, t);
    }),

    /** Client VAD / push-to-talk (server VAD reports speech itself). */
    userSpeechStart: guard(function userSpeechStart(ts) {
      record("user.speech_start", undefined, ts);
    }),
    userSpeechEnd: guard(function userSpeechEnd(ts) {
      record("user.speech_end", undefined, ts);
    }),
  };
  return adapter;
}

/**
 * Attaches to an RTCDataChannel ("oai-events") or a WebSocket speaking the Realtime protocol: listens to its
 * messages, open, close and error, and wraps `send` to see tool outputs. Returns the adapter with `detach()`.
 */
export function attachOpenAIRealtime(channel, trace, options = {}) {
  const adapter = createOpenAIRealtimeAdapter(trace, options);
  const undo = [];
  try {
    const on = (type, fn) => {
      channel.addEventListener(type, fn);
      undo.push(() => channel.removeEventListener(type, fn));
    };
    on("message", (e) => adapter.handleServerEvent(e && e.data));
    on("open", () => adapter.onOpen());
    on("close", (e) => adapter.onClose(e));
    on("error", (e) => adapter.onError(e));
    if (channel.readyState === "open" || channel.readyState === 1) adapter.onOpen();
    if (options.clientEvents !== false && typeof channel.send === "function") {
      const original = channel.send;
      const wrapped = function send(data, ...rest) {
        adapter.handleClientEvent(data);
        return original.call(this, data, ...rest);
      };
      channel.send = wrapped;
      undo.push(() => {
        if (channel.send === wrapped) channel.send = original;
      });
    }
  } catch (e) {
    return completeAttach(adapter, undo, e, options.onError);
  }
  return completeAttach(adapter, undo, undefined, options.onError);
}

export default attachOpenAIRealtime;
