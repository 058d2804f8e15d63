"""Finished span records → OTLP protobuf bytes, with no SDK object in between.

The bytes are exactly what the stock encoder (``encode_spans``) writes for the
``ReadableSpan`` the emitter would build from the same record
(``gateway.spans.SpanEmitter.build``): same ids, remote-parent flags, kind,
status, span limits (attribute counts and lengths, with the drop counts the
SDK's ``BoundedAttributes`` would report) and links. Tests decode both and
compare them, and compare the bytes. A mutation's spans are encoded once, on
the request's thread, and those bytes are what the export queues, the outbox,
the spool and the viewer's buffer all keep.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from gateway.delivery.otlp_encode import _T, OtlpEncoder, SpanFrame, _any, _field, _varint
from gateway.sessions.state import Attrs, FinishedSpan, SpanEvent, TraceRef

_K = TypeVar("_K")
_V = TypeVar("_V")
_pack_q = struct.Struct("<Q").pack
_pack_d = struct.Struct("<d").pack
_SMALL = [bytes((n,)) for n in range(0x80)]  # one-byte varints: most lengths here
_KIND = {"internal": _T["span.kind"] + _varint(1), "client": _T["span.kind"] + _varint(3)}
_FLAGS_LOCAL = _T["span.flags"] + struct.pack("<I", 0x100)  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE
_FLAGS_REMOTE = _T["span.flags"] + struct.pack("<I", 0x300)  # ... | SPAN_FLAGS_CONTEXT_IS_REMOTE
_LINK_FLAGS = _T["link.flags"] + struct.pack("<I", 0x100)  # links to our own spans: never remote
_STATUS_UNSET = _field(_T["span.status"], b"")
_UNSET_LOCAL, _UNSET_REMOTE = _STATUS_UNSET + _FLAGS_LOCAL, _STATUS_UNSET + _FLAGS_REMOTE
_pack_times = struct.Struct("<BQBQ").pack  # start and end, each after its tag (fields 7 and 8, fixed64)
_ERROR_CODE = _T["status.code"] + _varint(2)
_SPAN_NAME, _SPAN_START, _SPAN_END = _T["span.name"], _T["span.start"], _T["span.end"]
_SPAN_DROPPED, _SPAN_EVENTS, _SCOPE_SPAN = _T["span.dropped_attributes"], _T["span.events"], _T["ss.spans"]
_EVENT_TIME, _EVENT_NAME, _EVENT_DROPPED = _T["event.time"], _T["event.name"], _T["event.dropped"]
_TRACE_ID, _SPAN_ID, _PARENT = _T["span.trace_id"] + b"\x10", _T["span.span_id"] + b"\x08", _T["span.parent"] + b"\x08"
assert _T["span.start"] == b"\x39" and _T["span.end"] == b"\x41"


def _limit(limit: int | None) -> int | None:
    return None if limit is None or limit == SpanLimits.UNSET else limit


def _id(hex_id: str, size: int) -> bytes:
    if len(hex_id) == 2 * size:
        try:
            return bytes.fromhex(hex_id)
        except ValueError:
            pass
    return int(hex_id, 16).to_bytes(size, "big")  # what the emitter's int(..., 16) gives for any other spelling


def _remember(cache: dict[_K, _V], key: _K, value: _V, limit: int) -> _V:
    """``value``, kept in a bounded cache: a full one starts over, since keys and values come from clients."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value


def _len(n: int) -> bytes:
    return _SMALL[n] if n < 0x80 else _varint(n)


_SMALL_INT = 1 << 14  # ints cached by value below this (counts, turn numbers); larger ones are mostly unique


_NONE: dict[Any, bytes] = {}  # what a key without cached values looks up (never written to)


class _ByKey(dict[str, dict[str, bytes]]):
    """Strings' pairs by key, then by value: two lookups of str keys cost less than hashing a (key, value) tuple.
    A key looked up gets its dict at once: a string missed is always cached next."""

    def __missing__(self, key: str) -> dict[str, bytes]:
        values: dict[str, bytes] = {}
        self[key] = values
        return values


