"""Open span records hold only what the session cannot tell again; finished spans carry everything, in order."""

from __future__ import annotations

from typing import Any

from gateway.events import parse_event
from gateway.sessions.machine import MachineOptions, SessionMachine
from gateway.sessions.state import FinishedSpan, SessionState, TraceRef, new_span_id, new_trace_id

T0 = 1_800_000_000_000_000_000


def play(events: list[dict[str, Any]]) -> tuple[SessionState, list[FinishedSpan]]:
    machine = SessionMachine(MachineOptions())
    state = SessionState("s-1", TraceRef(new_trace_id(), new_span_id(), None, True), T0, T0, T0,
                         user_id="u", provider="gcp.gemini", model="gemini-live", agent="helper")
    out: list[FinishedSpan] = []
    for n, fields in enumerate(events, start=1):
        out += machine.apply(state, parse_event({"id": f"e{n}", **fields}, ""), T0 + n * 10_000_000)
    return state, out


def test_finished_spans_carry_the_operation_model_and_turn_number_their_open_records_leave_out() -> None:
    state, _ = play([
        {"type": "connection.open", "connection_id": "c1"}, {"type": "connection.setup_complete"},
        {"type": "user.speech_start"}, {"type": "user.speech_end"}, {"type": "model.response_start"},
    ])
    assert state.turn is not None and state.turn.inference is not None and state.connection is not None
    assert list(state.turn.span.attributes) == ["voice.latency.user_to_first_chunk_ms"]
    assert state.turn.inference.attributes == {}
    assert state.connection.attributes == {"voice.connection.id": "c1", "voice.connection.setup_ms": 10.0}
    assert state.turn.span.name == "invoke_agent helper"
    assert state.turn.inference.name == "realtime_inference gemini-live"
    _, done = play([
        {"type": "connection.open", "connection_id": "c1"}, {"type": "connection.setup_complete"},
        {"type": "user.speech_start"}, {"type": "user.speech_end"}, {"type": "model.response_start"},
        {"type": "model.turn_complete"}, {"type": "connection.close", "code": 1000},
    ])
    spans = {s.name.split(" ")[0]: s for s in done}
    session = ["session.id", "gen_ai.conversation.id", "user.id", "gen_ai.agent.name"]
    assert list(spans["invoke_agent"].attributes)[:7] == [
        *session, "gen_ai.operation.name", "voice.turn.number", "voice.latency.user_to_first_chunk_ms"]
    assert spans["invoke_agent"].attributes["gen_ai.operation.name"] == "invoke_agent"
    assert spans["invoke_agent"].attributes["voice.turn.number"] == 1
    assert list(spans["realtime_inference"].attributes)[:7] == [
        *session, "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.operation.name"]
    assert spans["realtime_inference"].attributes["gen_ai.operation.name"] == "generate_content"
    assert list(spans["voice.connection"].attributes)[:7] == [
        *session, "gen_ai.provider.name", "gen_ai.request.model", "voice.connection.id"]


def test_sessions_share_their_span_names_and_empty_containers() -> None:
    a, _ = play([{"type": "user.speech_start"}, {"type": "model.response_start"}])
    b, _ = play([{"type": "user.speech_start"}, {"type": "model.response_start"}])
    assert a.turn is not None and b.turn is not None and a.turn.inference and b.turn.inference
    assert a.turn.span.name is b.turn.span.name and a.turn.inference.name is b.turn.inference.name
    assert a.usage_total is b.usage_total and a.turn.user_text is None and a.held_spans is None


def test_the_shared_empty_dicts_refuse_changes_and_stay_empty_through_a_whole_session() -> None:
    import random

    import pytest

    from gateway.sessions.state import NO_ATTRIBUTES, NO_TOOLS
    from gateway.simulate import three_turn_session

    events = [{k: v for k, v in e.items() if k not in ("id", "seq", "ts")}
              for e in three_turn_session(0, random.Random(1)).all_events()]
    events += [{"type": "session.update", "attributes": {"plan": "pro"}}, {"type": "mark", "name": "checkout"},
               {"type": "error", "error_type": "ws_closed"}, {"type": "connection.setup_complete"},
               {"type": "tool.call", "call_id": "c9", "name": "t"}, {"type": "tool.cancel", "call_ids": ["c9"]}]
    state, _ = play(events)
    assert state.attributes == {"plan": "pro"}
    assert NO_ATTRIBUTES == {} and NO_TOOLS == {}
    with pytest.raises(TypeError):
        NO_ATTRIBUTES["x"] = 1
    with pytest.raises(TypeError):
        NO_TOOLS.setdefault("x", None)
    assert NO_TOOLS.pop("x", None) is None
