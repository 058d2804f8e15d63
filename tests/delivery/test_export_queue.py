from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.delivery.export import InstrumentedExporter, with_fast_encoding
from gateway.delivery.export_queue import RetryingBatchProcessor
from gateway.delivery.spool import Spool
from gateway.metrics import GatewayMetrics


class FlakyExporter(InMemorySpanExporter):
    """The SDK's in-memory exporter that fails its first ``failures`` calls, answering ``status`` each time."""

    def __init__(self, failures: int, status: int | None = None) -> None:
        super().__init__()
        self.failures = failures
        self.status = status
        self.last_status: int | None = None
        self.calls = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self.calls += 1
            if self.calls <= self.failures:
                self.last_status = self.status
                return SpanExportResult.FAILURE
            self.last_status = None
        return super().export(spans)


def spans(n: int) -> list[ReadableSpan]:
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("t")
    out = []
    for i in range(n):
        span = tracer.start_span(f"s{i}")
        span.end()
        out.append(span)  # type: ignore[arg-type]
    return out


def counter(metrics: GatewayMetrics, name: str, exporter: str = "x") -> float:
    value = metrics.registry.get_sample_value(f"{name}_total", {"exporter": exporter})
    return value or 0.0


def processor(exporter: FlakyExporter, metrics: GatewayMetrics, **kw: float) -> RetryingBatchProcessor:
    settings: dict[str, float] = {"schedule_delay_millis": 10, "retry_initial_s": 0.01, "retry_max_s": 0.05}
    settings.update(kw)
    return RetryingBatchProcessor(exporter, "x", metrics, **settings)  # type: ignore[arg-type]


def test_failed_batches_are_retried_until_delivered_exactly_once() -> None:
    metrics = GatewayMetrics()
    exporter = FlakyExporter(failures=5)
    p = processor(exporter, metrics)
    batch = spans(30)
    for span in batch:
        p.on_end(span)
    assert p.force_flush(10_000)
    delivered = [s.name for s in exporter.get_finished_spans()]
    assert sorted(delivered) == sorted(s.name for s in batch)
    assert counter(metrics, "vtg_export_retries") == 5
    assert counter(metrics, "vtg_spans_dropped") == 0
    p.shutdown()


def test_a_failure_otlp_calls_permanent_is_dropped_and_counted_not_retried() -> None:
    metrics = GatewayMetrics()
    exporter = FlakyExporter(failures=1, status=400)
    p = processor(exporter, metrics)
    for span in spans(3):
        p.on_end(span)
    p.force_flush(5_000)
    assert exporter.calls == 1 and exporter.get_finished_spans() == ()
    assert counter(metrics, "vtg_spans_dropped") == 3
    p.shutdown()


def test_retryable_status_is_retried() -> None:
    metrics = GatewayMetrics()
    exporter = FlakyExporter(failures=2, status=503)
    p = processor(exporter, metrics)
    for span in spans(2):
        p.on_end(span)
    assert p.force_flush(5_000)
    assert len(exporter.get_finished_spans()) == 2
    p.shutdown()


def test_retries_stop_after_the_configured_time_and_count_the_drop() -> None:
    metrics = GatewayMetrics()
    exporter = FlakyExporter(failures=10**9)
    p = processor(exporter, metrics, retry_max_elapsed_s=0.2)
    for span in spans(4):
        p.on_end(span)
    p.force_flush(5_000)
    assert exporter.get_finished_spans() == ()
    assert counter(metrics, "vtg_spans_dropped") == 4
    p.shutdown()


def test_a_batch_being_retried_at_shutdown_is_counted_with_the_queue() -> None:
    metrics = GatewayMetrics()
    exporter = FlakyExporter(failures=10**9)
    p = processor(exporter, metrics, max_export_batch_size=5, retry_initial_s=60, retry_max_s=60)
    for span in spans(12):
        p.on_end(span)
    deadline = time.monotonic() + 30
    while exporter.calls == 0 and time.monotonic() < deadline:  # a batch is in its retry wait
        time.sleep(0.01)
    p.shutdown(timeout_millis=100)
    assert exporter.get_finished_spans() == ()
    assert counter(metrics, "vtg_spans_dropped") == 12


def test_a_batch_being_retried_at_shutdown_goes_to_the_spool(tmp_path: Path) -> None:
    metrics = GatewayMetrics()
    exporter = FlakyExporter(failures=10**9)
    spool = Spool(tmp_path, 10**8)
    p = RetryingBatchProcessor(exporter, "x", metrics, max_export_batch_size=5,  # type: ignore[arg-type]
                               schedule_delay_millis=10, retry_initial_s=60, retry_max_s=60, spool=spool)
    for span in spans(12):
        p.on_end(span)
    p.shutdown(timeout_millis=100)
    assert counter(metrics, "vtg_spans_dropped") == 0
    kept = []
    while (item := spool.oldest()) is not None:
        kept.extend(item[1])
        spool.remove(item[0])
    assert sorted(s.name for s in kept) == sorted(f"s{i}" for i in range(12))


def test_queue_bound_drops_and_counts_new_spans_while_the_backend_is_away() -> None:
    metrics = GatewayMetrics()
    exporter = FlakyExporter(failures=10**9)
    p = processor(exporter, metrics, max_queue_size=10, max_export_batch_size=5, retry_initial_s=5, retry_max_s=5)
    for span in spans(25):
        p.on_end(span)
    # 10 fit the queue (the worker may have taken up to 5 of them in flight), the rest were refused.
    assert counter(metrics, "vtg_spans_dropped") in (10, 15)
    assert p.queue_depth() <= 15
    exporter.failures = 0
    p.shutdown(timeout_millis=100)
    total = counter(metrics, "vtg_spans_dropped") + len(exporter.get_finished_spans())
    assert total == 25, "every span is either delivered or counted as dropped"


class LocalEndpoint:
    """A threaded HTTP server on a free loopback port serving ``handler``; ``url`` is its OTLP traces path."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ThrottlingBackend(LocalEndpoint):
    """An OTLP/HTTP endpoint that answers 429 with ``Retry-After`` to its first ``refusals`` requests."""

    def __init__(self, refusals: int, retry_after_s: int) -> None:
        self.arrivals: list[float] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                backend.arrivals.append(time.monotonic())
                if len(backend.arrivals) <= refusals:
                    self.send_response(429)
                    self.send_header("Retry-After", str(retry_after_s))
                else:
                    self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(Handler)


def test_a_backends_retry_after_is_honoured_beyond_the_exporters_own_deadline() -> None:
    backend = ThrottlingBackend(refusals=1, retry_after_s=2)
    try:
        metrics = GatewayMetrics()
        # The stock client gives up at once when asked to wait past its 1 s deadline; the queue must then
        # wait what was asked, not its own 10 ms backoff.
        stock = OTLPSpanExporter(endpoint=backend.url, timeout=1)
        exporter = InstrumentedExporter("x", with_fast_encoding(stock), metrics)
        p = RetryingBatchProcessor(exporter, "x", metrics, schedule_delay_millis=10, retry_initial_s=0.01,
                                   retry_max_s=0.05)
        for span in spans(3):
            p.on_end(span)
        deadline = time.monotonic() + 15
        while counter(metrics, "vtg_spans_exported") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert counter(metrics, "vtg_spans_exported") == 3
        assert len(backend.arrivals) == 2
        assert backend.arrivals[1] - backend.arrivals[0] >= 1.9
        p.shutdown()
    finally:
        backend.close()
