// Typings for the Gemini Live adapter (gemini-live.js).
import type { TraceSink } from "../voice-trace.js";

export interface GeminiAdapterOptions {
  /** Output audio sample rate (PCM16 mono), for generated_ms (default 24000; read from the MIME type when raw). */
  outputSampleRate?: number;
  /** Default true: the model's PCM chunks go into `trace.recorder` (right channel) when the call is recorded. */
  recordModelAudio?: boolean;
  connectionIdPrefix?: string;
  /**
   * Delay between queuing the first chunk on an idle player and hearing it (default: the streamer's
   * initialBufferTime); model.playback_start is recorded when that time comes, not predicted.
   */
  playbackDelayMs?: number | null | (() => number);
  /** Timers for that delay (default: the global ones). */
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (handle: unknown) => void;
  now?: () => number;
  /** Internal adapter errors (they never reach the app's emitter). */
  onError?: (error: unknown) => void;
}

export interface AttachGeminiOptions extends GeminiAdapterOptions {
  /**
   * An AudioStreamer-like player: addPCM16 (first playback), stop() (a stop with audio still unplayed is a
   * barge-in), onComplete (it played out).
   */
  audioStreamer?: AudioStreamerLike;
  /** Wrap client.onmessage or client.onMessage to see raw server messages (default true; attach before connect()). */
  rawMessages?: boolean;
  /** Wrap client.sendToolResponse to record tool results (default true). */
  toolResponses?: boolean;
}

export interface AudioStreamerLike {
  addPCM16(chunk: Uint8Array): void;
  isPlaying?: boolean;
  initialBufferTime?: number;
  stop?(): void;
  onComplete?: () => void;
}

/** The GenAILiveClient surface the adapter uses. */
export interface GenAILiveClientLike {
  on(event: string, fn: (...args: any[]) => void): unknown;
  off?(event: string, fn: (...args: any[]) => void): unknown;
  removeListener?(event: string, fn: (...args: any[]) => void): unknown;
  /** live-api-web-console's raw handler... */
  onmessage?: (message: any) => unknown;
  /** ...or the one other GenAILiveClients bind inside connect(). */
  onMessage?: (message: any) => unknown;
  status?: string;
  sendToolResponse?: (toolResponse: any) => unknown;
  getConfig?: () => { sessionResumption?: { handle?: string } } | null;
}

export interface LiveCallbacksLike {
  onopen?: () => void;
  onmessage?: (message: any) => void;
  onerror?: (e: any) => void;
  onclose?: (e: any) => void;
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
  userSpeechStart(ts?: number, source?: "client_vad" | "push_to_talk"): void;
  userSpeechEnd(ts?: number, source?: "client_vad" | "push_to_talk"): void;
  toolResult(callId: string, result?: unknown, error?: unknown): void;
  onToolResponse(toolResponse: { functionResponses?: Array<{ id?: string; name?: string; response?: any }> }): void;
  /** The first audio of the current generation is audible now (or at `ts`). */
  playbackStarted(ts?: number): void;
  /** The last audio of the finished generation played out. */
  playbackEnded(ts?: number): void;
  /** The app stopped its player: with audio still unplayed, an interruption {played_ms, generated_ms}. */
  playbackStopped(ts?: number): void;
  attachAudioStreamer(streamer: AudioStreamerLike): () => void;
  /** For `ai.live.connect({callbacks})`: callbacks that feed the adapter, then call yours. */
  wrapCallbacks<C extends LiveCallbacksLike>(callbacks?: C, info?: { resumeHandle?: string | null }): C & Required<LiveCallbacksLike>;
  /** Wraps the connected session's sendToolResponse so tool results are recorded; returns the session. */
  wrapSession<S>(session: S): S;
  /** Says once (trace onError and console.warn) that the adapter cannot see what it needs. */
  warn(code: string, message: string): void;
  /** Stops recording and undoes every wrap and listener. */
  detach(): void;
}

export declare function createGeminiLiveAdapter(trace: TraceSink, options?: GeminiAdapterOptions): GeminiLiveAdapter;
export declare function attachGeminiLive(client: GenAILiveClientLike, trace: TraceSink, options?: AttachGeminiOptions): GeminiLiveAdapter;
export declare function durationToMs(d: string | number | { seconds?: number; nanos?: number } | null | undefined): number | undefined;
export declare function base64Bytes(b64: string): number;
export default attachGeminiLive;
