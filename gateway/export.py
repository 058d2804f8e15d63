"""The export pipeline: the gateway's own TracerProvider and one queue per backend.

Each exporter sits behind its own batch processor (queue + worker thread), so
a slow or failing backend never delays another backend nor an HTTP response.
The exporter is wrapped to count what it delivers, fails and drops; the
wrapper never lets an exception out of ``export()``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from gateway.metrics import GatewayMetrics

log = logging.getLogger("gateway.export")


class InstrumentedExporter(SpanExporter):
    def __init__(self, name: str, inner: SpanExporter, metrics: GatewayMetrics) -> None:
        self.name = name
        self.inner = inner
        self._metrics = metrics

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
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

    def shutdown(self) -> None:
        try:
            self.inner.shutdown()
        except Exception:
            log.exception("exporter %s failed to shut down", self.name)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        flush = getattr(self.inner, "force_flush", None)
        return bool(flush(timeout_millis)) if flush is not None else True


class CountingBatchProcessor(BatchSpanProcessor):
    """The stock batch processor drops silently when its queue is full; this one counts each drop."""

    def __init__(self, exporter: InstrumentedExporter, metrics: GatewayMetrics, **kwargs: int | None) -> None:
        super().__init__(exporter, **kwargs)  # type: ignore[arg-type]
        self.name = exporter.name
        self._metrics = metrics
        self._max_queue = int(getattr(self._batch_processor, "_max_queue_size", 0))

    def queue_depth(self) -> int:
        queue = getattr(self._batch_processor, "_queue", None)
        return len(queue) if queue is not None else 0

    def on_end(self, span: ReadableSpan) -> None:
        if self._max_queue and self.queue_depth() >= self._max_queue:
            self._metrics.spans_dropped.labels(self.name).inc()
        super().on_end(span)


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
    for attr in ("endpoint", "_endpoint"):
        value = getattr(inner, attr, None)
        if isinstance(value, str):
            return value
    return None


def attach(
    provider: TracerProvider,
    kind: str,
    exporter: SpanExporter,
    metrics: GatewayMetrics,
    batch: bool = True,
    **batch_settings: int | None,
) -> ExporterInfo:
    """Put one exporter behind its own processor on the provider."""
    name = kind
    wrapped = InstrumentedExporter(name, exporter, metrics)
    processor: SpanProcessor
    if batch:
        processor = CountingBatchProcessor(wrapped, metrics, **batch_settings)
    else:
        log.warning("exporter %s uses a simple (synchronous) processor: exports block the request path", name)
        processor = SimpleSpanProcessor(wrapped)
    provider.add_span_processor(processor)
    settings: dict[str, object] = {k: v for k, v in batch_settings.items() if v is not None}
    return ExporterInfo(name, kind, endpoint_of(exporter), processor, settings)


def unique_names(infos: list[ExporterInfo]) -> None:
    """Two backends of one kind (two OTLP collectors) need distinct metric labels."""
    seen: dict[str, int] = {}
    for info in infos:
        n = seen.get(info.kind, 0)
        seen[info.kind] = n + 1
        if n:
            info.name = f"{info.kind}_{n + 1}"
            processor = info.processor
            if isinstance(processor, CountingBatchProcessor):
                processor.name = info.name
            exporter = getattr(getattr(processor, "_batch_processor", None), "_exporter", None)
            exporter = exporter or getattr(processor, "span_exporter", None)
            if isinstance(exporter, InstrumentedExporter):
                exporter.name = info.name
