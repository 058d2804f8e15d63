"""SDK spans → OTLP ``ExportTraceServiceRequest`` bytes, written directly in the protobuf wire format.

The stock path builds a protobuf object per span, attribute and value, then
serializes them: ~60 µs a span here, nearly all of it object building (the
serialization itself is under 1 µs). This writes the same bytes straight from
the spans, in field-number order with proto3 defaults left out, exactly as the
stock encoder's output; tests decode both and compare, and compare the bytes.
Key/value pairs repeat across a session's spans (session id, agent, model,
operation names), so their encodings are cached.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind

_KIND = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3, SpanKind.PRODUCER: 4, SpanKind.CONSUMER: 5}
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
_pack_q = struct.Struct("<Q").pack
_pack_i = struct.Struct("<I").pack
_pack_d = struct.Struct("<d").pack


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64: two's complement, ten bytes
    if n < 0x80:
        return bytes((n,))
    if 1 << 56 <= n < 1 << 63:  # nine bytes: a time in Unix nanoseconds (half the loop's cost)
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80, n >> 21 & 0x7F | 0x80,
                      n >> 28 & 0x7F | 0x80, n >> 35 & 0x7F | 0x80, n >> 42 & 0x7F | 0x80, n >> 49 & 0x7F | 0x80,
                      n >> 56))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


def _tag(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


# Tags: (field number << 3 | wire type), by message.
_T = {name: _tag(n, w) for name, (n, w) in {
    "rs.resource": (1, 2), "rs.scope_spans": (2, 2), "rs.schema_url": (3, 2), "req.resource_spans": (1, 2),
    "res.attributes": (1, 2), "res.dropped": (2, 0),
    "ss.scope": (1, 2), "ss.spans": (2, 2), "ss.schema_url": (3, 2),
    "scope.name": (1, 2), "scope.version": (2, 2), "scope.attributes": (3, 2),
    "span.trace_id": (1, 2), "span.span_id": (2, 2), "span.trace_state": (3, 2), "span.parent": (4, 2),
    "span.name": (5, 2), "span.kind": (6, 0), "span.start": (7, 1), "span.end": (8, 1), "span.attributes": (9, 2),
    "span.dropped_attributes": (10, 0), "span.events": (11, 2), "span.dropped_events": (12, 0),
    "span.links": (13, 2), "span.dropped_links": (14, 0), "span.status": (15, 2), "span.flags": (16, 5),
    "event.time": (1, 1), "event.name": (2, 2), "event.attributes": (3, 2), "event.dropped": (4, 0),
    "link.trace_id": (1, 2), "link.span_id": (2, 2), "link.trace_state": (3, 2), "link.attributes": (4, 2),
    "link.dropped": (5, 0), "link.flags": (6, 5),
    "status.message": (2, 2), "status.code": (3, 0),
    "kv.key": (1, 2), "kv.value": (2, 2),
    "any.string": (1, 2), "any.bool": (2, 0), "any.int": (3, 0), "any.double": (4, 1), "any.array": (5, 2),
    "any.kvlist": (6, 2), "any.bytes": (7, 2), "list.values": (1, 2),
}.items()}


def _any(value: Any) -> bytes:
    # Members of a oneof are written even at their default value: that is how the receiver knows which it is.
    if value is None:
        return b""
    if isinstance(value, bool):
        return _T["any.bool"] + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _field(_T["any.string"], value.encode())
    if isinstance(value, int):
        return _T["any.int"] + _varint(value)
    if isinstance(value, float):
        return _T["any.double"] + _pack_d(value)
    if isinstance(value, bytes):
        return _field(_T["any.bytes"], value)
    if isinstance(value, Sequence):
        return _field(_T["any.array"], b"".join(_field(_T["list.values"], _any(v)) for v in value))
    if isinstance(value, Mapping):
        return _field(_T["any.kvlist"], b"".join(_field(_T["list.values"], _kv(str(k), v)) for k, v in value.items()))
    raise TypeError(f"cannot encode {type(value).__name__} as an OTLP value")


def _kv(key: str, value: Any) -> bytes:
    return (_field(_T["kv.key"], key.encode()) if key else b"") + _field(_T["kv.value"], _any(value))


_SCALARS = frozenset({str, int, float, bool})


class _KeyValueCache:
    """Encoded attribute pairs; bounded, since values come from clients."""

    def __init__(self, limit: int = 2048) -> None:
        self._cache: dict[tuple[bytes, str, type, Any], bytes] = {}
        self._limit = limit

    def attributes(self, tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
        if not attributes:
            return b""
        parts = []
        cache = self._cache
        for key, value in attributes.items():
            if type(value) in _SCALARS:
                ck = (tag, key, type(value), value)
                encoded = cache.get(ck)
                if encoded is None:
                    encoded = _field(tag, _kv(key, value))
                    if len(cache) >= self._limit:
                        cache.clear()
                    cache[ck] = encoded
            else:
                encoded = _field(tag, _kv(key, value))
            parts.append(encoded)
        return b"".join(parts)


class SpanFrame:
    """The resource and scope around encoded spans: ``request`` wraps ``ScopeSpans.spans`` fields into the
    ``ExportTraceServiceRequest`` the stock encoder writes for those spans (one resource, one scope)."""

    __slots__ = ("_head", "_scope", "_scope_tail", "_tail")

    def __init__(self, resource: bytes, resource_schema: str, scope: bytes, scope_schema: str | None) -> None:
        self._head = resource
        self._tail = _field(_T["rs.schema_url"], resource_schema.encode()) if resource_schema else b""
        self._scope = scope
        self._scope_tail = _field(_T["ss.schema_url"], scope_schema.encode()) if scope_schema else b""

    def request(self, spans: Sequence[bytes]) -> bytes:
        """``spans``: each an encoded ``ScopeSpans.spans`` field (tag included).

        The lengths are added up first, so that a batch (hundreds of KB) is copied once, by one join, rather
        than once per enclosing message."""
        if not spans:
            return b""
        scope_spans = len(self._scope) + sum(map(len, spans)) + len(self._scope_tail)
        scope_head = _T["rs.scope_spans"] + _varint(scope_spans)
        resource_spans = len(self._head) + len(scope_head) + scope_spans + len(self._tail)
        return b"".join((_T["req.resource_spans"], _varint(resource_spans), self._head, scope_head, self._scope,
                         *spans, self._scope_tail, self._tail))


def span_field(payload: bytes) -> bytes:
    """An encoded ``Span`` as a ``ScopeSpans.spans`` field."""
    return _field(_T["ss.spans"], payload)


class OtlpEncoder:
    def __init__(self) -> None:
        self._kv = _KeyValueCache()
        # Keyed by identity: a Resource hashes by JSON-dumping its attributes, far too slow per span. The value
        # keeps the object alive, so its id cannot be reused while cached.
        self._resources: dict[int, tuple[Resource, bytes]] = {}
        self._scopes: dict[InstrumentationScope | None, bytes] = {}
        self._frames: dict[tuple[int, InstrumentationScope | None], tuple[Resource, SpanFrame]] = {}

    def _resource(self, resource: Resource) -> bytes:
        cached = self._resources.get(id(resource))
        if cached is None:
            if len(self._resources) > 64:
                self._resources.clear()
            encoded = _field(_T["rs.resource"], self._kv.attributes(_T["res.attributes"], resource.attributes))
            cached = self._resources[id(resource)] = (resource, encoded)
        return cached[1]

    def _scope(self, scope: InstrumentationScope | None) -> bytes:
        encoded = self._scopes.get(scope)
        if encoded is None:
            payload = b""
            if scope is not None:
                payload = (
                    (_field(_T["scope.name"], scope.name.encode()) if scope.name else b"")
                    + (_field(_T["scope.version"], scope.version.encode()) if scope.version else b"")
                    + self._kv.attributes(_T["scope.attributes"], scope.attributes)
                )
            if len(self._scopes) > 64:
                self._scopes.clear()
            encoded = self._scopes[scope] = _field(_T["ss.scope"], payload)
        return encoded

    def frame(self, resource: Resource, scope: InstrumentationScope | None) -> SpanFrame:
        """The frame of spans of this resource and scope (built once per pair, then cached)."""
        key = (id(resource), scope)
        cached = self._frames.get(key)
        if cached is None:
            if len(self._frames) > 64:
                self._frames.clear()
            frame = SpanFrame(self._resource(resource), resource.schema_url, self._scope(scope),
                              scope.schema_url if scope else None)
            cached = self._frames[key] = (resource, frame)  # the resource held, so its id is not reused
        return cached[1]

    def span(self, span: ReadableSpan) -> bytes:
        ctx = span.get_span_context()
        assert ctx is not None
        kv = self._kv
        out = [
            _T["span.trace_id"], b"\x10", ctx.trace_id.to_bytes(16, "big"),
            _T["span.span_id"], b"\x08", ctx.span_id.to_bytes(8, "big"),
        ]
        if ctx.trace_state:
            out.append(_field(_T["span.trace_state"], ",".join(f"{k}={v}" for k, v in ctx.trace_state.items())
                              .encode()))
        parent = span.parent
        if parent is not None:
            out += (_T["span.parent"], b"\x08", parent.span_id.to_bytes(8, "big"))
        if span.name:
            out.append(_field(_T["span.name"], span.name.encode()))
        out += (_T["span.kind"], _varint(_KIND[span.kind]))
        if span.start_time:
            out += (_T["span.start"], _pack_q(span.start_time))
        if span.end_time:
            out += (_T["span.end"], _pack_q(span.end_time))
        out.append(kv.attributes(_T["span.attributes"], span.attributes))
        if span.dropped_attributes:
            out += (_T["span.dropped_attributes"], _varint(span.dropped_attributes))
        for event in span.events:
            payload = (
                (_T["event.time"] + _pack_q(event.timestamp) if event.timestamp else b"")
                + (_field(_T["event.name"], event.name.encode()) if event.name else b"")
                + kv.attributes(_T["event.attributes"], event.attributes)
                + (_T["event.dropped"] + _varint(event.dropped_attributes) if event.dropped_attributes else b"")
            )
            out.append(_field(_T["span.events"], payload))
        if span.dropped_events:
            out += (_T["span.dropped_events"], _varint(span.dropped_events))
        for link in span.links:
            lc = link.context
            flags = _HAS_IS_REMOTE | (_IS_REMOTE if lc.is_remote else 0)
            payload = (
                _T["link.trace_id"] + b"\x10" + lc.trace_id.to_bytes(16, "big")
                + _T["link.span_id"] + b"\x08" + lc.span_id.to_bytes(8, "big")
                + (_field(_T["link.trace_state"], ",".join(f"{k}={v}" for k, v in lc.trace_state.items()).encode())
                   if lc.trace_state else b"")
                + kv.attributes(_T["link.attributes"], link.attributes)
                + (_T["link.dropped"] + _varint(link.dropped_attributes) if link.dropped_attributes else b"")
                + _T["link.flags"] + _pack_i(flags)
            )
            out.append(_field(_T["span.links"], payload))
        if span.dropped_links:
            out += (_T["span.dropped_links"], _varint(span.dropped_links))
        status = span.status
        code = status.status_code.value
        out.append(_field(_T["span.status"],
                          (_field(_T["status.message"], status.description.encode()) if status.description else b"")
                          + (_T["status.code"] + _varint(code) if code else b"")))
        flags = _HAS_IS_REMOTE | (_IS_REMOTE if parent is not None and parent.is_remote else 0)
        out += (_T["span.flags"], _pack_i(flags))
        return b"".join(out)

    def request(self, spans: Sequence[ReadableSpan], yield_every_s: float = 0.0) -> bytes:
        """The ``ExportTraceServiceRequest`` the stock exporter would send for these spans, as bytes.

        ``yield_every_s``: on a worker thread, hand the GIL over after encoding for that long. A full batch
        takes milliseconds, and the event loop, wanting the GIL back for a request, would otherwise wait out
        the interpreter's whole switch interval (5 ms) each time: that was the tail of request latency. Only a
        real sleep hands it over (a thread that releases and retakes it at once keeps it), and a sleep costs
        tens of µs of CPU, so it goes by time, not by span count."""
        # Grouped by resource, then scope, in order of first appearance, as the stock encoder does; the stock
        # one groups equal resources together, and so does this (equal by identity first, then by value).
        grouped: dict[int, tuple[Resource, dict[InstrumentationScope | None, list[bytes]]]] = {}
        next_yield = time.perf_counter() + yield_every_s if yield_every_s else None
        for span in spans:
            if next_yield is not None and time.perf_counter() >= next_yield:
                time.sleep(0)
                next_yield = time.perf_counter() + yield_every_s
            resource = span.resource
            entry = grouped.get(id(resource))
            if entry is None:
                entry = next((e for e in grouped.values() if e[0] == resource), None)
                if entry is None:
                    entry = grouped[id(resource)] = (resource, {})
            entry[1].setdefault(span.instrumentation_scope or None, []).append(
                _field(_T["ss.spans"], self.span(span)))
        out = []
        for resource, by_scope in grouped.values():
            scope_spans = []
            for scope, encoded in by_scope.items():
                schema = _field(_T["ss.schema_url"], scope.schema_url.encode()) if scope and scope.schema_url else b""
                scope_spans.append(_field(_T["rs.scope_spans"], self._scope(scope) + b"".join(encoded) + schema))
            schema = _field(_T["rs.schema_url"], resource.schema_url.encode()) if resource.schema_url else b""
            out.append(_field(_T["req.resource_spans"], self._resource(resource) + b"".join(scope_spans) + schema))
        return b"".join(out)
