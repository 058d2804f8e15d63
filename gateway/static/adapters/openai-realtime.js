/**
 * OpenAI Realtime adapter for voice-trace.js.
 *
 * Maps OpenAI Realtime server events (WebRTC data channel "oai-events" or WebSocket) to the gateway's event
 * catalogue (DESIGN §4):
 *
 *   input_audio_buffer.speech_started / speech_stopped      → user.speech_start / user.speech_end
 *                                                             {source: "provider_vad"} (server VAD)
 *   conversation.item.input_audio_transcription.completed   → user.transcript {text, final: true}
 *   response.created                                        → model.response_start (one per response: a
 *                                                             turn's second response, after a tool call,
 *                                                             becomes an inference span of its own)
 *   response.output_audio.delta (legacy response.audio.delta) → model.audio_start (first of the turn)
 *   output_audio_buffer.started (WebRTC)                    → model.audio_start + model.playback_start
 *   output_audio_buffer.stopped (WebRTC)                    → model.playback_end (the answer played out)
 *   response.output_audio_transcript.delta (legacy response.audio_transcript.delta, text deltas)
 *                                                           → model.transcript {text}: one per response (the
 *                                                             deltas are collected, sent at its end)
 *   response.function_call_arguments.done                   → tool.call {call_id, name, arguments}
 *   response.done                                           → model.usage {usage} (this response's, as
 *                                                             sent), model.generation_complete, then
 *                                                             model.interrupted when cancelled, nothing when
 *                                                             it only asked for tools (the turn goes on after
 *                                                             the tool output), else model.turn_complete
 *   error, ...transcription.failed                          → error
 * and client events the app sends: conversation.item.create with a function_call_output → tool.result;
 * conversation.item.truncate {audio_end_ms} gives the interruption's played_ms. A truncation after the
 * response finished (the user barged in while the player still played it) is reported as model.interrupted
 * {played_ms, generated_ms} at that moment, as is a server `conversation.item.truncated` nobody else reported.
 *
 * `attachOpenAIRealtime(target, trace)` takes what the app holds:
 *   - `@openai/agents-realtime`'s RealtimeSession, or its transport (OpenAIRealtimeWebSocket / WebRTC): listens
 *     to the transport's raw `*` events and wraps its `sendEvent`;
 *   - the `openai` package's OpenAIRealtimeWS / OpenAIRealtimeWebSocket: listens to `event`, wraps `send`;
 *   - an RTCDataChannel ("oai-events") or a WebSocket: listens to `message`, wraps `send`.
 * Anything else is reported once through the trace's onError and console.warn, never silently ignored.
 *   // or: const tracer = createOpenAIRealtimeAdapter(trace); ws.onmessage = (e) => tracer.handleServerEvent(e.data)
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
    interrupted: false,
    toolNames: new Map(),
    // The audio item of the last response, kept after its turn ended: a truncation that comes later (the
    // player still played it) is a barge-in on that turn.
    lastAudio: null, // {itemId, generatedMs, playbackTs, reported}
    audioItemId: null,
  };

  const record = makeRecorder(trace, st, onInternalError);
  const guard = makeGuard(onInternalError);
  const warn = makeWarner(trace, st, onInternalError);
  const transcript = makeTextBuffer(record, "model.transcript", now);
  // The model's audio into the call recording, when the app records (VoiceTrace.start({recordAudio: true})):
  // WebSocket audio deltas as PCM, the WebRTC remote track as a track.
  const modelAudio = makeModelAudioFeed(trace, opts, st, onInternalError);

  function resetTurn() {
    transcript.flush();
    st.audioItemId = null;
    st.turnActive = false;
    st.audioStarted = false;
    st.generatedBytes = 0;
    st.playbackReported = false;
    st.playbackTs = null;
    st.truncateMs = null;
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
    transcript.flush();
    const gen = generatedMs();
    const fields = {};
    if (st.generatedBytes) fields.generated_ms = gen;
    if (st.truncateMs != null) fields.played_ms = st.truncateMs;
    else if (st.playbackTs != null) {
      const played = Math.max(0, now() - st.playbackTs);
      fields.played_ms = st.generatedBytes ? Math.min(played, gen) : played;
    } else if (st.audioStarted) fields.played_ms = 0;
    record("model.interrupted", fields);
    if (st.lastAudio) st.lastAudio.reported = true;
    resetTurn();
  }

  /** The response's audio item was cut at `audioEndMs` (the app's truncate, or the server's truncated). */
  function truncated(itemId, audioEndMs) {
    if (st.turnActive) {
      // Still generating: the response.done {status: "cancelled"} that follows reports it, with this played_ms.
      st.truncateMs = audioEndMs;
      return;
    }
    const last = st.lastAudio;
    if (!last || last.reported || last.ended || (itemId && last.itemId && itemId !== last.itemId)) return;
    last.reported = true;
    // Cut at or after its end: the user heard it all, nothing was interrupted.
    if (last.generatedMs > 0 && audioEndMs >= last.generatedMs) return;
    record("model.interrupted", last.generatedMs > 0 ? { played_ms: audioEndMs, generated_ms: last.generatedMs } : { played_ms: audioEndMs });
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
      if (st.connectionId !== null) return; // already open (WebRTC: its first server event came first)
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
      st.connectionId = null;
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
          // WebRTC's transport says it is connected only after session.updated: the connection is open.
          if (st.connectionId === null) adapter.onOpen();
          if (!st.setupDone) {
            st.setupDone = true;
            record("connection.setup_complete");
          }
          break;
        case "input_audio_buffer.speech_started":
          record("user.speech_start", { source: "provider_vad" });
          break;
        case "input_audio_buffer.speech_stopped":
          record("user.speech_end", { source: "provider_vad" });
          break;
        case "conversation.item.truncated":
          if (typeof ev.audio_end_ms === "number") truncated(ev.item_id, ev.audio_end_ms);
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
          // Every response, also the one answering a tool output within the same turn.
          st.turnActive = true;
          record("model.response_start");
          break;
        case "response.output_audio.delta":
        case "response.audio.delta":
          audioStart();
          if (ev.item_id) st.audioItemId = ev.item_id;
          st.generatedBytes += base64Bytes(ev.delta);
          modelAudio.base64(ev.delta, opts.outputSampleRate);
          break;
        case "output_audio_buffer.started":
          audioStart();
          adapter.playbackStarted();
          break;
        case "output_audio_buffer.stopped":
          // WebRTC: the response's audio finished playing (a cut one is reported by its truncation instead).
          adapter.playbackEnded();
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
            transcript.add(ev.delta);
          }
          break;
        case "response.output_audio_transcript.done":
        case "response.audio_transcript.done":
        case "response.output_text.done":
        case "response.text.done":
          transcript.flush();
          break;
        case "response.output_item.added":
        case "response.output_item.done":
          if (ev.item && ev.item.type === "message" && ev.item.role === "assistant" && ev.item.id) st.audioItemId = ev.item.id;
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
          transcript.flush();
          // WebRTC sends no audio deltas (the audio is on the media track): its playback signal counts.
          if (st.generatedBytes || st.playbackReported) {
            st.lastAudio = { itemId: st.audioItemId, generatedMs: generatedMs(), playbackTs: st.playbackTs, reported: false };
          }
          if (r.usage) record("model.usage", { usage: r.usage });
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
        // The app cut its player here (a barge-in): the recording drops what it had not played yet.
        modelAudio.clear();
        truncated(ev.item_id, ev.audio_end_ms);
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

    /**
     * The last audio of the answer finished playing (WebSocket apps: call it from the player; WebRTC reports it
     * as output_audio_buffer.stopped). Until then the gateway holds the turn: a barge-in still cuts it.
     */
    playbackEnded: guard(function playbackEnded(ts) {
      const last = st.turnActive ? null : st.lastAudio;
      if (st.turnActive || !last || last.reported || last.ended) return;
      last.ended = true;
      record("model.playback_end", undefined, typeof ts === "number" ? ts : undefined);
    }),

    /** Client VAD / push-to-talk (server VAD reports speech itself). `source`: "client_vad" or "push_to_talk". */
    userSpeechStart: guard(function userSpeechStart(ts, source) {
      record("user.speech_start", source ? { source } : undefined, ts);
    }),
    userSpeechEnd: guard(function userSpeechEnd(ts, source) {
      record("user.speech_end", source ? { source } : undefined, ts);
    }),

    /** Says once (onError and console.warn) that the adapter cannot see what it needs. */
    warn,

    /**
     * The model's audio as a remote track (WebRTC) or a peer connection whose audio receivers carry it, into
     * the call recording. attachOpenAIRealtime finds the agents SDK's peer connection itself, and takes
     * `options.peerConnection` for a bare data channel.
     */
    addModelAudio: guard(function addModelAudio(trackOrPeerConnection) {
      const pc = trackOrPeerConnection;
      if (pc && typeof pc.getReceivers === "function") {
        for (const r of pc.getReceivers()) if (r && r.track && r.track.kind === "audio") modelAudio.track(r.track);
      } else if (pc && pc.kind === "audio") modelAudio.track(pc);
    }),
  };
  return adapter;
}

