"""The recording on the trace: the root links the whole call, each turn its time range within it.

Computed from session facts only (the recording's start on the session clock, the span times), in one place
the session service calls for every batch of spans that ended: the state machine knows nothing of audio.
A turn that ends before the browser's first chunk arrived (it sends that one within a second) has no range;
the root's ``voice.recording.start_time_unix_nano`` still places any span on the recording.
"""

from __future__ import annotations

from gateway import semconv as sc
from gateway.recordings.links import RecordingLinks, media_fragment
from gateway.recordings.turn_clips import MAX_MESSAGES_CHARS, TURNS, TurnRange
from gateway.sessions.state import FinishedSpan, SessionState


def annotate(state: SessionState, spans: list[FinishedSpan], links: RecordingLinks) -> None:
    rec = state.recording
    if rec is None or rec.started_ms is None or not spans:
        return
    origin_ns = int(rec.started_ms * 1_000_000) + (state.skew_ns or 0)
    url = links.url(state.session_id)
    root_id = state.trace.root_span_id
    for span in spans:
        if span.span_id == root_id and span.parent_id == state.trace.parent_span_id and span.name == sc.SPAN_SESSION:
            span.attributes.update({
                sc.VOICE_RECORDING_URI: url,
                sc.VOICE_RECORDING_FORMAT: rec.content_type or "",
                sc.VOICE_RECORDING_CHANNEL_LAYOUT: sc.RECORDING_CHANNEL_LAYOUT,
                sc.VOICE_RECORDING_DURATION_S: round(max(0, span.end_ns - origin_ns) / 1e9, 3),
                sc.VOICE_RECORDING_START_TIME: origin_ns,
            })
        elif span.attributes.get(sc.GEN_AI_OPERATION_NAME) == sc.OPERATION_INVOKE_AGENT \
                and sc.VOICE_TURN_NUMBER in span.attributes:
            start_s, end_s = (span.start_ns - origin_ns) / 1e9, (span.end_ns - origin_ns) / 1e9
            if end_s <= 0:
                continue  # the turn was over before the recording began
            span.attributes.update({
                sc.VOICE_RECORDING_URI: media_fragment(url, start_s, end_s),
                sc.VOICE_RECORDING_START_OFFSET_S: round(max(0.0, start_s), 3),
                sc.VOICE_RECORDING_END_OFFSET_S: round(end_s, 3),
            })
            # Per-turn clips for Langfuse (turn_clips.py): the turn's audio runs on until its answer played out.
            heard_ns = max([span.end_ns, *(e.time_ns for e in span.events if e.name == sc.EVENT_PLAYBACK_END)])
            TURNS.add(state.session_id, TurnRange(span.span_id, max(0.0, start_s), (heard_ns - origin_ns) / 1e9,
                                                  _messages(span, sc.GEN_AI_INPUT_MESSAGES),
                                                  _messages(span, sc.GEN_AI_OUTPUT_MESSAGES)))


def _messages(span: FinishedSpan, key: str) -> str | None:
    value = span.attributes.get(key)
    return value if isinstance(value, str) and len(value) <= MAX_MESSAGES_CHARS else None
