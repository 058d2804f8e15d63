"""A disk spool for one exporter: batches the backend could not take, kept across restarts.

Batches are stored as the OTLP protobuf the stock exporter would send
(``ExportTraceServiceRequest``), one file each, replayed oldest first. On the
way back they are decoded into SDK spans again, so any exporter (OTLP or
Langfuse) can take them; decoding then re-encoding gives the same bytes. The
spool is bounded in bytes: past the bound a batch is refused and the caller
counts it as dropped.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util.types import AttributeValue

from gateway.delivery.otlp_encode import OtlpEncoder

log = logging.getLogger("gateway.delivery.export")

_REMOTE = 0x200  # SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_KINDS = {1: SpanKind.INTERNAL, 2: SpanKind.SERVER, 3: SpanKind.CLIENT, 4: SpanKind.PRODUCER, 5: SpanKind.CONSUMER}


def _value(v: AnyValue) -> AttributeValue | None:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        items = [_value(x) for x in v.array_value.values]
        return tuple(i for i in items if i is not None)
    if kind in ("string_value", "bool_value", "int_value", "double_value"):
        value: AttributeValue = getattr(v, kind)
        return value
    return None


def _attributes(kvs: Sequence[KeyValue]) -> dict[str, AttributeValue]:
    out: dict[str, AttributeValue] = {}
    for kv in kvs:
        value = _value(kv.value)
        if value is not None:
            out[kv.key] = value
    return out


def _trace_state(raw: str) -> TraceState | None:
    return TraceState.from_header([raw]) if raw else None


def _span(pb: PbSpan, resource: Resource, scope: InstrumentationScope) -> ReadableSpan:
    trace_id = int.from_bytes(pb.trace_id, "big")
    context = SpanContext(trace_id, int.from_bytes(pb.span_id, "big"), False, TraceFlags(TraceFlags.SAMPLED),
                          _trace_state(pb.trace_state))
    parent = None
    if pb.parent_span_id:
        parent = SpanContext(trace_id, int.from_bytes(pb.parent_span_id, "big"), bool(pb.flags & _REMOTE),
                             TraceFlags(TraceFlags.SAMPLED))
    events = [Event(e.name, _attributes(e.attributes), e.time_unix_nano) for e in pb.events]
    links = [
        Link(SpanContext(int.from_bytes(link.trace_id, "big"), int.from_bytes(link.span_id, "big"),
                         bool(link.flags & _REMOTE), TraceFlags(TraceFlags.SAMPLED)), _attributes(link.attributes))
        for link in pb.links
    ]
    status = Status(StatusCode(pb.status.code), pb.status.message or None)
    return ReadableSpan(
        name=pb.name, context=context, parent=parent, resource=resource, attributes=_attributes(pb.attributes),
        events=events, links=links, kind=_KINDS.get(pb.kind, SpanKind.INTERNAL), status=status,
        start_time=pb.start_time_unix_nano, end_time=pb.end_time_unix_nano, instrumentation_scope=scope,
    )


_local = threading.local()  # each exporter's worker thread gets its own encoder (and caches)


def encode_batch(spans: Sequence[ReadableSpan]) -> bytes:
    encoder = getattr(_local, "encoder", None)
    if encoder is None:
        encoder = _local.encoder = OtlpEncoder()
    return encoder.request(spans)


def span_count(data: bytes) -> int:
    """How many spans an OTLP request holds."""
    request = ExportTraceServiceRequest.FromString(data)
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def decode_batch(data: bytes) -> list[ReadableSpan]:
    request = ExportTraceServiceRequest.FromString(data)
    spans: list[ReadableSpan] = []
    for rs in request.resource_spans:
        resource = Resource(_attributes(rs.resource.attributes), rs.schema_url)
        for ss in rs.scope_spans:
            scope = InstrumentationScope(ss.scope.name, ss.scope.version or None, ss.schema_url or None)
            spans.extend(_span(pb, resource, scope) for pb in ss.spans)
    return spans


class Spool:
    def __init__(self, directory: str | Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._counter = itertools.count()
        # The export queue's worker replays while the outbox drain (another thread) may add.
        self._lock = threading.Lock()
        for stale in self.directory.glob("*.tmp"):  # a write cut short by a crash never became a batch
            stale.unlink(missing_ok=True)
        self._files = sorted(self.directory.glob("*.otlp"))
        self.bytes = sum(f.stat().st_size for f in self._files)
        if self._files:
            log.info("spool %s: %d batches (%d bytes) from before the restart", self.directory, len(self._files),
                     self.bytes)

    def __len__(self) -> int:
        return len(self._files)

    def put(self, spans: Sequence[ReadableSpan]) -> bool:
        return self.put_encoded(encode_batch(spans))

    def put_encoded(self, data: bytes) -> bool:
        """Keep an OTLP request as it is; False (nothing written) past the bound."""
        with self._lock:
            if self.bytes + len(data) > self.max_bytes:
                return False
            self.bytes += len(data)
        # Names sort in write order: time first, then a counter for writes within one nanosecond.
        path = self.directory / f"{time.time_ns():020d}-{next(self._counter):06d}.otlp"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        with self._lock:
            self._files.append(path)
        return True

    def oldest(self) -> tuple[Path, list[ReadableSpan]] | None:
        while self._files:
            path = self._files[0]
            try:
                return path, decode_batch(path.read_bytes())
            except (OSError, ValueError, DecodeError) as exc:
                log.error("spool: dropping unreadable batch %s: %s", path, exc)
                self.remove(path)
        return None

    def oldest_encoded(self) -> tuple[Path, tuple[bytes, int]] | None:
        """The oldest batch as it was written (an OTLP request) and its span count, for an exporter that posts
        OTLP as it is."""
        while self._files:
            path = self._files[0]
            try:
                data = path.read_bytes()
                return path, (data, span_count(data))
            except (OSError, ValueError, DecodeError) as exc:
                log.error("spool: dropping unreadable batch %s: %s", path, exc)
                self.remove(path)
        return None

    def remove(self, path: Path) -> None:
        with self._lock:
            if path in self._files:
                self._files.remove(path)
        try:
            self.bytes -= path.stat().st_size
            path.unlink()
        except OSError:
            pass
