// Typings for the OpenAI Realtime adapter (openai-realtime.js).
import type { TraceSink } from "../voice-trace.js";

export interface OpenAIAdapterOptions {
  /** Output audio sample rate (PCM16), for generated_ms (default 24000). */
  outputSampleRate?: number;
  /** Default true: WebSocket audio deltas and the WebRTC remote track go into `trace.recorder` when recording. */
  recordModelAudio?: boolean;
  connectionIdPrefix?: string;
  now?: () => number;
  onError?: (error: unknown) => void;
}

export interface AttachOpenAIOptions extends OpenAIAdapterOptions {
  /** Wrap send / sendEvent to see tool outputs and truncation (default true). */
  clientEvents?: boolean;
  /** For a bare "oai-events" data channel: its peer connection, whose remote audio track is recorded. */
  peerConnection?: RTCPeerConnection;
}

/** An RTCDataChannel ("oai-events") or a WebSocket. */
export interface RealtimeChannelLike extends EventTarget {
  readyState?: string | number;
  send?(data: string): void;
}

/** @openai/agents-realtime's transport (OpenAIRealtimeWebSocket, OpenAIRealtimeWebRTC): raw events as `*`. */
export interface RealtimeTransportLike {
  on(event: string, fn: (...args: any[]) => void): unknown;
  off?(event: string, fn: (...args: any[]) => void): unknown;
  sendEvent(event: Record<string, unknown>): void;
  status?: string;
}

/** @openai/agents-realtime's RealtimeSession. */
export interface RealtimeSessionLike {
  readonly transport: RealtimeTransportLike;
}

/** The `openai` package's OpenAIRealtimeWS / OpenAIRealtimeWebSocket. */
export interface OpenAIRealtimeClientLike {
  on(event: string, fn: (...args: any[]) => void): unknown;
  off?(event: string, fn: (...args: any[]) => void): unknown;
  send(event: Record<string, unknown>): void;
  socket: unknown;
}

export type RealtimeTarget = RealtimeSessionLike | RealtimeTransportLike | OpenAIRealtimeClientLike | RealtimeChannelLike;

export interface OpenAIRealtimeAdapter {
  readonly state: Record<string, unknown>;
  onOpen(info?: { connectionId?: string }): void;
  onClose(event?: { code?: number; reason?: string }): void;
  onError(event?: unknown, errorType?: string): void;
  /** One server event, as an object or its JSON text. */
  handleServerEvent(event: string | { type: string; [k: string]: unknown }): void;
  /** One client event the app sends (function_call_output → tool.result; truncate → played_ms). */
  handleClientEvent(event: string | { type: string; [k: string]: unknown }): void;
  toolResult(callId: string, result?: unknown, error?: unknown): void;
  playbackStarted(ts?: number): void;
  /** The answer's last audio played out (WebSocket apps: from the player; WebRTC: output_audio_buffer.stopped). */
  playbackEnded(ts?: number): void;
  userSpeechStart(ts?: number, source?: "client_vad" | "push_to_talk"): void;
  userSpeechEnd(ts?: number, source?: "client_vad" | "push_to_talk"): void;
  /** The model's remote audio track, or a peer connection whose audio receivers carry it, into the recording. */
  addModelAudio(trackOrPeerConnection: MediaStreamTrack | RTCPeerConnection): void;
  /** Says once (trace onError and console.warn) that the adapter cannot see what it needs. */
  warn(code: string, message: string): void;
  detach(): void;
}

export declare function createOpenAIRealtimeAdapter(trace: TraceSink, options?: OpenAIAdapterOptions): OpenAIRealtimeAdapter;
export declare function attachOpenAIRealtime(target: RealtimeTarget, trace: TraceSink, options?: AttachOpenAIOptions): OpenAIRealtimeAdapter;
export default attachOpenAIRealtime;
