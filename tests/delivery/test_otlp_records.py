"""Span records encode straight to the bytes the stock SDK conversion writes for the equivalent SDK span."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from gateway.sessions.state import FinishedSpan, SpanEvent, TraceRef
from gateway.spans import SpanEmitter

hex8 = st.integers(1, 2**64 - 1).map(lambda n: f"{n:016x}")
hex16 = st.integers(1, 2**128 - 1).map(lambda n: f"{n:032x}")
text = st.text(max_size=12)
values = (text | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
          | st.lists(text, max_size=3))
attributes = st.dictionaries(st.text(max_size=8), values, max_size=7)
limit = st.sampled_from([SpanLimits.UNSET, 0, 1, 2, 3, 5, 200])
resources = st.sampled_from([Resource.create({"service.name": "vtg", "deployment.environment.name": "test"}),
                             Resource({"k": 1}, "https://schema"), Resource({})])


@st.composite
def limits(draw: Any) -> SpanLimits:
    return SpanLimits(max_span_attributes=draw(limit), max_span_attribute_length=draw(limit),
                      max_event_attributes=draw(limit), max_attribute_length=draw(limit),
                      max_events=draw(limit), max_links=draw(limit), max_attributes=draw(limit))


@st.composite
def sessions(draw: Any) -> tuple[TraceRef, list[FinishedSpan]]:
    trace = TraceRef(draw(hex16), draw(hex8), draw(st.none() | hex8), True)
    records = []
    for _ in range(draw(st.integers(0, 5))):
        is_root = draw(st.booleans())
        span_id = trace.root_span_id if is_root else draw(hex8)
        parent = trace.parent_span_id if is_root else draw(st.none() | hex8)
        start = draw(st.integers(0, 2**62))
        records.append(FinishedSpan(
            name=draw(text), span_id=span_id, parent_id=parent, start_ns=start,
            end_ns=start + draw(st.integers(0, 10**12)), kind=draw(st.sampled_from(["internal", "client"])),
            attributes=draw(attributes),
            events=tuple(SpanEvent(draw(text), draw(st.integers(0, 2**62)), draw(attributes))
                         for _ in range(draw(st.integers(0, 3)))),
            error=draw(st.none() | text), trace_id=draw(st.none() | hex16),
            links=tuple((draw(hex16), draw(hex8)) for _ in range(draw(st.integers(0, 2)))),
        ))
    return trace, records


def stock(emitter: SpanEmitter, trace: TraceRef, records: list[FinishedSpan]) -> bytes:
    return bytes(encode_spans([emitter.build(trace, r) for r in records]).SerializeToString())


@settings(max_examples=400, deadline=None)
@given(sessions(), limits(), resources)
def test_records_encode_to_the_stock_bytes_of_the_sdk_spans_the_emitter_builds(
    session: tuple[TraceRef, list[FinishedSpan]], span_limits: SpanLimits, resource: Resource
) -> None:
    trace, records = session
    emitter = SpanEmitter(ALWAYS_ON, resource, [], span_limits)
    expected = stock(emitter, trace, records)
    ours = emitter.encoder.request(trace, records)
    assert ExportTraceServiceRequest.FromString(ours) == ExportTraceServiceRequest.FromString(expected)
    assert ours == expected
    # Twice: the encoded attribute pairs are cached, and the cache changes nothing.
    assert emitter.encoder.request(trace, records) == expected


def test_limits_cut_attributes_count_the_drops_and_flag_the_remote_parent() -> None:
    limits = SpanLimits(max_span_attributes=2, max_span_attribute_length=3, max_event_attributes=1,
                        max_attribute_length=2, max_events=1)
    emitter = SpanEmitter(ALWAYS_ON, Resource.create({}), [], limits)
    trace = TraceRef("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "00f067aa0ba902b7", True)
    root = FinishedSpan("voice_session", trace.root_span_id, trace.parent_span_id, 1, 9, "internal",
                        {"a": "abcdef", "b": ["xyzw", "q"], "c": 7},
                        (SpanEvent("exception", 2, {"x": "long", "y": "kept"}), SpanEvent("cut", 3, {})),
                        error="it broke", links=(("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b8"),))
    child = FinishedSpan("user_speech", "53995c3f42cd8ad8", trace.root_span_id, 2, 3, "client", {}, ())
    data = emitter.encoder.request(trace, [root, child])
    assert data == stock(emitter, trace, [root, child])
    spans = ExportTraceServiceRequest.FromString(data).resource_spans[0].scope_spans[0].spans
    r, c = spans
    assert [(a.key, a.value.array_value.values[0].string_value if a.value.HasField("array_value")
             else a.value.int_value) for a in r.attributes] == [("b", "xyz"), ("c", 7)]
    assert r.dropped_attributes_count == 1
    assert len(r.events) == 1 and r.events[0].attributes[0].value.string_value == "ke"
    assert r.events[0].dropped_attributes_count == 1
    assert r.status.code == 2 and r.status.message == "it broke"
    assert r.flags == 0x300 and c.flags == 0x100  # the root's parent is the caller's (remote) span
    assert r.links[0].span_id.hex() == "00f067aa0ba902b8" and r.links[0].flags == 0x100
    assert c.kind == 3 and c.parent_span_id.hex() == trace.root_span_id


def test_the_encoders_caches_stay_bounded_and_the_bytes_right_under_values_seen_once() -> None:
    """Clients choose attribute keys and values: every span a new key and new values must neither grow the caches
    past their bound nor change a byte (a float's per-key prefix, strings by key then value, small ints)."""
    emitter = SpanEmitter(ALWAYS_ON, Resource.create({}), [])
    trace = TraceRef("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", None, True)
    encoder = emitter.encoder
    for n in range(6000):
        record = FinishedSpan(f"span {n}", f"{n + 1:016x}", trace.root_span_id, 1, 2, "internal",
                              {f"key.{n}": f"value {n}", "session.id": f"s-{n}", "ms": n / 7, "count": n,
                               "flag": n % 2 == 0, "tags": [f"t{n}"], f"flag.{n}": True, f"at.{n}": 2**60 + n,
                               "at": 2**60 + n, "mixed": [f"m{n}", n], "tuple": (f"u{n}",)},
                              (SpanEvent(f"event {n}", 3, {f"e.{n}": n}),))
        if n % 997 == 0:
            assert encoder.request(trace, [record]) == stock(emitter, trace, [record])
        else:
            encoder.span(trace, record)
    for attributes in (encoder._span_attributes, encoder._event_attributes):
        limit = attributes._limit
        by_key = (attributes._strings, attributes._ints, attributes._lists, attributes._bools)
        assert attributes._by_key_count <= limit and sum(len(v) for c in by_key for v in c.values()) <= limit
        assert sum(map(len, by_key)) <= limit  # no key without a value
        assert len(attributes._floats) <= limit and len(attributes._keys) <= limit
        assert len(attributes._int_heads) <= limit
    assert len(encoder._names) <= 1024 and len(encoder._event_names) <= 1024
