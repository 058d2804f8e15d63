// Typings for recorder.js: the call recording of the Voice Trace Gateway browser client (README "Recordings").

export interface RecorderSettings {
  /** Each chunk's length; a closed tab loses at most one. Default 4000. */
  chunkMs?: number;
  /** The first chunk is cut this early, so the gateway learns when recording began. Default 1000. */
  firstChunkMs?: number;
  audioBitsPerSecond?: number;
  /** Chunks waiting for an unreachable gateway past this stop the recording. Default 8 MiB. */
  maxPendingBytes?: number;
  maxAttempts?: number;
  /** MediaRecorder types tried in order. */
  mimeTypes?: string[];
}

export interface RecordingOptions {
  /** The app's consent to record this call (the operator must also capture `audio`). */
  recordAudio?: boolean;
  /** The user's microphone stream: the recording's left channel. */
  microphone?: MediaStream;
  recorder?: RecorderSettings;
  /** For VoiceTrace.fromToken: the `recording` field of the session answer your backend got. */
  recording?: { enabled: boolean; [key: string]: unknown };
}

export type RecorderState = "waiting" | "recording" | "stopping" | "stopped" | "off" | "failed";

export interface RecorderStats {
  chunks: number;
  uploaded: number;
  bytes: number;
  retries: number;
  pendingBytes: number;
}

export declare const RECORDER_DEFAULTS: Readonly<Required<RecorderSettings>>;
export declare function pickMimeType(candidates: string[], MediaRecorderImpl?: unknown): string;

export declare class CallRecorder {
  readonly state: RecorderState;
  /** What MediaRecorder writes, e.g. "audio/webm;codecs=opus" (older Safari: "audio/mp4"). */
  readonly mimeType: string | null;
  /** Client clock (ms since the epoch) at the recording's 0. */
  readonly startedAt: number | null;
  readonly stats: Readonly<RecorderStats>;
  /** Resolves when the recording stopped and its last chunk was uploaded (or given up). */
  readonly done: Promise<CallRecorder>;
  addUserStream(stream: MediaStream): void;
  /** The model's audio as a track or stream (OpenAI WebRTC's remote track). */
  addModelTrack(trackOrStream: MediaStreamTrack | MediaStream): void;
  /** The model's audio as PCM (Gemini Live 24 kHz chunks, OpenAI Realtime audio deltas), played back to back. */
  feedModelPcm(samples: Int16Array | Float32Array, sampleRate?: number): void;
  /** Drops model audio scheduled but not yet played (after an interruption). */
  clearModelAudio(): void;
  stop(): Promise<CallRecorder>;
}

export default CallRecorder;
