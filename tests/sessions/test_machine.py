from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from conftest import Recorder
from opentelemetry.trace import SpanKind, StatusCode

from gateway.analytics.pricing import Pricer
from gateway.analytics.usage import normalize_usage
from gateway.events import parse_event
from gateway.sessions.clock import event_time_ns
from gateway.sessions.machine import MachineOptions, SessionMachine
from gateway.sessions.state import SessionState, TraceRef, new_span_id, new_trace_id
from gateway.sessions.summary import summarize
from gateway.simulate import gemini_usage

T0 = 1_800_000_000_000_000_000  # ns


def new_state(parent: str | None = None, **kw: Any) -> SessionState:
    trace = TraceRef(new_trace_id(), new_span_id(), parent, True)
    return SessionState(session_id="s-1", trace=trace, start_ns=T0, last_activity_ns=T0, last_event_ns=T0,
                        provider="gcp.gemini", model="gemini-live", agent="helper", **kw)


class Run:
    def __init__(self, machine: SessionMachine, recorder: Recorder, state: SessionState | None = None) -> None:
        self.machine, self.recorder = machine, recorder
        self.state = state or new_state()
        self.t = T0
        self.n = 0

    def send(self, kind: str, after_ms: float = 10, **fields: Any) -> None:
        self.n += 1
        self.t += int(after_ms * 1e6)
        event = parse_event({"type": kind, "id": f"e{self.n}", **fields}, "")
        spans = self.machine.apply(self.state, event, self.t)
        self.recorder.emitter.emit(self.state.trace, spans)

    def end(self, reason: str = "completed", after_ms: float = 10) -> None:
        self.t += int(after_ms * 1e6)
        self.recorder.emitter.emit(self.state.trace, self.machine.end(self.state, reason, self.t))


def by_id(recorder: Recorder) -> dict[int, Any]:
    return {s.context.span_id: s for s in recorder.spans()}


def test_three_turn_session_builds_one_tree_with_every_span_once(machine: SessionMachine, recorder: Recorder) -> None:
    r = Run(machine, recorder)
    r.send("connection.open", connection_id="c1")
    r.send("connection.setup_complete")
    r.send("user.speech_start")
    r.send("user.transcript", text="weather?")
    r.send("user.speech_end")
    r.send("model.response_start")
    r.send("tool.call", call_id="t1", name="get_weather", arguments={"city": "Paris"})
    r.send("tool.result", 420, call_id="t1", result={"temp": 18})
    r.send("model.audio_start", 200)
    r.send("model.usage", usage=gemini_usage(10, 100, 200))
    r.send("model.turn_complete")
    r.send("user.transcript", text="tell me a story")
    r.send("model.response_start")
    r.send("model.interrupted", 900, played_ms=800, generated_ms=1500)
    r.send("connection.go_away", time_left_ms=5000)
    r.send("connection.open", connection_id="c2")
    r.send("connection.resumed", handle="h")
    r.send("user.speech_start")
    r.send("user.speech_end")
    r.send("model.response_start")
    r.send("model.turn_complete")
    r.end()

    spans = recorder.spans()
    ids = [s.context.span_id for s in spans]
    assert len(ids) == len(set(ids)), "a span was exported twice"
    assert {s.context.trace_id for s in spans} == {int(r.state.trace.trace_id, 16)}
    root = next(s for s in spans if s.name == "voice_session")
    assert f"{root.context.span_id:016x}" == r.state.trace.root_span_id
    assert root.parent is None
    assert spans[-1] is root, "the root is exported last, its children long before"
    counts = Counter(s.name.split(" ")[0] for s in spans)
    assert counts == {"voice_session": 1, "voice.connection": 2, "invoke_agent": 3, "realtime_inference": 3,
                      "execute_tool": 1, "user_speech": 2}
    turns = sorted(recorder.named("invoke_agent"), key=lambda s: s.attributes["voice.turn.number"])
    assert [t.attributes["gen_ai.agent.invocation.end_reason"] for t in turns] == [
        "completed", "interrupted", "completed"]
    assert all(t.parent.span_id == root.context.span_id for t in turns)
    spans_by_id = by_id(recorder)
    for s in spans:
        if s is not root:
            assert s.parent.span_id in spans_by_id, f"{s.name} has a parent that was never exported"
    tool = recorder.named("execute_tool")[0]
    assert tool.parent.span_id == turns[0].context.span_id
    assert (tool.end_time - tool.start_time) == 420_000_000
    for inference in recorder.named("realtime_inference"):
        assert inference.kind == SpanKind.CLIENT
    interruption = [e for e in root.events if e.name == "voice.interruption"]
    assert len(interruption) == 1 and interruption[0].attributes["voice.interruption.played_ms"] == 800
    assert root.attributes["voice.session.turn_count"] == 3
    assert root.attributes["voice.session.interruption_count"] == 1
    assert root.attributes["voice.session.connection_count"] == 2
    assert root.attributes["gen_ai.usage.input_tokens"] == 110


