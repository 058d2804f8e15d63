"""Span and attribute names, in one place.

The OpenTelemetry GenAI semantic conventions are still Development status and
rename things between releases; every name the gateway emits lives here so a
rename is a one-line change. ``voice.*`` is the gateway's own namespace for what
the conventions lack.
"""

from typing import Final

# Span names (the variable part, agent/model/tool name, is appended with a space).
SPAN_SESSION: Final = "voice_session"
SPAN_CONNECTION: Final = "voice.connection"
SPAN_TURN: Final = "invoke_agent"
SPAN_USER_SPEECH: Final = "user_speech"
SPAN_INFERENCE: Final = "realtime_inference"
SPAN_TOOL: Final = "execute_tool"

# Span event names.
EVENT_INTERRUPTION: Final = "voice.interruption"
EVENT_EXCEPTION: Final = "exception"
EVENT_SETUP_COMPLETE: Final = "voice.connection.setup_complete"
EVENT_GO_AWAY: Final = "voice.connection.go_away"
EVENT_RESUMED: Final = "voice.connection.resumed"
EVENT_GENERATION_COMPLETE: Final = "voice.generation_complete"
EVENT_FIRST_AUDIO: Final = "voice.first_audio"
EVENT_FIRST_PLAYBACK: Final = "voice.first_playback"
EVENT_PLAYBACK_END: Final = "voice.playback_end"

# GenAI semantic conventions.
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_AGENT_INVOCATION_END_REASON: Final = "gen_ai.agent.invocation.end_reason"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_AUDIO_INPUT_TOKENS: Final = "gen_ai.usage.audio.input_tokens"
GEN_AI_USAGE_AUDIO_OUTPUT_TOKENS: Final = "gen_ai.usage.audio.output_tokens"
GEN_AI_USAGE_TEXT_INPUT_TOKENS: Final = "gen_ai.usage.text.input_tokens"
GEN_AI_USAGE_TEXT_OUTPUT_TOKENS: Final = "gen_ai.usage.text.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"

OPERATION_INVOKE_AGENT: Final = "invoke_agent"
OPERATION_GENERATE_CONTENT: Final = "generate_content"
OPERATION_EXECUTE_TOOL: Final = "execute_tool"

# General conventions.
SESSION_ID: Final = "session.id"
USER_ID: Final = "user.id"
ERROR_TYPE: Final = "error.type"
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"
USER_AGENT: Final = "user_agent.original"

# The gateway's own namespace.
VOICE_SESSION_END_REASON: Final = "voice.session.end_reason"
VOICE_SESSION_TURN_COUNT: Final = "voice.session.turn_count"
VOICE_SESSION_INTERRUPTION_COUNT: Final = "voice.session.interruption_count"
VOICE_SESSION_TOOL_CALL_COUNT: Final = "voice.session.tool_call_count"
VOICE_SESSION_CONNECTION_COUNT: Final = "voice.session.connection_count"
VOICE_SESSION_ERROR_COUNT: Final = "voice.session.error_count"
VOICE_SESSION_TAGS: Final = "voice.session.tags"
VOICE_SESSION_TIMEOUT_KIND: Final = "voice.session.timeout_kind"
VOICE_SESSION_TRANSCRIPT: Final = "voice.session.transcript"
VOICE_CLIENT_SDK: Final = "voice.client.sdk"
VOICE_ATTRIBUTE_PREFIX: Final = "voice.attr."
VOICE_TURN_NUMBER: Final = "voice.turn.number"
VOICE_LATENCY_USER_TO_FIRST_AUDIO_MS: Final = "voice.latency.user_to_first_audio_ms"
VOICE_LATENCY_USER_TO_FIRST_PLAYBACK_MS: Final = "voice.latency.user_to_first_playback_ms"
VOICE_LATENCY_SOURCE: Final = "voice.latency.source"
VOICE_SPEECH_SOURCE: Final = "voice.speech.source"  # how user_speech was detected: client_vad, provider_vad...
VOICE_LATENCY_USER_TO_FIRST_CHUNK_MS: Final = "voice.latency.user_to_first_chunk_ms"
VOICE_LATENCY_TTFA_P50_MS: Final = "voice.latency.user_to_first_audio_p50_ms"
VOICE_LATENCY_TTFA_P95_MS: Final = "voice.latency.user_to_first_audio_p95_ms"
VOICE_TURN_GAP_MS: Final = "voice.turn.gap_ms"
VOICE_CONNECTION_SETUP_MS: Final = "voice.connection.setup_ms"
VOICE_SESSION_TOOL_ERROR_COUNT: Final = "voice.session.tool_error_count"
VOICE_FIRST_AUDIO_TIME: Final = "voice.first_audio.time_unix_nano"
VOICE_INTERRUPTION_PLAYED_MS: Final = "voice.interruption.played_ms"
VOICE_INTERRUPTION_GENERATED_MS: Final = "voice.interruption.generated_ms"
VOICE_CONNECTION_ID: Final = "voice.connection.id"
VOICE_CONNECTION_CLOSE_CODE: Final = "voice.connection.close_code"
VOICE_CONNECTION_CLOSE_REASON: Final = "voice.connection.close_reason"
VOICE_CONNECTION_END_REASON: Final = "voice.connection.end_reason"
VOICE_GO_AWAY_TIME_LEFT_MS: Final = "voice.connection.go_away.time_left_ms"
VOICE_RESUMPTION_HANDLE: Final = "voice.connection.resumption_handle"
VOICE_SPAN_END_REASON: Final = "voice.span.end_reason"
VOICE_TOOL_END_REASON: Final = "voice.tool.end_reason"
VOICE_MARK_NAME: Final = "voice.mark.name"
VOICE_USAGE_REPORTS: Final = "voice.usage.report_count"

