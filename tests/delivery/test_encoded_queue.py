"""The OTLP/HTTP export queue holds spans as the bytes the emitter encoded once from the records: it posts
the very request the stock exporter would post for the SDK spans, and keeps the queue's guarantees (retries,
bounds and drop counts, spool, shutdown)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from otlp_sink import Collector, Sink
from starlette.testclient import TestClient
from test_export_queue import LocalEndpoint, counter
from test_routes import ENV, auth, spans_of, start
from test_spool import scripted_session

from gateway.app import create_app
from gateway.delivery.export import InstrumentedExporter, with_fast_encoding
from gateway.delivery.export_queue import RetryingBatchProcessor
from gateway.delivery.spool import Spool, decode_batch
from gateway.metrics import GatewayMetrics
from gateway.otel_config import load_telemetry
from gateway.sessions.state import FinishedSpan, TraceRef
from gateway.spans import SpanEmitter


class Backend(LocalEndpoint):
    """An OTLP/HTTP endpoint answering the statuses it is given in turn (then 200), keeping every body."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.bodies: list[bytes] = []
        self.accepted: list[bytes] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                backend.bodies.append(body)
                status = backend.statuses.pop(0) if backend.statuses else 200
                if status == 200:
                    backend.accepted.append(body)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(Handler)


@pytest.fixture
def backend() -> Iterator[Backend]:
    b = Backend()
    yield b
    b.close()


class Emissions:
    """The emitter the state machine's test driver (``Run``) uses, keeping each emission's records."""

    def __init__(self, emitter: SpanEmitter) -> None:
        self.inner = emitter
        self.emitter = self
        self.records: list[tuple[TraceRef, list[FinishedSpan]]] = []

    def emit(self, trace: TraceRef, spans: list[FinishedSpan]) -> int:
        self.records.append((trace, list(spans)))
        return self.inner.emit(trace, spans)

    def sdk_spans(self) -> list[ReadableSpan]:
        return [self.inner.build(trace, r) for trace, records in self.records for r in records]


def queue(url: str, metrics: GatewayMetrics, **kw: Any) -> RetryingBatchProcessor:
    # A short client timeout: the stock client's own retries give up soon, and the queue's take over.
    exporter = InstrumentedExporter("otlp_http", with_fast_encoding(OTLPSpanExporter(endpoint=url, timeout=1)),
                                    metrics)
    settings: dict[str, Any] = {"schedule_delay_millis": 60_000, "retry_initial_s": 0.01, "retry_max_s": 0.05}
    settings.update(kw)
    return RetryingBatchProcessor(exporter, "otlp_http", metrics, encoded=True, **settings)


def play(p: RetryingBatchProcessor, monkeypatch: pytest.MonkeyPatch) -> Emissions:
    """A session with a tool error and an interruption, emitted into the queue; no SDK span may be built."""
    emitter = SpanEmitter(ALWAYS_ON, Resource.create({"service.name": "vtg-test"}), [p])
    emissions = Emissions(emitter)

    def no_sdk_span(*args: object) -> ReadableSpan:
        raise AssertionError("an SDK span was built for a queue that takes encoded spans")

    monkeypatch.setattr(emitter, "build", no_sdk_span)
    scripted_session(emissions)
    monkeypatch.undo()
    return emissions


def stock_request(emissions: Emissions) -> bytes:
    return bytes(encode_spans(emissions.sdk_spans()).SerializeToString())