def test_session_end_closes_open_turn_tool_speech_and_connection(machine: SessionMachine, recorder: Recorder) -> None:
    r = Run(machine, recorder)
    r.send("connection.open")
    r.send("user.speech_start")
    r.send("tool.call", call_id="t1", name="lookup")
    r.end("timeout")
    names = Counter(s.name.split(" ")[0] for s in recorder.spans())
    assert names == {"voice_session": 1, "voice.connection": 1, "invoke_agent": 1, "execute_tool": 1,
                     "user_speech": 1}
    turn = recorder.named("invoke_agent")[0]
    assert turn.attributes["gen_ai.agent.invocation.end_reason"] == "session_closed"
    assert recorder.named("execute_tool")[0].attributes["voice.tool.end_reason"] == "session_closed"
    assert recorder.named("voice.connection")[0].attributes["voice.connection.end_reason"] == "session_closed"
    assert recorder.named("voice_session")[0].attributes["voice.session.end_reason"] == "timeout"
    assert r.state.turn is None and not r.state.tools and r.state.connection is None


def test_speech_during_model_answer_opens_the_next_turn(machine: SessionMachine, recorder: Recorder) -> None:
    r = Run(machine, recorder)
    r.send("user.speech_start")
    r.send("user.speech_end")
    r.send("model.response_start")
    r.send("model.audio_start")
    r.send("user.speech_start", 500)  # barge-in
    barge_in_at = r.t
    r.send("model.interrupted", 100)
    assert r.state.turn is not None and r.state.turn.number == 2
    r.send("user.speech_end", 700)
    r.send("model.response_start")
    r.send("model.turn_complete")
    r.end()
    turns = sorted(recorder.named("invoke_agent"), key=lambda s: s.attributes["voice.turn.number"])
    assert [t.attributes["gen_ai.agent.invocation.end_reason"] for t in turns] == ["interrupted", "completed"]
    speeches = recorder.named("user_speech")
    assert len(speeches) == 2
    second = next(s for s in speeches if s.parent.span_id == turns[1].context.span_id)
    assert second.start_time == barge_in_at == turns[1].start_time


def test_last_usage_report_in_a_turn_wins_and_session_sums_turns(machine: SessionMachine, recorder: Recorder) -> None:
    r = Run(machine, recorder)
    r.send("model.response_start")
    r.send("model.usage", usage=gemini_usage(5, 50, 10))
    r.send("model.usage", usage=gemini_usage(5, 100, 300))
    r.send("model.turn_complete")
    r.send("model.response_start")
    r.send("model.usage", usage={"input_tokens": 7, "output_tokens": 9, "input_audio_tokens": 7})
    r.send("model.turn_complete")
    r.end()
    first, second = sorted(recorder.named("realtime_inference"), key=lambda s: s.start_time)
    assert first.attributes["gen_ai.usage.input_tokens"] == 105
    assert first.attributes["gen_ai.usage.audio.input_tokens"] == 100
    assert first.attributes["gen_ai.usage.output_tokens"] == 300
    assert first.attributes["voice.usage.report_count"] == 2
    assert second.attributes["gen_ai.usage.input_tokens"] == 7
    root = recorder.named("voice_session")[0]
    assert root.attributes["gen_ai.usage.input_tokens"] == 112
    assert root.attributes["gen_ai.usage.output_tokens"] == 309
    assert summarize(r.state)["usage"]["input"]["audio"] == 107  # type: ignore[index]


