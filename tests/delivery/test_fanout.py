"""Several backends at once, each behind its own queue: a real collector and a Langfuse endpoint."""

from __future__ import annotations

import base64
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from otlp_sink import Collector, HungServer, Sink

from gateway.simulate import three_turn_session

PUBLIC, SECRET = "pk-lf-fanout", "sk-lf-fanout"


@pytest.fixture
def langfuse_sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.close()


def fanout_env(collector: Collector, langfuse_url: str) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp,langfuse",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "LANGFUSE_HOST": langfuse_url,
        "LANGFUSE_PUBLIC_KEY": PUBLIC,
        "LANGFUSE_SECRET_KEY": SECRET,
        "VTG_CAPTURE_CONTENT": "true",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=Staging",
    }


def play_session(client: httpx.Client) -> dict[str, Any]:
    s = client.post("/v1/sessions", json={"user_id": "user-1", "provider": "gcp.gemini", "model": "gemini-live",
                                          "agent": "concierge", "tags": ["fanout"]}).json()
    headers = {"authorization": f"Bearer {s['token']}"}
    script = three_turn_session(time.time() * 1000, scale=0.01)
    for sent_at, events in script.batches:
        while time.time() * 1000 < sent_at:
            time.sleep(0.002)
        r = client.post(f"/v1/sessions/{s['session_id']}/events", json={"events": events, "sent_at": sent_at},
                        headers=headers)
        assert r.status_code == 202
    assert client.post(f"/v1/sessions/{s['session_id']}/end", json={"reason": "completed"},
                       headers=headers).status_code == 200
    return dict(s)


def metric(text: str, name: str, exporter: str) -> float:
    match = re.search(rf'^{name}\{{exporter="{exporter}"\}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_one_session_reaches_otlp_and_langfuse_whole(
    collector: Collector, sink: Sink, langfuse_sink: Sink, gateway_factory: Any
) -> None:
    gw = gateway_factory(fanout_env(collector, langfuse_sink.url))
    with gw.client() as client:
        s = play_session(client)
        otlp = sink.trace(s["trace_id"])
        lf = langfuse_sink.trace(s["trace_id"])
    assert {x.span_id for x in otlp} == {x.span_id for x in lf}
    assert len(otlp) == 12
    # Scores go out after the batch that carried the root, so they may trail the spans.
    deadline = time.monotonic() + 10
    while len(langfuse_sink.scores) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(langfuse_sink.paths) == {"/api/public/otel/v1/traces", "/api/public/scores"}
    token = base64.b64encode(f"{PUBLIC}:{SECRET}".encode()).decode()
    scores = {x["name"]: x for x in langfuse_sink.scores if x["traceId"] == s["trace_id"]}
    assert scores["voice_session_outcome"]["value"] == "completed"
    assert scores["voice_interruption_rate"]["value"] == pytest.approx(1 / 3)
    assert scores["voice_tool_error_count"]["value"] == 0
    # Span requests (the sink records headers of OTLP requests only).
    assert all(h["authorization"] == f"Basic {token}" and h["x-langfuse-ingestion-version"] == "4"
               and h["content-type"] == "application/x-protobuf" for h in langfuse_sink.requests)
    # The OTLP side stays clean semantic-convention spans.
    assert not [k for x in otlp for k in x.attributes if k.startswith("langfuse.")]
    types = Counter(x.attributes["langfuse.observation.type"] for x in lf)
    assert types == {"agent": 4, "generation": 3, "tool": 1, "span": 4}
    for span in lf:
        assert span.attributes["session.id"] == s["session_id"]
        assert span.attributes["user.id"] == "user-1"
        assert span.attributes["langfuse.trace.name"] == "voice_session concierge"
        assert span.attributes["langfuse.trace.tags"] == ["fanout"]
        assert span.attributes["langfuse.environment"] == "staging"
        assert not {"input", "output", "model"} & set(span.attributes)
    for generation in (x for x in lf if x.attributes["langfuse.observation.type"] == "generation"):
        usage = json.loads(generation.attributes["langfuse.observation.usage_details"])
        assert usage["input_audio"] > 0 and usage["output_audio"] > 0  # the keys Langfuse's Gemini Live prices read
        assert generation.attributes["langfuse.observation.model.name"] == "gemini-live"
    # Langfuse looks a model up for generations only.
    model_keys = {"langfuse.observation.model.name", "gen_ai.request.model", "gen_ai.response.model"}
    assert all(x.attributes["langfuse.observation.type"] == "generation" for x in lf if model_keys & set(x.attributes))
    tool = next(x for x in lf if x.attributes["langfuse.observation.type"] == "tool")
    assert json.loads(tool.attributes["langfuse.observation.input"]) == {"city": "Paris"}
    root = next(x for x in lf if x.name == "voice_session")
    assert "Paris" in root.attributes["langfuse.trace.input"]
    assert "18 degrees" in root.attributes["langfuse.trace.output"]


def test_hung_langfuse_never_delays_the_collector_or_the_requests(
    collector: Collector, sink: Sink, gateway_factory: Any
) -> None:
    hung = HungServer()
    try:
        gw = gateway_factory(fanout_env(collector, hung.url))
        with gw.client() as client:
            sessions = [play_session(client) for _ in range(3)]
            for s in sessions:
                assert len(sink.trace(s["trace_id"])) == 12
            metrics = client.get("/metrics").text
        # Every request was answered and the collector has every span while the Langfuse export is still
        # waiting for an answer: neither waited on it.
        assert metric(metrics, "vtg_spans_exported_total", "langfuse") == 0
        assert metric(metrics, "vtg_spans_failed_total", "langfuse") == 0
        assert metric(metrics, "vtg_spans_exported_total", "otlp_http") >= 36
    finally:
        hung.close()