/** What kind of object the app handed us: each is hooked its own way. */
function kindOf(target) {
  if (!target || (typeof target !== "object" && typeof target !== "function")) return null;
  let transport;
  try {
    transport = target.transport;
  } catch (_) {
    transport = undefined;
  }
  if (transport && typeof transport.on === "function" && typeof transport.sendEvent === "function") return "session";
  if (typeof target.on === "function" && typeof target.sendEvent === "function") return "transport";
  if (typeof target.on === "function" && typeof target.send === "function" && "socket" in target) return "openai-ws";
  if (typeof target.addEventListener === "function") return "channel";
  return null;
}

function wrapMethod(obj, name, before, undo) {
  const original = obj[name];
  if (typeof original !== "function") return false;
  const wrapped = function (...args) {
    before(args[0]);
    return original.apply(this, args);
  };
  obj[name] = wrapped;
  undo.push(() => {
    if (obj[name] === wrapped) obj[name] = original;
  });
  return true;
}

function listen(emitter, type, fn, undo) {
  emitter.on(type, fn);
  undo.push(() => (emitter.off || emitter.removeListener || (() => {})).call(emitter, type, fn));
}

/** @openai/agents-realtime transport (WebSocket or WebRTC): raw server events come as `*`. */
function hookTransport(transport, adapter, options, undo) {
  let sawRaw = false;
  listen(
    transport,
    "*",
    (ev) => {
      sawRaw = true;
      adapter.handleServerEvent(ev);
    },
    undo,
  );
  // A response started but no raw event came: a transport that does not emit `*` (another SDK version).
  listen(
    transport,
    "turn_started",
    () => {
      if (!sawRaw) adapter.warn("no_raw_events", "OpenAI Realtime transport emits no raw `*` events: nothing of the model is traced");
    },
    undo,
  );
  // WebRTC: the model speaks on the peer connection's remote audio track (the transport plays it in an <audio>).
  const remoteAudio = () => {
    try {
      const state = transport.connectionState;
      if (state && state.peerConnection) adapter.addModelAudio(state.peerConnection);
    } catch (_) {
      /* not a WebRTC transport */
    }
  };
  listen(
    transport,
    "connected",
    () => {
      adapter.onOpen();
      remoteAudio();
    },
    undo,
  );
  listen(transport, "disconnected", () => adapter.onClose(), undo);
  // Server `error` events come through `*` too; only failures of the transport itself are recorded here.
  listen(
    transport,
    "error",
    (e) => {
      const inner = e && e.error;
      if (inner && typeof inner === "object" && inner.type === "error") return;
      adapter.onError(inner || e);
    },
    undo,
  );
  if (transport.status === "connected") {
    adapter.onOpen();
    remoteAudio();
  }
  if (options.clientEvents !== false && !wrapMethod(transport, "sendEvent", (ev) => adapter.handleClientEvent(ev), undo)) {
    adapter.warn("no_send", "OpenAI Realtime transport has no sendEvent(): tool results and truncations are not traced");
  }
}

