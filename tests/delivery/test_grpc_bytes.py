"""OTLP/gRPC export sends the spans' encoded bytes as they are, and a real collector receives the same spans."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from otlp_sink import Collector, ReceivedSpan, Sink

from gateway.delivery.grpc_bytes import FastOtlpGrpcExporter
from gateway.otel_config import load_telemetry
from gateway.sessions.state import FinishedSpan, SpanEvent, TraceRef
from gateway.spans import SpanEmitter

TRACE = TraceRef("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "b7ad6b7169203331", True)
RESOURCE = Resource.create({"service.name": "vtg-grpc-test"})


def records() -> list[FinishedSpan]:
    root = FinishedSpan("voice_session", TRACE.root_span_id, TRACE.parent_span_id, 1_000, 90_000, "internal",
                        {"session.id": "s-1", "voice.session.tags": ["a", "b"], "voice.session.turn_count": 2,
                         "voice.cost.total_usd": 0.0125, "voice.cost.estimated": True},
                        (SpanEvent("voice.interruption", 5_000, {"voice.interruption.played_ms": 120.5}),),
                        error="network lost")
    turn = FinishedSpan("invoke_agent helper", "1111111111111111", TRACE.root_span_id, 2_000, 40_000, "internal",
                        {"gen_ai.operation.name": "invoke_agent", "voice.turn.number": 1},
                        (SpanEvent("voice.first_playback", 9_000, {}),), links=((TRACE.trace_id, "2222222222222222"),))
    inference = FinishedSpan("realtime_inference gemini-live", "2222222222222222", "1111111111111111", 3_000,
                             30_000, "client", {"gen_ai.usage.input_tokens": 320, "voice.first_audio.time_unix_nano":
                                                1_796_082_341_751_544_802}, ())
    return [inference, turn, root]


def received(sink: Sink, count: int) -> list[ReceivedSpan]:
    return sorted(sink.wait_for(lambda got: len(got) >= count), key=lambda s: s.span_id)


@pytest.fixture
def grpc_env(monkeypatch: pytest.MonkeyPatch, collector: Collector) -> Iterator[dict[str, str]]:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.grpc_endpoint, "OTEL_EXPORTER_OTLP_INSECURE": "true",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # the stock exporter reads its settings from the process environment
    yield env


def test_a_collector_receives_from_the_encoded_bytes_the_same_spans_as_from_the_stock_grpc_exporter(
    grpc_env: dict[str, str], sink: Sink
) -> None:
    emitter = SpanEmitter(ALWAYS_ON, RESOURCE, [])
    stock = GrpcSpanExporter()
    assert stock.export([emitter.build(TRACE, r) for r in records()]) == SpanExportResult.SUCCESS
    from_stock = received(sink, 3)
    sink.spans.clear()
    fast = FastOtlpGrpcExporter(GrpcSpanExporter())
    assert fast.export_encoded(emitter.encoder.request(TRACE, records()), 3) == SpanExportResult.SUCCESS
    from_bytes = received(sink, 3)
    assert from_bytes == from_stock
    assert [s.name for s in from_bytes] == ["voice_session", "invoke_agent helper", "realtime_inference gemini-live"]
    root = from_bytes[0]
    assert root.status_code == 2 and root.status_message == "network lost"
    assert root.attributes["voice.session.tags"] == ["a", "b"] and root.resource["service.name"] == "vtg-grpc-test"
    # SDK spans handed to it (an SDK queue's way) are encoded by the direct encoder and sent the same way.
    sink.spans.clear()
    spans: list[ReadableSpan] = [emitter.build(TRACE, r) for r in records()]
    assert fast.export(spans) == SpanExportResult.SUCCESS
    assert received(sink, 3) == from_stock
    stock.shutdown()
    fast.shutdown()


def test_a_rebuilt_channel_keeps_sending_bytes(grpc_env: dict[str, str], sink: Sink) -> None:
    stock = GrpcSpanExporter()
    fast = FastOtlpGrpcExporter(stock)
    # What the stock export loop does after UNAVAILABLE: a new channel and a new stub from ``_stub``.
    stock._initialize_channel_and_stub()
    data = SpanEmitter(ALWAYS_ON, RESOURCE, []).encoder.request(TRACE, records())
    assert fast.export_encoded(data, 3) == SpanExportResult.SUCCESS
    assert len(received(sink, 3)) == 3
    fast.shutdown()


def test_the_gateway_grpc_queue_takes_encoded_spans_and_builds_no_sdk_span(
    grpc_env: dict[str, str], sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    env = {**grpc_env, "OTEL_TRACES_EXPORTER": "otlp", "VTG_SIGNING_KEY": "k" * 40}
    telemetry = load_telemetry(env=env)
    [info] = telemetry.exporters
    assert info.kind == "otlp_grpc"
    assert info.endpoint == grpc_env["OTEL_EXPORTER_OTLP_ENDPOINT"].removeprefix("http://")  # as the stock one says
    processor: Any = info.processor
    assert processor.takes_encoded
    emitter = SpanEmitter(ALWAYS_ON, RESOURCE, [processor])

    def no_sdk_span(*args: Any) -> ReadableSpan:
        raise AssertionError("an SDK span was built for the gRPC exporter")

    monkeypatch.setattr(emitter, "build", no_sdk_span)
    assert emitter.emit(TRACE, records()) == 3
    assert processor.force_flush(30_000)
    assert [s.name for s in received(sink, 3)] == [
        "voice_session", "invoke_agent helper", "realtime_inference gemini-live"]
    processor.shutdown()