def test_usage_after_its_turn_closed_replaces_that_turns_share_of_the_total(
    machine: SessionMachine, recorder: Recorder
) -> None:
    r = Run(machine, recorder)
    r.send("model.response_start")
    r.send("model.usage", usage={"input_tokens": 10, "output_tokens": 10})
    r.send("model.turn_complete")
    r.send("model.usage", usage={"input_tokens": 30, "output_tokens": 40})
    r.end()
    root = recorder.named("voice_session")[0]
    assert (root.attributes["gen_ai.usage.input_tokens"], root.attributes["gen_ai.usage.output_tokens"]) == (30, 40)


def test_unknown_tool_result_and_duplicate_call_are_ignored(machine: SessionMachine, recorder: Recorder) -> None:
    r = Run(machine, recorder)
    r.send("tool.call", call_id="a", name="x")
    r.send("tool.call", call_id="a", name="x")
    r.send("tool.result", call_id="nope")
    r.send("tool.result", call_id="a", error="boom")
    r.send("tool.result", call_id="a")
    r.end()
    tools = recorder.named("execute_tool")
    assert len(tools) == 1
    assert tools[0].status.status_code == StatusCode.ERROR and tools[0].status.description == "boom"
    assert r.state.tool_call_count == 1


def test_tool_cancel_ends_the_named_calls_as_cancelled(machine: SessionMachine, recorder: Recorder) -> None:
    r = Run(machine, recorder)
    r.send("tool.call", call_id="a", name="x")
    r.send("tool.call", call_id="b", name="y")
    r.send("tool.cancel", call_ids=["a", "zzz"])
    assert list(r.state.tools) == ["b"]
    r.end()
    reasons = {s.attributes["gen_ai.tool.call.id"]: s.attributes["voice.tool.end_reason"]
               for s in recorder.named("execute_tool")}
    assert reasons == {"a": "cancelled", "b": "session_closed"}


def test_a_second_connection_open_ends_the_first_as_replaced(machine: SessionMachine, recorder: Recorder) -> None:
    r = Run(machine, recorder)
    r.send("connection.open", connection_id="1")
    r.send("connection.open", connection_id="2")
    r.send("connection.close", code=1000)
    r.end()
    conns = {s.attributes["voice.connection.id"]: s.attributes["voice.connection.end_reason"]
             for s in recorder.named("voice.connection")}
    assert conns == {"1": "replaced", "2": "closed"}


def test_content_is_not_captured_unless_enabled(recorder: Recorder) -> None:
    r = Run(SessionMachine(MachineOptions()), recorder)
    r.send("user.transcript", text="my secret")
    r.send("tool.call", call_id="a", name="x", arguments={"card": "4111"})
    r.send("tool.result", call_id="a", result="ok")
    r.send("model.transcript", text="answer")
    r.send("model.turn_complete")
    r.end()
    for span in recorder.spans():
        flat = repr(dict(span.attributes or {}))
        assert "my secret" not in flat and "4111" not in flat and "answer" not in flat


def test_words_are_not_even_held_in_session_state_unless_captured(recorder: Recorder) -> None:
    r = Run(SessionMachine(MachineOptions()), recorder)
    r.send("model.response_start")
    r.send("user.speech_start")
    r.send("user.transcript", text="my secret")  # barge-in: held for the next turn
    r.send("model.transcript", text="answer")
    r.send("model.turn_complete")
    r.send("user.transcript", text="more secrets")
    assert "secret" not in repr(r.state) and "answer" not in repr(r.state)


def test_captured_content_uses_genai_message_attributes(machine: SessionMachine, recorder: Recorder) -> None:
    r = Run(machine, recorder)
    r.send("user.transcript", text="hello ")
    r.send("user.transcript", text="there")
    r.send("model.transcript", text="hi")
    r.send("model.turn_complete")
    r.end()
    turn = recorder.named("invoke_agent")[0]
    assert turn.attributes["gen_ai.input.messages"] == (
        '[{"role":"user","parts":[{"type":"text","content":"hello there"}]}]')
    root = recorder.named("voice_session")[0]
    assert '"text":"hi"' in str(root.attributes["voice.session.transcript"])


