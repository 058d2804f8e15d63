// Typings for voice-trace.js, the Voice Trace Gateway browser client.

import type { CallRecorder, RecordingOptions } from "./recorder.js";

export declare const VERSION: string;

/** The events of DESIGN §4, with their fields. `type`, `id`, `seq` and `ts` are added by the client. */
export interface EventFields {
  "connection.open": { connection_id?: string };
  "connection.setup_complete": {};
  "connection.go_away": { time_left_ms?: number };
  "connection.resumed": { handle?: string };
  "connection.close": { code?: number; reason?: string };
  /** How speech was detected: the app's VAD (default), a push-to-talk button, or the provider's VAD relayed. */
  "user.speech_start": { source?: SpeechSource };
  "user.speech_end": { source?: SpeechSource };
  "user.transcript": { text: string; final?: boolean };
  "model.response_start": {};
  "model.audio_start": {};
  "model.playback_start": {};
  /** The player played the last audio of the finished generation (until then a barge-in still cuts the turn). */
  "model.playback_end": {};
  "model.transcript": { text: string };
  "model.generation_complete": {};
  "model.turn_complete": { reason?: string };
  "model.interrupted": { played_ms?: number; generated_ms?: number };
  /** Gemini `usageMetadata` as sent, or OpenAI Realtime `response.usage`, or normalized counts. */
  "model.usage": { usage: Record<string, unknown> };
  "tool.call": { call_id: string; name: string; arguments?: unknown };
  "tool.result": { call_id: string; result?: unknown; error?: unknown };
  "tool.cancel": { call_ids: string[] };
  error: { error_type: string; message?: string };
  "session.update": { user_id?: string; tags?: string[]; attributes?: Attributes };
  mark: { name: string; attributes?: Attributes };
}

export type EventType = keyof EventFields;
export type SpeechSource = "client_vad" | "push_to_talk" | "provider_vad";
/** Content kinds a session can keep: the gateway's `capture` answer lists those it keeps. */
export type ContentKind = "transcripts" | "tool_arguments" | "tool_results";
export declare const CONTENT_KINDS: readonly ContentKind[];
/**
 * The event without the words a session keeping `capture` would throw away (user transcripts keep their time
 * with empty text, model transcripts are not sent, tool arguments/results are left out); null: send nothing.
 */
export declare function withoutUncaptured<E extends { type: string }>(event: E, capture: readonly string[] | null | undefined): E | null;
export type Attributes = Record<string, string | number | boolean>;

export type TraceEvent<T extends EventType = EventType> = {
  type: T;
  id: string;
  seq: number;
  /** Client time, ms since the epoch. */
  ts: number;
  /** Set when the client cut large fields to fit `maxEventBytes`. */
  truncated?: true;
} & EventFields[T];

export type SessionState = "pending" | "active" | "ending" | "ended" | "failed";

export interface VoiceTraceError {
  /**
   * network | http | rejected | queue_overflow | start_failed | session_lost | end_failed | beacon |
   * record_failed | internal
   */
  kind: string;
  message: string;
  status: number | null;
  /** The gateway's problem+json body, when there was one. */
  problem: Record<string, unknown> | null;
  error: Error | null;
  sessionId: string | null;
  /** A retry is scheduled (the events are not lost). */
  retrying?: boolean;
  delay_ms?: number;
  /** Events lost with this failure. */
  dropped?: number;
  /** Per-event rejections from a 202 answer, with the event that was rejected. */
  rejected?: Array<{ index: number; errors: unknown[]; event?: TraceEvent }>;
}

export interface VoiceTraceStats {
  recorded: number;
  /** Events the gateway accepted (from its answers; beacons have none). */
  accepted: number;
  duplicates: number;
  rejected: number;
  /** Events lost: queue overflow, a final failure, a session that failed. */
  dropped: number;
  truncated: number;
  requests: number;
  retries: number;
  beacons: number;
  beaconFallbacks: number;
}

export type PropagateTarget = string | RegExp | ((url: string) => boolean);
export type FetchLike = (input: any, init?: any) => Promise<any>;