# Cost, priced by the gateway (gateway/analytics/pricing.py) on realtime_inference spans and summed on the root.
VOICE_COST_PREFIX: Final = "voice.cost."
VOICE_COST_INPUT_USD: Final = "voice.cost.input_usd"
VOICE_COST_OUTPUT_USD: Final = "voice.cost.output_usd"
VOICE_COST_TOTAL_USD: Final = "voice.cost.total_usd"
VOICE_COST_ESTIMATED: Final = "voice.cost.estimated"

# End reasons.
END_COMPLETED: Final = "completed"
END_INTERRUPTED: Final = "interrupted"
END_SESSION_CLOSED: Final = "session_closed"
END_TIMEOUT: Final = "timeout"
END_GATEWAY_SHUTDOWN: Final = "gateway_shutdown"
END_CANCELLED: Final = "cancelled"
END_ERROR: Final = "error"
END_REPLACED: Final = "replaced"
END_USER_DISCONNECT: Final = "user_disconnect"
END_OTHER: Final = "other"

# Session end reasons that get a metric series of their own. A client may end with any short string; the
# span keeps it, but a metric label taken from clients must come from a closed set.
METRIC_SESSION_END_REASONS: Final = frozenset(
    {END_COMPLETED, END_USER_DISCONNECT, END_ERROR, END_TIMEOUT, END_GATEWAY_SHUTDOWN, END_CANCELLED}
)


def metric_end_reason(reason: str | None) -> str:
    return reason if reason in METRIC_SESSION_END_REASONS else END_OTHER

# Call recordings (gateway/recordings): the root links the whole call, each turn its time range in it.
VOICE_RECORDING_URI: Final = "voice.recording.uri"  # signed, expiring; on a turn with a #t=start,end fragment
VOICE_RECORDING_FORMAT: Final = "voice.recording.format"  # the MIME type the browser recorded
VOICE_RECORDING_CHANNEL_LAYOUT: Final = "voice.recording.channel_layout"
VOICE_RECORDING_DURATION_S: Final = "voice.recording.duration_s"
VOICE_RECORDING_START_TIME: Final = "voice.recording.start_time_unix_nano"  # recording's 0 on the session clock
VOICE_RECORDING_START_OFFSET_S: Final = "voice.recording.start_offset_s"  # a turn's range within the recording
VOICE_RECORDING_END_OFFSET_S: Final = "voice.recording.end_offset_s"
RECORDING_CHANNEL_LAYOUT: Final = "stereo: left=user, right=model"
