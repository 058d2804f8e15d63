"""OTel metrics from a running gateway, through a real collector, with low-cardinality labels only."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from otlp_sink import Collector, Sink
from test_fanout import play_session

from gateway.analytics.voice_metrics import MAX_VALUES_PER_LABEL, VoiceMetrics, session_labels
from gateway.sessions.state import FinishedSpan

EXPECTED = {"voice.turn.time_to_first_audio", "voice.turn.duration", "voice.tool.duration",
            "voice.connection.setup.duration", "voice.sessions", "voice.turns", "voice.interruptions",
            "voice.tokens", "gen_ai.client.token.usage"}
HIGH_CARDINALITY = {"session.id", "user.id", "gen_ai.conversation.id", "gen_ai.tool.call.id", "trace_id"}


def gateway_env(collector: Collector, **extra: str) -> dict[str, str]:
    return {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_METRIC_EXPORT_INTERVAL": "300", **extra}


def total(points: list[Any], name: str, **attrs: str) -> float:
    matching = [p for p in points if p.name == name and all(p.attributes.get(k) == v for k, v in attrs.items())]
    # Cumulative temporality: the latest point of each series is its total.
    latest: dict[tuple[tuple[str, Any], ...], float] = {}
    for p in matching:
        latest[tuple(sorted(p.attributes.items()))] = p.value if p.count is None else p.count
    return sum(latest.values())


def test_metrics_reach_an_otlp_receiver_with_no_session_or_user_label(
    collector: Collector, sink: Sink, gateway_factory: Any
) -> None:
    gw = gateway_factory(gateway_env(collector))
    with gw.client() as client:
        for _ in range(2):
            play_session(client)
    points = sink.wait_for_metrics(
        lambda got: {p.name for p in got} >= EXPECTED and total(got, "voice.sessions") >= 2)
    for point in points:
        assert not HIGH_CARDINALITY & set(point.attributes), (point.name, point.attributes)
    assert total(points, "voice.sessions", **{"voice.session.end_reason": "completed"}) == 2
    assert total(points, "voice.turns", **{"voice.turn.end_reason": "interrupted"}) == 2
    assert total(points, "voice.interruptions") == 2
    assert total(points, "voice.turn.time_to_first_audio") == 6  # histogram count: three turns per session
    ttfa = [p for p in points if p.name == "voice.turn.time_to_first_audio"]
    assert {p.attributes["voice.latency.source"] for p in ttfa} <= {"client_vad", "input_transcript"}
    assert all(p.attributes["gen_ai.request.model"] == "gemini-live" for p in ttfa)
    audio_in = total(points, "voice.tokens", **{"gen_ai.token.type": "input", "voice.modality": "audio"})
    assert audio_in > 0


def test_unsampled_sessions_build_no_spans_but_still_count(
    collector: Collector, sink: Sink, gateway_factory: Any
) -> None:
    gw = gateway_factory(gateway_env(collector, OTEL_TRACES_SAMPLER="always_off"))
    with gw.client() as client:
        s = play_session(client)
        assert s["sampled"] is False and s["token"]
    points = sink.wait_for_metrics(lambda got: total(got, "voice.sessions") >= 1)
    assert total(points, "voice.turns") == 3
    assert not [x for x in sink.spans if x.trace_id == s["trace_id"]]


def test_keep_errored_rule_traces_an_unsampled_session_that_ends_in_error(
    collector: Collector, sink: Sink, gateway_factory: Any
) -> None:
    gw = gateway_factory(gateway_env(collector, OTEL_TRACES_SAMPLER="always_off",
                                     VTG_KEEP_ERRORED_SESSIONS="true"))
    with gw.client() as client:
        clean = play_session(client)
        broken = client.post("/v1/sessions", json={}).json()
        headers = {"authorization": f"Bearer {broken['token']}"}
        client.post(f"/v1/sessions/{broken['session_id']}/events", headers=headers, json={"events": [
            {"type": "user.transcript", "id": "1", "text": "hi"}, {"type": "model.response_start", "id": "2"},
            {"type": "model.turn_complete", "id": "3"}, {"type": "error", "id": "4", "error_type": "ws_closed"}]})
        client.post(f"/v1/sessions/{broken['session_id']}/end", json={"reason": "error"}, headers=headers)
    spans = sink.trace(broken["trace_id"])
    assert {s.name for s in spans} == {"voice_session", "invoke_agent", "realtime_inference"}
    root = next(s for s in spans if s.name == "voice_session")
    assert root.attributes["voice.session.error_count"] == 1
    assert not [x for x in sink.spans if x.trace_id == clean["trace_id"]]


def test_client_chosen_names_and_end_reasons_cannot_grow_the_series_without_bound() -> None:
    reader = InMemoryMetricReader()
    metrics = VoiceMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"))
    for i in range(MAX_VALUES_PER_LABEL + 50):
        root = FinishedSpan("voice_session", f"{i:016x}", None, 0, 1, "internal",
                            {"voice.session.end_reason": f"reason-{i}"}, ())
        tool = FinishedSpan("execute_tool lookup", f"{i:016x}", None, 0, 1, "internal",
                            {"gen_ai.tool.name": f"tool-{i}", "voice.tool.end_reason": "completed"}, ())
        metrics.observe([tool, root], session_labels("gcp.gemini", f"model-{i}", "agent"))
    data = reader.get_metrics_data()
    assert data is not None
    points = {m.name: list(m.data.data_points) for rm in data.resource_metrics for sm in rm.scope_metrics
              for m in sm.metrics}
    sessions = points["voice.sessions"]
    assert {p.attributes["voice.session.end_reason"] for p in sessions} == {"other"}
    models = {p.attributes["gen_ai.request.model"] for p in sessions}
    assert len(models) == MAX_VALUES_PER_LABEL + 1 and "other" in models and "model-0" in models
    tools = {p.attributes["gen_ai.tool.name"] for p in points["voice.tool.duration"]}
    assert len(tools) == MAX_VALUES_PER_LABEL + 1 and "other" in tools
    assert sum(p.value for p in sessions) == MAX_VALUES_PER_LABEL + 50
