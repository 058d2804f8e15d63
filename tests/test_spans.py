from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from otlp_sink import Collector, Sink
from starlette.testclient import TestClient
from test_routes import ENV, auth, spans_of, start

from gateway.app import create_app
from gateway.delivery.otlp_encode import OtlpEncoder
from gateway.otel_config import load_telemetry
from gateway.sessions.state import FinishedSpan, SpanEvent, TraceRef, new_span_id, new_trace_id
from gateway.spans import SpanEmitter


def emit_one(limits: SpanLimits | None, attributes: dict[str, str | int]) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    emitter = SpanEmitter(ALWAYS_ON, Resource.create({}), [SimpleSpanProcessor(exporter)], limits)
    trace = TraceRef(new_trace_id(), new_span_id(), None, True)
    record = FinishedSpan("s", trace.root_span_id, None, 1, 2, "internal", attributes,
                          (SpanEvent("e", 1, {"note": "a long event note", "n": 1}),))
    emitter.emit(trace, [record])
    return exporter


def test_spans_within_the_limits_keep_every_attribute_untouched() -> None:
    attrs: dict[str, str | int] = {f"k{i}": "v" * 500 for i in range(100)}
    span = emit_one(None, attrs).get_finished_spans()[0]
    assert dict(span.attributes or {}) == attrs and span.dropped_attributes == 0


def test_configured_limits_cut_attributes_as_the_sdk_would_and_count_the_drops() -> None:
    limits = SpanLimits(max_span_attributes=2, max_span_attribute_length=4, max_event_attributes=1,
                        max_attribute_length=3)
    span = emit_one(limits, {"z": "x", "b": 1, "c": "abcdefgh"}).get_finished_spans()[0]
    # The SDK's BoundedAttributes keeps the newest when over the count, and cuts long strings.
    assert dict(span.attributes or {}) == {"b": 1, "c": "abcd"}
    assert span.dropped_attributes == 1
    assert dict(span.events[0].attributes or {}) == {"n": 1} and span.events[0].dropped_attributes == 1
    # The gateway's own encoder writes what the stock one writes, drop counts included.
    assert OtlpEncoder().request([span]) == encode_spans([span]).SerializePartialToString()


def test_limits_from_the_standard_env_vars_reach_the_gateways_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "3")
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "6")
    with TestClient(create_app(load_telemetry(env=ENV))) as client:
        s = start(client, user_id="a-rather-long-user-id", agent="concierge")
        client.post(f"/v1/sessions/{s['session_id']}/end", json={"reason": "completed"}, headers=auth(s))
        spans = spans_of(client, s["trace_id"])
    root = next(x for x in spans if x["name"].startswith("voice_session"))
    assert len(root["attributes"]) == 3
    assert all(len(v) <= 6 for v in root["attributes"].values() if isinstance(v, str))


def test_limits_from_a_config_file_reach_the_exported_spans(tmp_path: Path, collector: Collector,
                                                           sink: Sink) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"""file_format: "1.0"
tracer_provider:
  processors:
    - batch:
        schedule_delay: 50
        exporter:
          otlp_http:
            endpoint: {collector.http_endpoint}/v1/traces
  limits:
    attribute_count_limit: 2
    attribute_value_length_limit: 5
""")
    with TestClient(create_app(load_telemetry(str(path), env=ENV))) as client:
        s = start(client, user_id="a-rather-long-user-id", agent="concierge")
        client.post(f"/v1/sessions/{s['session_id']}/end", json={"reason": "completed"}, headers=auth(s))
        root = next(x for x in sink.trace(s["trace_id"]) if x.name.startswith("voice_session"))
    assert len(root.attributes) == 2
    assert all(len(v) <= 5 for v in root.attributes.values() if isinstance(v, str))