/** The `openai` package's OpenAIRealtimeWS (node) / OpenAIRealtimeWebSocket (browser). */
function hookOpenAIWs(rt, adapter, options, undo) {
  listen(rt, "event", (ev) => adapter.handleServerEvent(ev), undo);
  // Server `error` events come through `event` too (the client re-emits them as OpenAIRealtimeError with .error).
  listen(
    rt,
    "error",
    (e) => {
      if (e && e.error) return;
      adapter.onError(e);
    },
    undo,
  );
  const socket = rt.socket;
  if (socket && typeof socket.addEventListener === "function") {
    const onOpen = () => adapter.onOpen();
    const onClose = (e) => adapter.onClose(e);
    socket.addEventListener("open", onOpen);
    socket.addEventListener("close", onClose);
    undo.push(() => {
      socket.removeEventListener("open", onOpen);
      socket.removeEventListener("close", onClose);
    });
    if (socket.readyState === 1) adapter.onOpen();
  } else {
    adapter.warn("no_socket", "OpenAI Realtime client has no socket: connections are not traced");
  }
  if (options.clientEvents !== false) wrapMethod(rt, "send", (ev) => adapter.handleClientEvent(ev), undo);
}

/** An RTCDataChannel ("oai-events") or a WebSocket. */
function hookChannel(channel, adapter, options, undo) {
  const on = (type, fn) => {
    channel.addEventListener(type, fn);
    undo.push(() => channel.removeEventListener(type, fn));
  };
  on("message", (e) => adapter.handleServerEvent(e && e.data));
  on("open", () => adapter.onOpen());
  on("close", (e) => adapter.onClose(e));
  on("error", (e) => adapter.onError(e));
  if (channel.readyState === "open" || channel.readyState === 1) adapter.onOpen();
  if (options.clientEvents !== false) wrapMethod(channel, "send", (ev) => adapter.handleClientEvent(ev), undo);
  // A bare WebRTC data channel does not know its peer connection: the app names it to record the model's track.
  const pc = options.peerConnection;
  if (pc && typeof pc.addEventListener === "function") {
    const onTrack = (e) => adapter.addModelAudio(e && e.track);
    pc.addEventListener("track", onTrack);
    undo.push(() => pc.removeEventListener("track", onTrack));
    adapter.addModelAudio(pc);
  }
}

/**
 * Attaches to what the app holds: a RealtimeSession or its transport (@openai/agents-realtime), the `openai`
 * package's realtime client, an RTCDataChannel ("oai-events") or a WebSocket. Attach before connecting (a
 * transport that is already connected is taken as one open connection). Returns the adapter with `detach()`.
 */
export function attachOpenAIRealtime(target, trace, options = {}) {
  const adapter = createOpenAIRealtimeAdapter(trace, options);
  const undo = [];
  try {
    switch (kindOf(target)) {
      case "session":
        hookTransport(target.transport, adapter, options, undo);
        break;
      case "transport":
        hookTransport(target, adapter, options, undo);
        break;
      case "openai-ws":
        hookOpenAIWs(target, adapter, options, undo);
        break;
      case "channel":
        hookChannel(target, adapter, options, undo);
        break;
      default:
        adapter.warn(
          "unknown_target",
          "attachOpenAIRealtime: not a RealtimeSession, a realtime transport, an OpenAIRealtimeWS, a data channel " +
            "or a WebSocket; nothing will be traced",
        );
    }
  } catch (e) {
    return completeAttach(adapter, undo, e, options.onError);
  }
  return completeAttach(adapter, undo, undefined, options.onError);
}

export default attachOpenAIRealtime;
