"""The gateway as a user runs it (its own process) exporting to a real collector (rotel)."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from conftest import REPO
from fake_providers import serve_fake_providers
from otlp_sink import Collector, ReceivedSpan, Sink, children

from gateway.simulate import three_turn_session

SPAN_KIND_CLIENT = 3


def otlp_env(collector: Collector, protocol: str) -> dict[str, str]:
    endpoint = collector.grpc_endpoint if protocol == "grpc" else collector.http_endpoint
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "voice-gw-test",
    }


def start_session(client: httpx.Client, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/sessions", json={"provider": "gcp.gemini", "model": "gemini-live", "agent": "helper",
                                          "user_id": "u-1", **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


def one(spans: list[ReceivedSpan], prefix: str) -> ReceivedSpan:
    found = [s for s in spans if s.name.split(" ")[0] == prefix]
    assert len(found) == 1, f"expected one {prefix}, got {[s.name for s in found]}"
    return found[0]


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_three_turn_session_arrives_at_a_collector_as_one_trace(
    protocol: str, collector: Collector, sink: Sink, gateway_factory: Any
) -> None:
    gw = gateway_factory(otlp_env(collector, protocol))
    script = three_turn_session(time.time() * 1000, scale=0.02)
    with gw.client() as client:
        s = start_session(client)
        sid, token = s["session_id"], s["token"]
        *batches, (_, last) = script.batches
        for index, (sent_at, events) in enumerate(batches):
            while time.time() * 1000 < sent_at:
                time.sleep(0.005)
            body = {"events": events, "sent_at": time.time() * 1000}  # as a client stamps it: when it sends
            if index % 2:  # half of it as sendBeacon would send it
                r = client.post(f"/v1/sessions/{sid}/events", params={"token": token}, content=json.dumps(body),
                                headers={"content-type": "text/plain;charset=UTF-8"})
            else:
                r = client.post(f"/v1/sessions/{sid}/events", json=body, headers={"authorization": f"Bearer {token}"})
            assert r.status_code == 202 and r.json()["accepted"] == len(events), r.text
        replay = client.post(f"/v1/sessions/{sid}/events", json={"events": batches[1][1]},
                             headers={"authorization": f"Bearer {token}"})
        assert replay.json()["duplicates"] == len(batches[1][1])
        # Children are exported as they end, long before the root.
        early = sink.wait_for(lambda got: sum(x.trace_id == s["trace_id"] for x in got) >= 6)
        assert not any(x.name == "voice_session" for x in early)
        while time.time() * 1000 < script.end_at:
            time.sleep(0.005)
        end = client.post(f"/v1/sessions/{sid}/end", params={"token": token},
                          content=json.dumps({"reason": "user_disconnect", "events": last,
                                              "sent_at": time.time() * 1000, "ts": script.end_at}),
                          headers={"content-type": "text/plain"})
        assert end.status_code == 200, end.text
    assert token not in gw.log() and "token=[redacted]" in gw.log(), "the access log must not keep the token"

    spans = sink.trace(s["trace_id"])
    time.sleep(0.5)  # anything exported twice would arrive by now
    spans = [x for x in sink.spans if x.trace_id == s["trace_id"]]
    assert len({x.span_id for x in spans}) == len(spans), "a span arrived twice"
    assert Counter(x.name.split(" ")[0] for x in spans) == {
        "voice_session": 1, "invoke_agent": 3, "realtime_inference": 3, "execute_tool": 1,
        "user_speech": 2, "voice.connection": 2}
    root = one(spans, "voice_session")
    assert root.span_id == s["root_span_id"] and root.parent_span_id == ""
    assert root.resource["service.name"] == "voice-gw-test"
    usages = [e["usage"] for e in script.all_events() if e["type"] == "model.usage"]
    assert root.attributes["gen_ai.usage.input_tokens"] == sum(u["promptTokenCount"] for u in usages)
    assert root.attributes["gen_ai.usage.output_tokens"] == sum(u["responseTokenCount"] for u in usages)
    assert root.attributes["gen_ai.usage.audio.input_tokens"] == sum(
        d["tokenCount"] for u in usages for d in u["promptTokensDetails"] if d["modality"] == "AUDIO")
    assert root.attributes["voice.session.end_reason"] == "user_disconnect"
    assert root.attributes["session.id"] == s["session_id"] == root.attributes["gen_ai.conversation.id"]
    turns = sorted(children(spans, root), key=lambda x: x.start_ns)
    turns = [t for t in turns if t.name.startswith("invoke_agent")]
    assert [t.attributes["gen_ai.agent.invocation.end_reason"] for t in turns] == [
        "completed", "interrupted", "completed"]
    for turn in turns:
        inference = [c for c in children(spans, turn) if c.name.startswith("realtime_inference")]
        assert len(inference) == 1 and inference[0].kind == SPAN_KIND_CLIENT
        assert inference[0].attributes["gen_ai.usage.input_tokens"] > 0
    tool = one(spans, "execute_tool")
    assert tool.parent_span_id == turns[0].span_id
    assert tool.duration_ms == pytest.approx(script.tool_duration_ms, abs=0.01)
    assert [e[0] for e in root.events].count("voice.interruption") == 1
    for conn in (x for x in spans if x.name == "voice.connection"):
        assert conn.parent_span_id == root.span_id
    for span in spans:
        assert span.start_ns >= root.start_ns and span.end_ns <= root.end_ns


def test_compatibility_routes_give_one_span_per_turn_and_per_tool_call(
    collector: Collector, sink: Sink, gateway_factory: Any
) -> None:
    with serve_fake_providers() as fake:
        gw = gateway_factory({**otlp_env(collector, "http/protobuf"), **fake.env(), "VTG_PROVIDER_TOKENS": "gemini",
                              "VTG_API_KEYS": "backend-key"})
        with gw.client() as client:
            r = client.post("/api/live/token", json={"userId": "legacy-user"},
                            headers={"authorization": "Bearer backend-key"})
            assert r.status_code == 200, r.text
            created = r.json()
        assert fake.mismatches == [] and created["token"].startswith("auth_tokens/")
    with gw.client() as client:
        sid, token = created["sessionId"], created["ingestToken"]
        now = time.time() * 1000
        sequence = [
            ("turn_start", 10, {"turnNumber": 1, "userTranscript": "weather?"}),
            ("tool_call", 20, {"turnNumber": 1, "toolName": "get_weather", "toolArgs": {"city": "Oslo"}}),
            ("tool_result", 50, {"turnNumber": 1, "toolName": "get_weather", "result": "cold", "durationMs": 30}),
            ("turn_complete", 90, {"turnNumber": 1, "aiTranscript": "It is cold.", "durationMs": 80}),
            ("turn_start", 150, {"turnNumber": 2, "userTranscript": "thanks"}),
            ("turn_complete", 200, {"turnNumber": 2, "aiTranscript": "bye", "durationMs": 50}),
        ]
        for kind, offset, data in sequence:
            while time.time() * 1000 < now + offset:  # a legacy client reports as things happen
                time.sleep(0.002)
            body = {"sessionId": sid, "type": kind, "timestamp": now + offset, "data": data}
            r = client.post("/api/live/trace/event", json=body, headers={"authorization": f"Bearer {token}"})
            assert r.status_code == 204, r.text
            # a legacy client retrying is harmless
            assert client.post("/api/live/trace/event", json=body, params={"token": token}).status_code == 204
        unauthorized = client.post("/api/live/trace/event", json={"sessionId": sid, "type": "turn_start",
                                                                  "timestamp": now, "data": {}})
        assert unauthorized.status_code == 401
        end = client.post("/api/live/trace/end", json={"sessionId": sid, "reason": "user_disconnect", "token": token})
        assert end.status_code == 200
        body = end.json()
        assert body["traceId"] == created["traceId"]
        assert body["summary"]["totalTurns"] == 2 and body["summary"]["totalToolCalls"] == 1
    spans = sink.trace(created["traceId"])
    names = Counter(x.name.split(" ")[0] for x in spans)
    assert names["invoke_agent"] == 2 and names["execute_tool"] == 1 and names["voice_session"] == 1
    assert len({x.span_id for x in spans}) == len(spans)
    assert one(spans, "execute_tool").duration_ms == pytest.approx(30, abs=0.01)


def test_sigterm_ends_open_sessions_and_flushes(collector: Collector, sink: Sink, gateway_factory: Any) -> None:
    env = otlp_env(collector, "http/protobuf")
    env["OTEL_BSP_SCHEDULE_DELAY"] = "60000"  # nothing leaves before shutdown unless the flush works
    gw = gateway_factory(env)
    with gw.client() as client:
        s = start_session(client)
        client.post(f"/v1/sessions/{s['session_id']}/events", headers={"authorization": f"Bearer {s['token']}"},
                    json={"events": [{"type": "connection.open", "id": "1"}, {"type": "user.speech_start", "id": "2"},
                                     {"type": "model.response_start", "id": "3"}]})
    # uvicorn re-raises the captured SIGTERM once shutdown is complete, as a process manager expects.
    assert gw.terminate() in (0, -signal.SIGTERM)
    spans = sink.trace(s["trace_id"], timeout=10)
    root = one(spans, "voice_session")
    assert root.attributes["voice.session.end_reason"] == "gateway_shutdown"
    assert one(spans, "invoke_agent").attributes["gen_ai.agent.invocation.end_reason"] == "session_closed"
    assert {x.name.split(" ")[0] for x in spans} == {
        "voice_session", "invoke_agent", "user_speech", "realtime_inference", "voice.connection"}
    assert "ended 1 open sessions" in gw.log()


def test_idle_timeout_ends_a_session_in_a_running_gateway(
    collector: Collector, sink: Sink, gateway_factory: Any
) -> None:
    gw = gateway_factory({**otlp_env(collector, "grpc"), "VTG_SESSION_IDLE_TIMEOUT_S": "1",
                          "VTG_SWEEP_INTERVAL_S": "0.1"})
    with gw.client() as client:
        s = start_session(client)
        client.post(f"/v1/sessions/{s['session_id']}/events", headers={"authorization": f"Bearer {s['token']}"},
                    json={"type": "user.transcript", "id": "1", "text": "hello?"})
    root = one(sink.trace(s["trace_id"], timeout=15), "voice_session")
    assert root.attributes["voice.session.end_reason"] == "timeout"
    assert root.attributes["voice.session.timeout_kind"] == "idle"


def test_config_file_pipeline_exports_to_the_collector(
    collector: Collector, sink: Sink, gateway_factory: Any
) -> None:
    gw = gateway_factory(
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{collector.http_endpoint}/v1/traces",
         "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{collector.http_endpoint}/v1/metrics"},
        ["--config", str(REPO / "otel-config.yaml")],
    )
    with gw.client() as client:
        s = start_session(client)
        r = client.post(f"/v1/sessions/{s['session_id']}/end", json={"reason": "completed"},
                        headers={"authorization": f"Bearer {s['token']}"})
        assert r.status_code == 200
    root = one(sink.trace(s["trace_id"]), "voice_session")
    assert root.resource["service.name"] == "voice-trace-gateway"
    assert root.resource["deployment.environment.name"] == "development"
    # The file's meter_provider: its 60 s interval has not come yet, but shutdown exports what was counted.
    gw.terminate()
    points = sink.wait_for_metrics(lambda got: any(p.name == "voice.sessions" for p in got), timeout=15)
    assert any(p.name == "voice.sessions" and p.attributes["voice.session.end_reason"] == "completed"
               for p in points)


def test_batches_answered_before_they_are_applied_arrive_whole_from_sessions_posting_at_once(
    collector: Collector, sink: Sink, gateway_factory: Any
) -> None:
    """Batches of 8 or more events are applied after their 202 (gateway/sessions/backlog.py): four sessions post
    theirs as fast as they can, each read back and ended right after its last post, and every trace is whole."""
    gw = gateway_factory(otlp_env(collector, "http/protobuf"))
    events = three_turn_session(time.time() * 1000, scale=0.001).all_events()
    expected = {"voice_session": 1, "invoke_agent": 3, "realtime_inference": 3, "execute_tool": 1,
                "user_speech": 2, "voice.connection": 2}

    def play(_: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        with gw.client() as client:
            s = start_session(client)
            auth = {"authorization": f"Bearer {s['token']}"}
            base = f"/v1/sessions/{s['session_id']}"
            for i in range(0, len(events), 10):
                chunk = events[i:i + 10]
                r = client.post(f"{base}/events", json={"events": chunk}, headers=auth)
                assert r.status_code == 202 and r.json() == {"accepted": len(chunk), "duplicates": 0, "rejected": []}
            live = client.get(base, headers=auth).json()  # read once the session's batches are applied
            end = client.post(f"{base}/end", json={"reason": "completed"}, headers=auth)
            assert end.status_code == 200, end.text
            return s, live, end.json()

    with ThreadPoolExecutor(4) as pool:
        played = list(pool.map(play, range(4)))
    for s, live, summary in played:
        assert live["summary"]["turns"] == 3 and live["summary"]["tool_calls"] == 1
        assert (summary["turns"], summary["interruptions"], summary["tool_calls"]) == (3, 1, 1)
        spans = sink.trace(s["trace_id"])
        assert Counter(x.name.split(" ")[0] for x in spans) == expected