def test_latency_to_first_audio_counts_from_speech_end(machine: SessionMachine, recorder: Recorder) -> None:
    r = Run(machine, recorder)
    r.send("user.speech_start")
    r.send("user.speech_end")
    r.send("model.response_start", 300)
    r.send("model.audio_start", 450)
    r.send("model.turn_complete")
    r.end()
    turn = recorder.named("invoke_agent")[0]
    assert turn.attributes["voice.latency.user_to_first_audio_ms"] == 750
    assert turn.attributes["voice.latency.source"] == "client_vad"


def test_root_joins_the_callers_trace_as_a_child_of_its_span(machine: SessionMachine, recorder: Recorder) -> None:
    parent = "00f067aa0ba902b7"
    r = Run(machine, recorder, new_state(parent=parent))
    r.send("user.transcript", text="x")
    r.end()
    root = recorder.named("voice_session")[0]
    assert root.parent is not None and root.parent.span_id == int(parent, 16) and root.parent.is_remote
    turn = recorder.named("invoke_agent")[0]
    assert not turn.parent.is_remote


def test_event_time_applies_skew_never_goes_back_and_never_into_the_future() -> None:
    state = new_state()
    state.skew_ns = 5_000_000_000
    event = parse_event({"type": "mark", "id": "1", "name": "m", "ts": (T0 - 4_000_000_000) / 1e6}, "")
    assert event_time_ns(state, event, T0 + 10_000_000_000) == T0 + 1_000_000_000
    state.first_event_ns = state.last_event_ns = T0 + 2_000_000_000
    assert event_time_ns(state, event, T0 + 10_000_000_000) == T0 + 2_000_000_000
    future = parse_event({"type": "mark", "id": "2", "name": "m", "ts": (T0 + 60e9) / 1e6}, "")
    assert event_time_ns(state, future, T0 + 3_000_000_000) == T0 + 3_000_000_000


def test_session_update_and_marks_reach_the_spans(machine: SessionMachine, recorder: Recorder) -> None:
    r = Run(machine, recorder)
    r.send("session.update", user_id="u-9", tags=["vip"], attributes={"outcome": "resolved"})
    r.send("mark", name="checkout", attributes={"step": 2})
    r.send("error", error_type="mic_denied", message="no mic")
    r.end("error")
    root = recorder.named("voice_session")[0]
    assert root.attributes["user.id"] == "u-9"
    assert list(root.attributes["voice.session.tags"]) == ["vip"]
    assert root.attributes["voice.attr.outcome"] == "resolved"
    assert {e.name for e in root.events} == {"checkout", "exception"}
    assert root.status.status_code == StatusCode.ERROR
    assert root.attributes["voice.session.error_count"] == 1


def test_push_to_talk_release_is_the_latency_source(machine: SessionMachine, recorder: Recorder) -> None:
    r = Run(machine, recorder)
    r.send("user.speech_start", source="push_to_talk")
    r.send("user.speech_end", source="push_to_talk")
    r.send("model.response_start", 120)
    r.send("model.audio_start", 80)
    r.send("model.playback_start", 30)
    r.send("model.turn_complete")
    r.end()
    turn = recorder.named("invoke_agent")[0]
    assert turn.attributes["voice.latency.source"] == "push_to_talk"
    assert turn.attributes["voice.latency.user_to_first_chunk_ms"] == 120
    assert turn.attributes["voice.latency.user_to_first_audio_ms"] == 200
    assert turn.attributes["voice.latency.user_to_first_playback_ms"] == 230