class _Attributes:
    """Encoded ``KeyValue`` fields of one message field (span or event attributes).

    Most of the export's CPU goes here, so each value type takes its cheapest way. A string's pair is cached:
    the session's facts (ids, provider, model, agent) and the constant names repeat on every span of a session.
    A float is mostly unique (latencies, costs): caching it would only push the repeated strings out of a bounded
    cache, so it is written from its key's prefix, cached per key (the pair's length does not depend on the
    value). Small ints and string lists are cached by key, then by value, each type apart (``True == 1 == 1.0``,
    so they never share a dict), as are booleans; large ints (times in ns) are written from their key's head.
    Bounded, since keys and values come from clients."""

    def __init__(self, tag: bytes, limit: int = 4096) -> None:
        self._tag = tag
        self._limit = limit
        self._keys: dict[str, bytes] = {}
        self._strings = _ByKey()
        self._ints: dict[str, dict[Any, bytes]] = {}
        self._lists: dict[str, dict[Any, bytes]] = {}
        self._bools: dict[str, dict[Any, bytes]] = {}
        self._by_key_count = 0  # pairs held by _strings, _ints, _lists and _bools together
        # Large ints by key: everything of the pair before the value's varint, and that varint's length.
        self._int_heads: dict[str, tuple[int, bytes]] = {}
        self._floats: dict[str, bytes] = {}

    def _key(self, key: str) -> bytes:
        encoded = self._keys.get(key)
        if encoded is None:
            raw = key.encode()
            # The key field (left out when empty, as proto3 does), then the value field's tag.
            encoded = _remember(self._keys, key, (b"\x0a" + _len(len(raw)) + raw if raw else b"") + b"\x12",
                                self._limit)
        return encoded

    def _pair(self, key: str, any_value: bytes) -> bytes:
        pair = self._key(key) + _len(len(any_value)) + any_value
        return self._tag + _len(len(pair)) + pair

    def encode(self, attributes: Attrs) -> bytes:
        if not attributes:
            return b""
        strings, ints, floats = self._strings, self._ints, self._floats
        out: list[bytes] = []
        append = out.append
        for key, value in attributes.items():
            kind = type(value)
            if kind is str:
                encoded = strings[key].get(value)  # type: ignore[arg-type]  # a str, just checked
                if encoded is None:
                    encoded = self._string(key, value)  # type: ignore[arg-type]  # a str, just checked
            elif kind is float:
                prefix = floats.get(key)
                if prefix is None:
                    prefix = self._float_prefix(key)
                append(prefix)
                encoded = _pack_d(value)
            elif kind is int:
                encoded = ints.get(key, _NONE).get(value)
                if encoded is None:
                    encoded = self._int(key, value)  # type: ignore[arg-type]  # an int, just checked
            elif kind is list:
                items = tuple(value)  # type: ignore[arg-type]  # a list, just checked
                encoded = self._lists.get(key, _NONE).get(items)
                if encoded is None:
                    encoded = self._list(key, items)
            elif kind is bool:
                encoded = self._bools.get(key, _NONE).get(value)
                if encoded is None:
                    encoded = self._bool(key, value)  # type: ignore[arg-type]  # a bool, just checked
            else:
                encoded = self._other(key, value)
            append(encoded)
        return b"".join(out)

    def _count(self) -> None:
        """One more value cached by key: all of them start over at the limit, so that it bounds keys and values
        alike."""
        if self._by_key_count >= self._limit:
            self._strings.clear()
            self._ints.clear()
            self._lists.clear()
            self._bools.clear()
            self._by_key_count = 0
        self._by_key_count += 1

    def _string(self, key: str, value: str) -> bytes:
        raw = value.encode()
        encoded = self._pair(key, b"\x0a" + _len(len(raw)) + raw)
        self._count()
        self._strings[key][value] = encoded
        return encoded

    def _int(self, key: str, value: int) -> bytes:
        any_value = b"\x18" + _varint(value)
        if -_SMALL_INT < value < _SMALL_INT:  # counts, turn numbers: they repeat; larger ones are mostly unique
            encoded = self._pair(key, any_value)
            self._count()
            self._ints.setdefault(key, {})[value] = encoded
            return encoded
        # A time in ns, mostly: the pair's head depends only on the key and the varint's length.
        head = self._int_heads.get(key)
        if head is not None and head[0] == len(any_value):
            return head[1] + any_value
        encoded = self._pair(key, any_value)
        _remember(self._int_heads, key, (len(any_value), encoded[:-len(any_value)]), self._limit)
        return encoded

    def _bool(self, key: str, value: bool) -> bytes:
        encoded = self._pair(key, b"\x10\x01" if value else b"\x10\x00")
        self._count()
        self._bools.setdefault(key, {})[value] = encoded
        return encoded

    def _list(self, key: str, items: tuple[Any, ...]) -> bytes:
        if not all(type(v) is str for v in items):  # not cached: its items may be True or 1
            return self._pair(key, _any(list(items)))
        # An ArrayValue of string AnyValues.
        values = [b"\x0a" + _len(len(raw)) + raw for raw in (v.encode() for v in items)]
        array = b"".join(b"\x0a" + _len(len(item)) + item for item in values)
        encoded = self._pair(key, b"\x2a" + _len(len(array)) + array)
        self._count()
        self._lists.setdefault(key, {})[items] = encoded
        return encoded

    def _float_prefix(self, key: str) -> bytes:
        """Everything of a double's pair before the value's 8 bytes."""
        key_field = self._key(key)
        return _remember(self._floats, key, self._tag + _len(len(key_field) + 10) + key_field + b"\x09\x21",
                         self._limit)

    def _other(self, key: str, value: Any) -> bytes:
        return self._pair(key, _any(value))  # as the generic encoder writes it; not cached


