"""Recently finished spans, grouped by trace, kept in memory.

It is the embedded default backend (``serve`` with nothing configured still
shows what it traced) and what the viewer reads. A span processor, so it
sees exactly what the exporters see, as the same OTLP bytes (``on_encoded``:
the emission's one encoding, or the outbox's). Keeping bytes matters: a
bytes object is invisible to the garbage collector, while a few thousand
live SDK spans (a dozen objects each) made every full collection pause the
event loop.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

from gateway.delivery.otlp_encode import OtlpEncoder
from gateway.delivery.otlp_records import EncodedSpans
from gateway.delivery.spool import decode_batch


def span_to_dict(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "name": span.name,
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "kind": span.kind.name.lower(),
        "start_time_unix_nano": span.start_time,
        "end_time_unix_nano": span.end_time,
        "attributes": {k: list(v) if isinstance(v, tuple) else v for k, v in (span.attributes or {}).items()},
        "events": [
            {"name": e.name, "time_unix_nano": e.timestamp, "attributes": dict(e.attributes or {})}
            for e in span.events
        ],
        "status": {"code": span.status.status_code.name.lower(), "description": span.status.description}
        if span.status.status_code != StatusCode.UNSET
        else {"code": "unset"},
    }


class RecentTraces(SpanProcessor):
    def __init__(self, max_traces: int = 100, max_spans_per_trace: int = 2000) -> None:
        self._max_traces = max_traces
        self._max_spans = max_spans_per_trace
        self._traces: OrderedDict[str, list[bytes]] = OrderedDict()
        self._encoder = OtlpEncoder()
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self._max_traces <= 0:
            return
        ctx = span.get_span_context()
        if ctx is None:
            return
        self.add_encoded(f"{ctx.trace_id:032x}", self._encoder.request([span]))

    takes_encoded = True

    def on_encoded(self, spans: EncodedSpans) -> None:
        if self._max_traces <= 0:
            return
        for trace_id, data in spans.by_trace().items():
            self.add_encoded(trace_id, data)

    def add_encoded(self, key: str, data: bytes) -> None:
        """Spans of one trace as an OTLP request (one span or several): the outbox's bytes, kept as they are."""
        if self._max_traces <= 0:
            return
        with self._lock:
            spans = self._traces.get(key)
            if spans is None:
                spans = self._traces[key] = []
                while len(self._traces) > self._max_traces:
                    self._traces.popitem(last=False)
            if len(spans) < self._max_spans:
                spans.append(data)

    def get(self, trace_id: str) -> list[dict[str, Any]] | None:
        with self._lock:
            encoded = list(self._traces.get(trace_id, ()))
        return [span_to_dict(s) for data in encoded for s in decode_batch(data)] if encoded else None

    def trace_ids(self) -> list[str]:
        with self._lock:
            return list(reversed(self._traces))

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
