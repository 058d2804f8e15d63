"""A session's summary, as the API returns it at its end (and, running, while it is open)."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.sessions.state import AWAIT_PLAYBACK, SessionState


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: a value that occurred, which is what a reader of p95 of a few turns expects."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def summarize(state: SessionState) -> dict[str, object]:
    """The running (or final) summary of a session, as the API returns it."""
    u = state.usage_total
    for turn in (state.turn, state.held):
        if turn is not None and turn.usage is not None and turn.awaiting != AWAIT_PLAYBACK:
            u = u + turn.usage  # not yet in the total (a playing turn's is)
    end_ns = state.end_ns if state.end_ns is not None else state.last_event_ns
    return {
        "session_id": state.session_id,
        "trace_id": state.trace.trace_id,
        "duration_ms": round((end_ns - state.root_start_ns) / 1e6, 3),
        "end_reason": state.end_reason,
        "turns": state.turn_count,
        "interruptions": state.interruption_count,
        "tool_calls": state.tool_call_count,
        "connections": state.connection_count,
        "errors": state.error_count,
        "usage": {
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cache_read_input_tokens": u.cache_read_input_tokens,
            "input": {"text": u.input_text_tokens, "audio": u.input_audio_tokens, "image": u.input_image_tokens},
            "output": {"text": u.output_text_tokens, "audio": u.output_audio_tokens},
        },
        "latency": {
            "user_to_first_audio_ms": {
                "p50": percentile(state.first_audio_ms, 50) if state.first_audio_ms else None,
                "p95": percentile(state.first_audio_ms, 95) if state.first_audio_ms else None,
                "turns_measured": len(state.first_audio_ms),
            },
        },
        "tool_errors": state.tool_error_count,
        "cost": state.cost_total.to_json() if state.cost_total is not None else None,
    }
