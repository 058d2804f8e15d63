"""The direct encoder writes exactly what the stock OTLP encoder writes."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from test_spool import session_spans

from gateway.delivery.otlp_encode import OtlpEncoder

scalars = (st.text(max_size=12) | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
           | st.floats(allow_nan=False))
values = scalars | st.lists(st.text(max_size=5), max_size=3) | st.lists(st.integers(0, 9), max_size=3)
attributes = st.dictionaries(st.text(min_size=1, max_size=10), values, max_size=6)
ids = st.integers(min_value=1, max_value=2**64 - 1)
resources = st.sampled_from([Resource.create({"service.name": "a"}), Resource({"k": 1, "x": "y"}, "https://s"),
                             Resource({})])
scopes = st.sampled_from([InstrumentationScope("voice-trace-gateway", "0.1.0"),
                          InstrumentationScope("other", None, "https://schema"), None])


@st.composite
def spans(draw: Any) -> ReadableSpan:
    trace_id = draw(st.integers(min_value=1, max_value=2**128 - 1))
    state = draw(st.sampled_from([None, TraceState([("vendor", "v1")])]))
    parent = draw(st.none() | st.builds(lambda s, r: SpanContext(trace_id, s, r, TraceFlags(1)), ids, st.booleans()))
    events = [Event(draw(st.text(max_size=8)), draw(attributes), draw(st.integers(0, 2**63))) for _ in
              range(draw(st.integers(0, 3)))]
    links = [Link(SpanContext(draw(st.integers(1, 2**128 - 1)), draw(ids), draw(st.booleans()), TraceFlags(1)),
                  draw(attributes)) for _ in range(draw(st.integers(0, 2)))]
    status = draw(st.sampled_from([Status(StatusCode.UNSET), Status(StatusCode.OK),
                                   Status(StatusCode.ERROR, "it broke"), Status(StatusCode.ERROR)]))
    start = draw(st.integers(0, 2**63))
    return ReadableSpan(
        name=draw(st.text(max_size=20)), context=SpanContext(trace_id, draw(ids), False, TraceFlags(1), state),
        parent=parent, resource=draw(resources), attributes=draw(attributes), events=events, links=links,
        kind=draw(st.sampled_from(list(SpanKind))), status=status, start_time=start,
        end_time=start + draw(st.integers(0, 10**12)), instrumentation_scope=draw(scopes),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(spans(), max_size=6))
def test_any_batch_encodes_to_the_stock_exporters_bytes(batch: list[ReadableSpan]) -> None:
    encoder = OtlpEncoder()
    stock = encode_spans(batch).SerializeToString()
    assert encoder.request(batch) == stock
    # Twice, so the caches are exercised too; and letting go of the GIL midway changes nothing.
    assert encoder.request(batch, yield_every_s=1e-9) == stock


def test_a_gateway_session_encodes_to_the_stock_bytes_and_decodes_equal() -> None:
    batch = session_spans()
    ours = OtlpEncoder().request(batch)
    stock = encode_spans(batch).SerializeToString()
    assert ours == stock
    assert ExportTraceServiceRequest.FromString(ours) == ExportTraceServiceRequest.FromString(stock)