def _truncated(value: Any, length: int) -> Any:
    # As the SDK's _clean_attribute_value: strings cut, sequences (of strings) cut element-wise.
    if isinstance(value, str):
        return value[:length]
    if isinstance(value, list | tuple):
        return tuple(_truncated(v, length) for v in value)
    return value


def bounded(attributes: Attrs, count: int | None, length: int | None) -> tuple[Attrs, int]:
    """The attributes as ``BoundedAttributes(count, attributes, max_value_len=length)`` keeps them, and its drop
    count; the very dict while they are within the limits (as the emitter hands them to the SDK)."""
    if (count is None or len(attributes) <= count) and length is None:
        return attributes, 0
    if count == 0:
        return {}, len(attributes)
    kept = {k: (v if length is None else _truncated(v, length)) for k, v in attributes.items() if k}
    dropped = len(attributes) - len(kept)
    if count is not None and len(kept) > count:  # the oldest go first
        dropped += len(kept) - count
        kept = dict(list(kept.items())[len(kept) - count:])
    return kept, dropped


@dataclass(frozen=True, slots=True)
class EncodedSpans:
    """One emission's spans: each as (its trace id in hex, its ``ScopeSpans.spans`` field), in a shared frame."""

    frame: SpanFrame
    spans: list[tuple[str, bytes]]

    def request(self) -> bytes:
        return self.frame.request([s for _, s in self.spans])

    def by_trace(self) -> dict[str, bytes]:
        """One OTLP request per trace (a session's spans are all of one trace unless traced per turn)."""
        groups: dict[str, list[bytes]] = {}
        for trace_id, span in self.spans:
            groups.setdefault(trace_id, []).append(span)
        return {t: self.frame.request(s) for t, s in groups.items()}


