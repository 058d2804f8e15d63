"""The export pipeline: the gateway's own TracerProvider and one queue per backend.

Each exporter sits behind its own batch processor (queue + worker thread), so
a slow or failing backend never delays another backend nor an HTTP response.
The exporter is wrapped to count what it delivers and fails; the wrapper
never lets an exception out of ``export()``. The queue (``export_queue``)
retries through outages and counts what it drops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.common.http import _extract_retry_after  # the SDK's own parser (pinned release)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from gateway.delivery.export_queue import RetryingBatchProcessor
from gateway.delivery.grpc_bytes import FastOtlpGrpcExporter, is_stock_grpc
from gateway.delivery.http_post import lean_transport_for
from gateway.delivery.otlp_encode import OtlpEncoder
from gateway.delivery.spool import Spool, decode_batch
from gateway.metrics import GatewayMetrics

log = logging.getLogger("gateway.delivery.export")


def _otlp_http_client(exporter: SpanExporter) -> Any:
    """The stock OTLP/HTTP client inside an exporter (or inside a wrapping one such as Langfuse's), if any."""
    for candidate in (exporter, getattr(exporter, "_delegate", None)):
        client = getattr(candidate, "_client", None)
        if client is not None and callable(getattr(client, "export", None)):
            return client
    return None


class InstrumentedExporter(SpanExporter):
    def __init__(self, name: str, inner: SpanExporter, metrics: GatewayMetrics) -> None:
        self.name = name
        self.inner = inner
        self._metrics = metrics
        # The HTTP status of the last failed attempt: the queue retries only what OTLP calls transient.
        self.last_status: int | None = None
        # A backend's Retry-After. The stock client honours it only within its own short deadline and then
        # gives up without saying how long it was asked to wait, so the queue reads it here.
        self.last_retry_after_s: float | None = None
        client = _otlp_http_client(inner)
        if client is not None:
            send = client.export

            def recording_send(data: bytes) -> Any:
                result = send(data)
                self.last_status = getattr(result, "status_code", None)
                return result

            client.export = recording_send
            submit = getattr(client, "_submit", None)
            if callable(submit):

                def recording_submit(data: bytes, timeout: float) -> Any:
                    result = submit(data, timeout)
                    self.last_retry_after_s = _extract_retry_after(result)
                    return result

                client._submit = recording_submit

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.last_status = self.last_retry_after_s = None
        started = time.perf_counter()
        try:
            result = self.inner.export(spans)
        except Exception:
            log.exception("exporter %s raised; counting %d spans as failed", self.name, len(spans))
            result = SpanExportResult.FAILURE
        self._metrics.export_latency.labels(self.name).observe(time.perf_counter() - started)
        if result == SpanExportResult.SUCCESS:
            self._metrics.spans_exported.labels(self.name).inc(len(spans))
        else:
            self._metrics.spans_failed.labels(self.name).inc(len(spans))
        return result

    def export_encoded(self, data: bytes, count: int) -> SpanExportResult:
        """Export spans given as an OTLP request: sent as they are by an OTLP exporter (HTTP or gRPC), decoded to
        SDK spans only for any other (Langfuse's view, third-party exporters)."""
        self.last_status = self.last_retry_after_s = None
        started = time.perf_counter()
        try:
            post = getattr(self.inner, "export_encoded", None)
            result = post(data, count) if post is not None else self.inner.export(decode_batch(data))
        except Exception:
            log.exception("exporter %s raised; counting %d spans as failed", self.name, count)
            result = SpanExportResult.FAILURE
        self._metrics.export_latency.labels(self.name).observe(time.perf_counter() - started)
        if result == SpanExportResult.SUCCESS:
            self._metrics.spans_exported.labels(self.name).inc(count)
        else:
            self._metrics.spans_failed.labels(self.name).inc(count)
        return result

    def shutdown(self) -> None:
        try:
            self.inner.shutdown()
        except Exception:
            log.exception("exporter %s failed to shut down", self.name)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        flush = getattr(self.inner, "force_flush", None)
        return bool(flush(timeout_millis)) if flush is not None else True


_YIELD_EVERY_S = 0.001  # the longest the export thread encodes before handing the GIL to the event loop


class FastOtlpHttpExporter(SpanExporter):
    """The stock OTLP/HTTP exporter's client (retries, compression, TLS, headers) with the direct encoder,
    which writes the same bytes in a fraction of the time (``gateway.delivery.otlp_encode``), and under it a
    lean transport in place of ``requests`` where that changes nothing of what is sent (``http_post``)."""

    def __init__(self, stock: HttpSpanExporter) -> None:
        self._stock = stock
        self._encoder = OtlpEncoder()
        client = stock._client
        lean = lean_transport_for(getattr(client, "_transport", None), str(getattr(client, "_endpoint", "")))
        if lean is not None:
            client._transport = lean

    @property
    def _client(self) -> Any:
        return self._stock._client

    @property
    def _endpoint(self) -> str:
        return str(self._stock._endpoint)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if getattr(self._stock, "_shutdown", False):
            return SpanExportResult.FAILURE
        try:
            data = self._encoder.request(spans, yield_every_s=_YIELD_EVERY_S)
        except Exception:
            log.exception("could not encode %d spans", len(spans))
            return SpanExportResult.FAILURE
        return self.export_encoded(data)

    def export_encoded(self, data: bytes, count: int = 0) -> SpanExportResult:
        """Post an OTLP request encoded already (the outbox's bytes)."""
        if getattr(self._stock, "_shutdown", False):
            return SpanExportResult.FAILURE
        result = self._stock._client.export(data)
        return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self._stock.shutdown()  # type: ignore[no-untyped-call]  # unannotated in the SDK

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def with_fast_encoding(exporter: SpanExporter) -> SpanExporter:
    """Swap the stock OTLP encoding for the direct one: the OTLP/HTTP exporter's, also inside an exporter that
    delegates to it, and the OTLP/gRPC exporter's."""
    if type(exporter) is HttpSpanExporter:
        return FastOtlpHttpExporter(exporter)
    if is_stock_grpc(exporter):
        return FastOtlpGrpcExporter(exporter)
    delegate = getattr(exporter, "_delegate", None)
    if type(delegate) is HttpSpanExporter:
        exporter._delegate = FastOtlpHttpExporter(delegate)  # type: ignore[attr-defined]
    return exporter


@dataclass
class ExporterInfo:
    name: str
    kind: str
    endpoint: str | None
    processor: SpanProcessor
    settings: dict[str, object] = field(default_factory=dict)

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "exporter": self.kind}
        if self.endpoint:
            out["endpoint"] = self.endpoint
        out.update(self.settings)
        return out