def test_session_reports_first_audio_percentiles_turn_gaps_setup_and_tool_errors(
    machine: SessionMachine, recorder: Recorder
) -> None:
    r = Run(machine, recorder)
    r.send("connection.open")
    r.send("connection.setup_complete", 250)
    for latency in (100, 300, 200, 900):
        r.send("user.speech_start", 500)
        r.send("user.speech_end")
        r.send("model.audio_start", latency)
        r.send("model.turn_complete", 40)
    r.send("tool.call", call_id="t", name="x")
    r.send("tool.result", call_id="t", error="boom")
    r.end()
    root = recorder.named("voice_session")[0]
    assert root.attributes["voice.latency.user_to_first_audio_p50_ms"] == 200
    assert root.attributes["voice.latency.user_to_first_audio_p95_ms"] == 900
    assert root.attributes["voice.session.tool_error_count"] == 1
    assert recorder.named("voice.connection")[0].attributes["voice.connection.setup_ms"] == 250
    gaps = sorted(t.attributes.get("voice.turn.gap_ms", -1) for t in recorder.named("invoke_agent"))
    assert gaps == [-1, 10, 500, 500, 500]  # the tool call opened a fifth turn 10 ms after the fourth
    latency = summarize(r.state)["latency"]
    assert latency == {"user_to_first_audio_ms": {"p50": 200, "p95": 900, "turns_measured": 4}}


def test_per_turn_mode_gives_each_turn_its_own_trace_linked_to_the_session(recorder: Recorder) -> None:
    r = Run(SessionMachine(MachineOptions(per_turn_traces=True)), recorder)
    r.send("connection.open")
    for _ in range(2):
        r.send("user.speech_start")
        r.send("user.speech_end")
        r.send("tool.call", call_id=f"c{r.n}", name="x")
        r.send("tool.result", call_id=f"c{r.n - 1}")
        r.send("model.response_start")
        r.send("model.turn_complete")
    r.end()
    root = recorder.named("voice_session")[0]
    session_trace = root.context.trace_id
    turns = recorder.named("invoke_agent")
    assert len({t.context.trace_id for t in turns} | {session_trace}) == 3
    for turn in turns:
        assert turn.parent is None
        assert [(link.context.trace_id, link.context.span_id) for link in turn.links] == [
            (session_trace, root.context.span_id)]
        assert turn.attributes["session.id"] == root.attributes["session.id"]
        kids = [s for s in recorder.spans() if s.parent is not None and s.parent.span_id == turn.context.span_id]
        assert {k.name.split(" ")[0] for k in kids} == {"user_speech", "execute_tool", "realtime_inference"}
        assert {k.context.trace_id for k in kids} == {turn.context.trace_id}
    assert recorder.named("voice.connection")[0].context.trace_id == session_trace


def test_turn_and_session_cost_match_the_price_table_by_hand(recorder: Recorder) -> None:
    from gateway.analytics.pricing import Pricer

    state = new_state()
    state.model = "gemini-live-2.5-flash"
    r = Run(SessionMachine(MachineOptions(pricer=Pricer())), recorder, state)
    for _ in range(2):
        r.send("model.response_start")
        r.send("model.usage", usage=gemini_usage(24, 310, 420, cached=64))
        r.send("model.turn_complete")
    r.end()
    # genai-prices 0.2.3, gemini-live-2.5-flash, USD per million tokens: text in 0.5, audio in 3, audio out 12
    # (no cached rate in the table: cached input is billed as what it is). Per turn:
    # input 24 * 0.5 + 310 * 3 = 942, output 420 * 12 = 5040, total 5982 micro-dollars.
    for inference in recorder.named("realtime_inference"):
        assert inference.attributes["voice.cost.input_usd"] == pytest.approx(942e-6)
        assert inference.attributes["voice.cost.output_usd"] == pytest.approx(5040e-6)
        assert inference.attributes["voice.cost.total_usd"] == pytest.approx(5982e-6)
        assert inference.attributes["voice.cost.output_audio_usd"] == pytest.approx(5040e-6)
        assert inference.attributes["voice.cost.estimated"] is False
    root = recorder.named("voice_session")[0]
    assert root.attributes["voice.cost.total_usd"] == pytest.approx(2 * 5982e-6)
    cost = summarize(r.state)["cost"]
    assert isinstance(cost, dict) and cost["total_usd"] == pytest.approx(2 * 5982e-6) and cost["currency"] == "USD"


