// Typings for the OpenAI Realtime adapter (openai-realtime.js).
import type { TraceSink } from "../voice-trace.js";

export interface OpenAIAdapterOptions {
  /** Output audio sample rate (PCM16), for generated_ms (default 24000). */
  outputSampleRate?: number;
  connectionIdPrefix?: string;
  now?: () => number;
  onError?: (error: unknown) => void;
}

export interface AttachOpenAIOptions extends OpenAIAdapterOptions {
  /** Wrap channel.send to see tool outputs and truncation (default true). */
  clientEvents?: boolean;
}

/** An RTCDataChannel ("oai-events") or a WebSocket. */
export interface RealtimeChannelLike extends EventTarget {
  readyState?: string | number;
  send?(data: string): void;
}

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
  userSpeechStart(ts?: number): void;
  userSpeechEnd(ts?: number): void;
  detach(): void;
}

export declare function createOpenAIRealtimeAdapter(trace: TraceSink, options?: OpenAIAdapterOptions): OpenAIRealtimeAdapter;
export declare function attachOpenAIRealtime(channel: RealtimeChannelLike, trace: TraceSink, options?: AttachOpenAIOptions): OpenAIRealtimeAdapter;
export default attachOpenAIRealtime;