def endpoint_of(exporter: SpanExporter) -> str | None:
    inner = getattr(exporter, "inner", exporter)
    # A wrapping exporter (Langfuse's) keeps its OTLP transport inside.
    for candidate in (inner, getattr(inner, "_delegate", None)):
        for attr in ("endpoint", "_endpoint"):
            value = getattr(candidate, attr, None)
            if isinstance(value, str):
                return value
    return None


@dataclass(frozen=True)
class BatchSettings:
    max_queue_size: int | None = None
    max_export_batch_size: int | None = None
    schedule_delay_millis: int | None = None
    export_timeout_millis: int | None = None
    retry_max_elapsed_s: float = 600.0
    retry_max_backoff_s: float = 30.0
    spool_dir: str = ""  # a directory per exporter under it; empty: no spool
    spool_max_bytes: int = 256 * 1024 * 1024


def attach(
    provider: TracerProvider,
    kind: str,
    exporter: SpanExporter,
    metrics: GatewayMetrics,
    batch: BatchSettings | None = None,
    taken: list[ExporterInfo] | None = None,
) -> ExporterInfo:
    """Put one exporter behind its own processor on the provider (``batch=None``: a synchronous one).

    Two backends of one kind (two OTLP collectors) get distinct names (``otlp_http_2``) for their metric
    labels and spool directories."""
    same = sum(1 for info in taken or [] if info.kind == kind)
    name = f"{kind}_{same + 1}" if same else kind
    exporter = with_fast_encoding(exporter)
    wrapped = InstrumentedExporter(name, exporter, metrics)
    processor: SpanProcessor
    if batch is not None:
        # An exporter that posts OTLP bytes as they are gets the spans' bytes; any other, SDK spans.
        processor = RetryingBatchProcessor(
            wrapped, name, metrics, encoded=callable(getattr(exporter, "export_encoded", None)),
            max_queue_size=batch.max_queue_size,
            max_export_batch_size=batch.max_export_batch_size,
            schedule_delay_millis=batch.schedule_delay_millis,
            retry_max_elapsed_s=batch.retry_max_elapsed_s,
            retry_max_s=batch.retry_max_backoff_s,
            spool=Spool(Path(batch.spool_dir) / name, batch.spool_max_bytes) if batch.spool_dir else None,
        )
        settings: dict[str, object] = {k: v for k, v in asdict(batch).items() if v is not None}
    else:
        log.warning("exporter %s uses a simple (synchronous) processor: exports block the request path", name)
        processor = SimpleSpanProcessor(wrapped)
        settings = {"processor": "simple"}
    provider.add_span_processor(processor)
    return ExporterInfo(name, kind, endpoint_of(exporter), processor, settings)