def test_turn_without_usage_is_estimated_from_audio_and_unknown_model_is_not_priced(recorder: Recorder) -> None:
    from gateway.analytics.pricing import Pricer

    pricer = Pricer()
    state = new_state()
    state.model = "gemini-live-2.5-flash"
    r = Run(SessionMachine(MachineOptions(pricer=pricer)), recorder, state)
    r.send("user.speech_start")
    r.send("user.speech_end", 2000)  # 2 s of user audio: 64 tokens at 32 tokens/s
    r.send("model.audio_start", 300)
    r.send("model.turn_complete", 1000)  # 1 s of model audio: 32 tokens
    r.end()
    inference = recorder.named("realtime_inference")[0]
    assert inference.attributes["voice.cost.estimated"] is True
    assert inference.attributes["voice.cost.total_usd"] == pytest.approx((64 * 3 + 32 * 12) / 1e6)

    other = Recorder()
    unknown = new_state()
    unknown.model = "no-such-model-anywhere"
    r2 = Run(SessionMachine(MachineOptions(pricer=pricer)), other, unknown)
    r2.send("model.response_start")
    r2.send("model.usage", usage={"input_tokens": 10, "output_tokens": 10})
    r2.send("model.turn_complete")
    r2.end()
    assert not [k for s in other.spans() for k in (s.attributes or {}) if k.startswith("voice.cost")]
    assert sum(pricer.unknown_models.values()) == 1


def test_a_chatty_client_cannot_grow_an_open_span_without_bound(machine: SessionMachine, recorder: Recorder) -> None:
    r = Run(machine, recorder)
    r.send("user.transcript", text="x")
    for i in range(300):
        r.send("mark", 1, name=f"m{i}")
        r.send("connection.setup_complete", 1)
    assert r.state.turn is not None and len(r.state.turn.span.events) == 128
    assert r.state.connection is not None and len(r.state.connection.events) == 128


@pytest.mark.parametrize("usage_in_turn", [True, False])
def test_usage_that_arrives_after_its_turn_reprices_the_session_total(recorder: Recorder, usage_in_turn: bool) -> None:
    pricer = Pricer()
    state = new_state()
    state.model = "gemini-live-2.5-flash-preview"
    r = Run(SessionMachine(MachineOptions(pricer=pricer)), recorder, state)
    early = {"promptTokenCount": 10, "responseTokenCount": 10}
    late = {"promptTokenCount": 400, "responseTokenCount": 900,
            "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 400}],
            "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 900}]}
    r.send("user.speech_start")
    r.send("user.speech_end", after_ms=2000)
    r.send("model.response_start")
    r.send("model.audio_start")
    if usage_in_turn:
        r.send("model.usage", usage=early)
    r.send("model.turn_complete", after_ms=3000)  # without usage: priced as an estimate from the audio
    r.send("model.usage", usage=late)
    r.end()
    root = recorder.named("voice_session")[0].attributes
    expected = pricer.price("gcp.gemini", "gemini-live-2.5-flash-preview", normalize_usage(late))
    assert expected is not None
    assert root["voice.cost.total_usd"] == pytest.approx(expected.total_usd)
    assert root["gen_ai.usage.input_tokens"] == 400 and root["gen_ai.usage.output_tokens"] == 900


@pytest.mark.parametrize("labelled", ["both", "start_only"])
def test_provider_vad_speech_is_the_latency_source(machine: SessionMachine, recorder: Recorder, labelled: str) -> None:
    """OpenAI's server VAD (input_audio_buffer.speech_started / speech_stopped) is not the client's VAD."""
    r = Run(machine, recorder)
    r.send("user.speech_start", source="provider_vad")
    r.send("user.speech_end", 700, **({"source": "provider_vad"} if labelled == "both" else {}))
    r.send("model.response_start", 200)
    r.send("model.audio_start", 100)
    r.send("model.turn_complete")
    r.send("model.response_start", 10)  # the next answer is barged in on by the provider's VAD
    r.send("user.speech_start", 10, source="provider_vad")
    r.send("model.interrupted", 10)
    r.send("user.speech_end", 500)
    r.send("model.audio_start", 300)
    r.send("model.turn_complete")
    r.end()
    turns = sorted(recorder.named("invoke_agent"), key=lambda s: s.attributes["voice.turn.number"])
    assert [t.attributes.get("voice.latency.source") for t in turns] == ["provider_vad", None, "provider_vad"]
    assert turns[0].attributes["voice.latency.user_to_first_audio_ms"] == 300
    assert {s.attributes["voice.speech.source"] for s in recorder.named("user_speech")} == {"provider_vad"}