def span_ids(data: bytes) -> list[str]:
    request = ExportTraceServiceRequest.FromString(data)
    return [s.span_id.hex() for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


def test_a_batch_of_several_emissions_is_posted_as_the_stock_exporters_request(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = GatewayMetrics()
    p = queue(backend.url, metrics)
    emissions = play(p, monkeypatch)
    assert len(emissions.records) > 2
    assert p.force_flush(10_000)
    # One request, byte for byte what the stock SDK conversion gives for the whole batch of SDK spans.
    assert backend.bodies == [stock_request(emissions)]
    count = sum(len(r) for _, r in emissions.records)
    assert counter(metrics, "vtg_spans_exported", "otlp_http") == count
    p.shutdown()


def test_refused_posts_are_retried_with_the_same_bytes_until_delivered_once(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.statuses = [503] * 4
    metrics = GatewayMetrics()
    p = queue(backend.url, metrics)
    emissions = play(p, monkeypatch)
    assert p.force_flush(30_000)
    assert backend.bodies == [stock_request(emissions)] * 5
    assert backend.accepted == [stock_request(emissions)]
    assert counter(metrics, "vtg_export_retries", "otlp_http") >= 1  # the client's own retries gave up
    assert counter(metrics, "vtg_spans_dropped", "otlp_http") == 0
    p.shutdown()


def test_a_batch_refused_for_good_is_dropped_and_counted(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    backend.statuses = [400]
    metrics = GatewayMetrics()
    p = queue(backend.url, metrics)
    emissions = play(p, monkeypatch)
    p.force_flush(10_000)
    assert len(backend.bodies) == 1
    assert counter(metrics, "vtg_spans_dropped", "otlp_http") == sum(len(r) for _, r in emissions.records)
    p.shutdown()


def test_the_queue_bound_drops_and_counts_spans_and_every_span_is_delivered_or_counted(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.statuses = [503] * 10**6
    metrics = GatewayMetrics()
    p = queue(backend.url, metrics, max_queue_size=4, retry_initial_s=5, retry_max_s=5)
    emissions = play(p, monkeypatch)
    total = sum(len(r) for _, r in emissions.records)
    assert total > 4
    assert counter(metrics, "vtg_spans_dropped", "otlp_http") >= total - 8  # the queue, plus a batch in flight
    p.shutdown(timeout_millis=100)
    delivered = sum(len(span_ids(b)) for b in backend.accepted)
    assert counter(metrics, "vtg_spans_dropped", "otlp_http") + delivered == total


def test_while_the_backend_is_away_batches_wait_on_disk_as_otlp_and_are_posted_once_it_is_back(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.statuses = [503] * 3
    metrics = GatewayMetrics()
    spool = Spool(tmp_path, 10**8)
    p = queue(backend.url, metrics, max_export_batch_size=3, schedule_delay_millis=10, spool=spool)
    emissions = play(p, monkeypatch)
    assert p.force_flush(20_000)
    expected = [s.context.span_id for s in emissions.sdk_spans()]  # type: ignore[union-attr]
    delivered = [int(i, 16) for body in backend.accepted for i in span_ids(body)]
    assert delivered == expected  # each once, in order
    assert len(spool) == 0 and not list(tmp_path.glob("*.otlp"))
    assert counter(metrics, "vtg_spans_dropped", "otlp_http") == 0
    assert counter(metrics, "vtg_spans_exported", "otlp_http") == len(expected)
    p.shutdown()


def test_spans_undelivered_at_shutdown_are_spooled_as_the_stock_request(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.statuses = [503] * 10**6
    metrics = GatewayMetrics()
    spool = Spool(tmp_path, 10**8)
    p = queue(backend.url, metrics, retry_initial_s=60, retry_max_s=60, spool=spool)
    emissions = play(p, monkeypatch)
    p.shutdown(timeout_millis=100)
    assert counter(metrics, "vtg_spans_dropped", "otlp_http") == 0
    files = sorted(tmp_path.glob("*.otlp"))
    kept = [s for f in files for s in decode_batch(f.read_bytes())]
    assert sorted(s.context.span_id for s in kept) == sorted(  # type: ignore[union-attr]
        s.context.span_id for s in emissions.sdk_spans())  # type: ignore[union-attr]
    if len(files) == 1:
        assert files[0].read_bytes() == stock_request(emissions)


def test_the_gateway_with_otlp_builds_no_sdk_span_yet_the_collector_and_viewer_get_every_span(
    collector: Collector, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_sdk_span(*args: object) -> ReadableSpan:
        raise AssertionError("an SDK span was built with only OTLP configured")

    monkeypatch.setattr(SpanEmitter, "build", no_sdk_span)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.http_endpoint)
    env = {**ENV, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_METRICS_EXPORTER": "none"}
    with TestClient(create_app(load_telemetry(env=env))) as client:
        s = start(client, user_id="u1", model="gemini-live", agent="concierge")
        events = [{"type": "user.speech_start", "id": "a", "ts": time.time() * 1000},
                  {"type": "user.speech_end", "id": "b", "ts": time.time() * 1000 + 5}]
        assert client.post(f"/v1/sessions/{s['session_id']}/events", json={"events": events},
                           headers=auth(s)).status_code == 202
        assert client.post(f"/v1/sessions/{s['session_id']}/end", json={"reason": "completed"},
                           headers=auth(s)).status_code == 200
        received = sink.trace(s["trace_id"])
        viewed = spans_of(client, s["trace_id"])
    assert {x.name.split(" ")[0] for x in received} >= {"voice_session", "invoke_agent", "user_speech"}
    assert {x["span_id"] for x in viewed} == {x.span_id for x in received}