class RecordEncoder:
    def __init__(self, resource: Resource, scope: InstrumentationScope, limits: SpanLimits | None = None) -> None:
        self.frame = OtlpEncoder().frame(resource, scope)
        self._span_attributes = _Attributes(_T["span.attributes"])
        self._event_attributes = _Attributes(_T["event.attributes"])
        self._names: dict[str, bytes] = {}
        self._event_names: dict[str, tuple[bytes, bytes]] = {}
        self._traces: dict[str, bytes] = {}
        self._parents: dict[str, bytes] = {}
        limits = limits or SpanLimits()
        self._span_count = _limit(limits.max_span_attributes)
        self._span_length = _limit(limits.max_span_attribute_length)
        self._event_count = _limit(limits.max_event_attributes)
        self._event_length = _limit(limits.max_attribute_length)
        self._max_events = _limit(limits.max_events)

    def encode(self, trace: TraceRef, records: Sequence[FinishedSpan]) -> EncodedSpans:
        return EncodedSpans(self.frame, [self.span(trace, r) for r in records])

    def request(self, trace: TraceRef, records: Sequence[FinishedSpan]) -> bytes:
        return self.frame.request([self.span(trace, r)[1] for r in records])

    def _name(self, name: str) -> bytes:
        """A span name's field; names repeat (``user_speech``, ``invoke_agent {agent}``)."""
        raw = name.encode()
        return _remember(self._names, name, _SPAN_NAME + _len(len(raw)) + raw if raw else b"", 1024)

    def _event_name(self, name: str) -> tuple[bytes, bytes]:
        """An event name's field, and what goes before a timed event's time when it has no attributes: the
        event's tag and length, then the time's tag (its length does not depend on the time)."""
        raw = name.encode()
        field = _EVENT_NAME + _len(len(raw)) + raw if raw else b""
        return _remember(self._event_names, name, (_SPAN_EVENTS + _len(9 + len(field)) + _EVENT_TIME, field), 1024)

    def _event(self, event: SpanEvent) -> bytes:
        head, name = self._event_names.get(event.name) or self._event_name(event.name)
        if not event.attributes and event.time_ns:  # the usual event: a mark in time
            return head + _pack_q(event.time_ns) + name
        payload = (_EVENT_TIME + _pack_q(event.time_ns) if event.time_ns else b"") + name
        if event.attributes:  # none: nothing to cut or count
            attributes, dropped = bounded(event.attributes, self._event_count, self._event_length)
            payload += self._event_attributes.encode(attributes)
            if dropped:
                payload += _EVENT_DROPPED + _varint(dropped)
        return _SPAN_EVENTS + _len(len(payload)) + payload

    def _trace_field(self, trace_id: str) -> bytes:
        """A trace id's field: it repeats on every span of a session."""
        return _remember(self._traces, trace_id, _TRACE_ID + _id(trace_id, 16), 4096)

    def _parent_field(self, parent_id: str) -> bytes:
        """A parent id's field: the root's and each turn's repeat."""
        return _remember(self._parents, parent_id, _PARENT + _id(parent_id, 8), 4096)

    def span(self, trace: TraceRef, record: FinishedSpan) -> tuple[str, bytes]:
        """(trace id, the span as a ``ScopeSpans.spans`` field)."""
        trace_id = record.trace_id or trace.trace_id
        span_id, parent_id, name = record.span_id, record.parent_id, record.name
        out = [self._traces.get(trace_id) or self._trace_field(trace_id),
               _SPAN_ID + (bytes.fromhex(span_id) if len(span_id) == 16 else _id(span_id, 8)),
               b"" if parent_id is None else self._parents.get(parent_id) or self._parent_field(parent_id),
               self._names.get(name) or self._name(name), _KIND[record.kind]]
        start, end = record.start_ns, record.end_ns
        if start and end:
            out.append(_pack_times(0x39, start, 0x41, end))
        else:
            out.append((_SPAN_START + _pack_q(start) if start else b"") + (_SPAN_END + _pack_q(end) if end else b""))
        attributes, count, length = record.attributes, self._span_count, self._span_length
        if length is None and (count is None or len(attributes) <= count):
            out.append(self._span_attributes.encode(attributes))
        else:
            attributes, dropped = bounded(attributes, count, length)
            out.append(self._span_attributes.encode(attributes))
            if dropped:
                out += (_SPAN_DROPPED, _varint(dropped))
        if record.events:
            events = record.events if self._max_events is None else record.events[:self._max_events]
            names = self._event_names
            for event in events:
                if not event.attributes and event.time_ns:  # the usual event, a mark in time: as _event writes it
                    head, name_field = names.get(event.name) or self._event_name(event.name)
                    out += (head, _pack_q(event.time_ns), name_field)
                else:
                    out.append(self._event(event))
        for link_trace, link_span in record.links:
            out.append(_field(_T["span.links"], _T["link.trace_id"] + b"\x10" + _id(link_trace, 16)
                              + _T["link.span_id"] + b"\x08" + _id(link_span, 8) + _LINK_FLAGS))
        # The root's parent is the caller's span (remote); every other parent is ours.
        remote = parent_id is not None and span_id == trace.root_span_id
        if record.error is None:
            out.append(_UNSET_REMOTE if remote else _UNSET_LOCAL)
        else:
            message = _field(_T["status.message"], record.error.encode()) if record.error else b""
            out += (_field(_T["span.status"], message + _ERROR_CODE), _FLAGS_REMOTE if remote else _FLAGS_LOCAL)
        payload = b"".join(out)
        n = len(payload)
        if n < 0x80:
            return trace_id, _SCOPE_SPAN + _SMALL[n] + payload
        if n < 0x4000:
            return trace_id, _SCOPE_SPAN + bytes((n & 0x7F | 0x80, n >> 7)) + payload
        return trace_id, _SCOPE_SPAN + _varint(n) + payload