export interface ClientOptions extends RecordingOptions {
  /** Gateway base URL, e.g. "https://gw.example.com" ("" = this origin). */
  gatewayUrl?: string;
  /** Flush when this many events are queued (default 20). */
  maxBatchEvents?: number;
  /** Flush this long after the first queued event (default 1000 ms). */
  flushIntervalMs?: number;
  /** Largest batch body (default 60 KiB, under the 64 KiB keepalive budget). */
  maxBatchBytes?: number;
  /** Queue bound; beyond it the oldest events are dropped and counted (default 1000). */
  maxQueueEvents?: number;
  /** Larger events get their biggest fields truncated (default 32 KiB). */
  maxEventBytes?: number;
  /** Backoff: base * 2^(attempt-1), capped, with equal jitter (defaults 500 ms, 30 s). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Attempts per batch before it is dropped (default 10). */
  maxAttempts?: number;
  /** Cap on a Retry-After wait (default 120 s). */
  maxRetryAfterMs?: number;
  /** Abort a request after this long and retry it (default 15 s; 0 = never). */
  requestTimeoutMs?: number;
  /** Attempts to create the session (default 5). */
  startMaxAttempts?: number;
  /** Largest beacon body (default 63 KiB). */
  beaconMaxBytes?: number;
  /** End reason sent on pagehide (default "user_disconnect"). */
  unloadReason?: string;
  /** End the session on visibilitychange → hidden too, not only on pagehide (default false). */
  endOnHidden?: boolean;
  /** Listen to pagehide / visibilitychange (default true). */
  pageLifecycle?: boolean;
  /** Use fetch keepalive (default true). */
  keepalive?: boolean;
  /** Token in the query and text/plain bodies: simple requests, no CORS preflight (default false). */
  tokenInQuery?: boolean;
  /** Only these URLs get the traceparent header from traceFetch / wrapFetch (default: all). */
  propagateTo?: PropagateTarget | PropagateTarget[];
  /** Called for every failure; never let it matter to the call. */
  onError?: (error: VoiceTraceError) => void;
  /** Called for every recorded event (e.g. a debug panel). */
  onEvent?: (event: TraceEvent) => void;
  debug?: boolean;

  // Injection points (tests, unusual environments).
  fetch?: FetchLike;
  /** The fetch traceFetch uses when none is passed. */
  appFetch?: FetchLike;
  sendBeacon?: (url: string, data: Blob | string) => boolean;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (handle: unknown) => void;
  now?: () => number;
  random?: () => number;
  window?: EventTarget | null;
  document?: (EventTarget & { visibilityState?: string }) | null;
}

export interface StartOptions extends ClientOptions {
  sessionId?: string;
  userId?: string;
  /** e.g. "gcp.gemini", "openai" */
  provider?: string;
  model?: string;
  agent?: string;
  tags?: string[];
  attributes?: Attributes;
  client?: { sdk?: string; user_agent?: string };
  /** When the operator requires an API key to create sessions (prefer creating them on your backend). */
  apiKey?: string;
  /** Make the session a child of this W3C traceparent (join the app's trace). */
  parentTraceparent?: string;
}

export interface FromTokenOptions extends ClientOptions {
  sessionId: string;
  token: string;
  traceparent?: string;
  traceId?: string;
  /** The `capture` list of the session-creation answer your backend got (absent: everything is sent). */
  capture?: ContentKind[];
}

export interface SessionSummary {
  session_id: string;
  trace_id: string;
  duration_ms: number;
  end_reason: string;
  turns: number;
  interruptions: number;
  tool_calls: number;
  errors: number;
  usage: Record<string, unknown>;
  cost: unknown;
  [key: string]: unknown;
}

export declare class VoiceTrace {
  /** Creates the session at the gateway; never rejects (a client that could not start has state "failed"). */
  static start(options?: StartOptions): Promise<VoiceTrace>;
  /** Like start, but returns at once; events recorded meanwhile are queued. Await `ready`. */
  static create(options?: StartOptions): VoiceTrace;
  /** For a session your backend created (POST /v1/sessions) and handed to the page. */
  static fromToken(options: FromTokenOptions): VoiceTrace;

