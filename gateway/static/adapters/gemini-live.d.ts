// Typings for the Gemini Live adapter (gemini-live.js).
import type { TraceSink } from "../voice-trace.js";

export interface GeminiAdapterOptions {
  /** Output audio sample rate (PCM16 mono), for generated_ms (default 24000; read from the MIME type when raw). */
  outputSampleRate?: number;
  connectionIdPrefix?: string;
  /** Delay between queuing the first chunk on an idle player and hearing it (default: the streamer's initialBufferTime). */
  playbackDelayMs?: number | null;
  now?: () => number;
  /** Internal adapter errors (they never reach the app's emitter). */
  onError?: (error: unknown) => void;
}

export interface AttachGeminiOptions extends GeminiAdapterOptions {
  /** An AudioStreamer-like player (addPCM16, isPlaying, initialBufferTime) whose first playback is reported. */
  audioStreamer?: { addPCM16(chunk: Uint8Array): void; isPlaying?: boolean; initialBufferTime?: number };
  /** Wrap client.onmessage to see raw server messages (default true; attach before connect()). */
  rawMessages?: boolean;
  /** Wrap client.sendToolResponse to record tool results (default true). */
  toolResponses?: boolean;
}

/** The GenAILiveClient surface the adapter uses. */
export interface GenAILiveClientLike {
  on(event: string, fn: (...args: any[]) => void): unknown;
  off?(event: string, fn: (...args: any[]) => void): unknown;
  removeListener?(event: string, fn: (...args: any[]) => void): unknown;
  onmessage?: (message: any) => unknown;
  sendToolResponse?: (toolResponse: any) => unknown;
  getConfig?: () => { sessionResumption?: { handle?: string } } | null;
}

export interface GeminiLiveAdapter {
  /** The newest resumable handle from sessionResumptionUpdate: reconnect with it. */
  readonly resumptionHandle: string | null;
  readonly state: Record<string, unknown>;
  onOpen(info?: { connectionId?: string; resumeHandle?: string | null }): void;
  onSetupComplete(): void;
  onClose(event?: { code?: number; reason?: string }): void;
  onError(event?: unknown, errorType?: string): void;
  onAudio(data: ArrayBuffer | Uint8Array): void;
  onContent(content: { modelTurn?: { parts?: Array<{ text?: string; thought?: boolean }> } }): void;
  onToolCall(toolCall: { functionCalls?: Array<{ id?: string; name?: string; args?: unknown }> }): void;
  onToolCallCancellation(cancellation: { ids?: string[] }): void;
  onInterrupted(): void;
  onTurnComplete(): void;
  /** A raw LiveServerMessage; `{surfaced: true}` skips what a GenAILiveClient already emits as events. */
  handleServerMessage(message: any, how?: { surfaced?: boolean }): void;
  /** Client VAD / push-to-talk. */
  userSpeechStart(ts?: number): void;
  userSpeechEnd(ts?: number): void;
  toolResult(callId: string, result?: unknown, error?: unknown): void;
  onToolResponse(toolResponse: { functionResponses?: Array<{ id?: string; name?: string; response?: any }> }): void;
  /** The first audio of the current generation is audible now (or at `ts`). */
  playbackStarted(ts?: number): void;
  attachAudioStreamer(streamer: AttachGeminiOptions["audioStreamer"]): () => void;
  /** Stops recording and undoes every wrap and listener. */
  detach(): void;
}

export declare function createGeminiLiveAdapter(trace: TraceSink, options?: GeminiAdapterOptions): GeminiLiveAdapter;
export declare function attachGeminiLive(client: GenAILiveClientLike, trace: TraceSink, options?: AttachGeminiOptions): GeminiLiveAdapter;
export declare function durationToMs(d: string | number | { seconds?: number; nanos?: number } | null | undefined): number | undefined;
export declare function base64Bytes(b64: string): number;
export default attachGeminiLive;
