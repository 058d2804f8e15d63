"""The session's root span, built once at the session's end from what the state counted."""

from __future__ import annotations

from gateway import semconv as sc
from gateway.sessions.state import Attrs, FinishedSpan, SessionState
from gateway.sessions.summary import percentile


def root_span(state: SessionState, t: int, reason: str, attrs: Attrs) -> FinishedSpan:
    """``attrs``: the session's own facts (ids, model, transcript, the caller's extras), which win."""
    out: Attrs = {f"{sc.VOICE_ATTRIBUTE_PREFIX}{k}": v for k, v in state.attributes.items()}
    if state.client_sdk:
        out[sc.VOICE_CLIENT_SDK] = state.client_sdk
    if state.user_agent:
        out[sc.USER_AGENT] = state.user_agent
    out.update({
        sc.VOICE_SESSION_END_REASON: reason,
        sc.VOICE_SESSION_TURN_COUNT: state.turn_count,
        sc.VOICE_SESSION_INTERRUPTION_COUNT: state.interruption_count,
        sc.VOICE_SESSION_TOOL_CALL_COUNT: state.tool_call_count,
        sc.VOICE_SESSION_CONNECTION_COUNT: state.connection_count,
        sc.VOICE_SESSION_ERROR_COUNT: state.error_count,
        sc.VOICE_SESSION_TOOL_ERROR_COUNT: state.tool_error_count,
    })
    if state.first_audio_ms:
        out[sc.VOICE_LATENCY_TTFA_P50_MS] = percentile(state.first_audio_ms, 50)
        out[sc.VOICE_LATENCY_TTFA_P95_MS] = percentile(state.first_audio_ms, 95)
    out.update(state.usage_total.span_attributes())
    if state.cost_total is not None:
        out.update(state.cost_total.span_attributes())
    out.update(attrs)
    error = f"session ended: {reason}" if reason == sc.END_ERROR else None
    start = state.root_start_ns
    return FinishedSpan(
        sc.SPAN_SESSION, state.trace.root_span_id, state.trace.parent_span_id, start, max(t, start), "internal",
        out, tuple(state.root_events), error,
    )