  readonly ready: Promise<VoiceTrace>;
  readonly state: SessionState;
  readonly sessionId: string | null;
  readonly traceId: string | null;
  readonly rootSpanId: string | null;
  readonly traceparent: string | null;
  readonly token: string | null;
  readonly sampled: boolean | null;
  readonly expiresAt: string | null;
  readonly idleTimeoutS: number | null;
  /** The gateway's POST /v1/sessions answer, when this client created the session. */
  readonly session: Record<string, unknown> | null;
  /**
   * Content kinds the session keeps (from the gateway's answer or fromToken's `capture`); null when unknown or
   * an older gateway that does not say (then everything is sent). Words it does not keep never leave the page.
   */
  readonly capture: ContentKind[] | null;
  /** Whether the session keeps this content kind (true while unknown). */
  captures(kind: ContentKind): boolean;
  /** Reports a problem through `onError` (adapters use kind "adapter" when they cannot see a client). */
  reportProblem(kind: string, message: string, extra?: Record<string, unknown>): void;
  /** The call recorder, when `recordAudio` was asked (its `state` is "off" if the gateway does not record). */
  readonly recorder: CallRecorder | null;
  readonly stats: Readonly<VoiceTraceStats>;
  /** Events recorded and not yet acknowledged. */
  readonly pending: number;

  /** The client's clock (ms since the epoch). */
  now(): number;
  /** Records an event; returns its id, or null when it was not recorded. Never throws. */
  record<T extends EventType>(type: T, fields?: EventFields[T], options?: { ts?: number }): string | null;
  record(type: string, fields?: Record<string, unknown>, options?: { ts?: number }): string | null;
  mark(name: string, attributes?: Attributes): string | null;
  update(fields: EventFields["session.update"]): string | null;
  /** Sends what is queued; resolves when delivered or given up. Never rejects. */
  flush(): Promise<void>;
  /** Sends the rest and ends the session; resolves to the summary, or null. Same promise when called again. */
  end(reason?: string, extra?: { ts?: number; events?: Array<{ type: string; [k: string]: unknown }> }): Promise<SessionSummary | null>;
  /** fetch() with the session's traceparent header. */
  traceFetch(input: any, init?: any, fetchImpl?: FetchLike, propagateTo?: PropagateTarget | PropagateTarget[]): Promise<any>;
  /** A fetch-compatible function that adds the session's traceparent header. */
  wrapFetch<F extends FetchLike>(fetchImpl?: F, options?: { propagateTo?: PropagateTarget | PropagateTarget[] }): F;
  /** { traceparent } to add to requests yourself ({} before the session exists). */
  traceHeaders(): { traceparent?: string };
  /** Sends the rest by sendBeacon now (what pagehide does); returns the number of beacons the browser took. */
  sendBeaconNow(withEnd?: boolean, reason?: string): number;
  /** Removes listeners and timers without ending the session. */
  dispose(): void;
}

export declare const DEFAULTS: Readonly<Required<Pick<ClientOptions,
  | "maxBatchEvents" | "flushIntervalMs" | "maxBatchBytes" | "maxQueueEvents" | "maxEventBytes" | "retryBaseMs"
  | "retryMaxMs" | "maxAttempts" | "maxRetryAfterMs" | "requestTimeoutMs" | "startMaxAttempts" | "beaconMaxBytes"
  | "unloadReason" | "endOnHidden" | "pageLifecycle" | "keepalive" | "tokenInQuery">>>;

export declare function parseTraceparent(tp: string | null | undefined): { traceId: string; spanId: string; sampled: boolean } | null;
export declare function parseRetryAfter(value: string | null | undefined, nowMs: number): number | null;

/** What adapters need from a client: VoiceTrace, or anything with record() (and optionally now()). */
export interface TraceSink {
  record(type: string, fields?: Record<string, unknown>, options?: { ts?: number }): string | null;
  now?(): number;
  /** Where adapters report that they cannot see a client (VoiceTrace: through onError). */
  reportProblem?(kind: string, message: string, extra?: Record<string, unknown>): void;
  /** The call recording (VoiceTrace with recordAudio): adapters hand it the model's audio. */
  recorder?: Pick<import("./recorder.js").CallRecorder, "feedModelPcm" | "clearModelAudio" | "addModelTrack"> | null;
}

export default VoiceTrace;
