"""Finished span records → OTLP bytes for the gateway's own pipeline, SDK spans for any other processor.

A voice span is finished data by the time it leaves the state machine: its
ids were fixed when it opened (the root's at session start, so the client
could be told), its times come from the client's timeline, and the sampling
decision was taken once, at the session's start, so that a session is kept
whole or not at all. So the emitter builds the SDK's finished-span type
directly, without the live-span machinery (context, sampler, id generator) a
Tracer would run per span.

Most of the gateway's consumers want OTLP protobuf, not SDK objects: its
OTLP/HTTP export queues, the viewer's buffer, the spool. They say so
(``takes_encoded``) and get the records encoded once per emission, straight
from the records (``gateway.delivery.otlp_records``), byte for byte what the
stock encoder writes for the SDK span. Only other processors (the queues of
Langfuse, console or third-party exporters, an SDK processor in a test) get
``ReadableSpan``s through ``on_end``, built only when such a processor is
there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, SpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from opentelemetry.util.types import Attributes

from gateway import __version__
from gateway.delivery.otlp_records import EncodedSpans, RecordEncoder
from gateway.sessions.state import Attrs, FinishedSpan, TraceRef

_KINDS = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT}
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_OK = Status(StatusCode.UNSET)


def _count_limit(limit: int | None) -> int | None:
    return None if limit is None or limit == SpanLimits.UNSET else limit


def _bounded(attributes: Attrs, count: int | None, length: int | None) -> Attributes:
    """The attributes as the SDK would keep them under its limits; the very dict while they are within."""
    count, length = _count_limit(count), _count_limit(length)
    if (count is None or len(attributes) <= count) and length is None:
        return attributes
    return BoundedAttributes(count, attributes, immutable=True, max_value_len=length)


class SpanEmitter:
    def __init__(self, sampler: Sampler, resource: Resource, processors: Sequence[SpanProcessor],
                 limits: SpanLimits | None = None) -> None:
        self.sampler = sampler
        self.resource = resource
        self.processors = list(processors)
        self.scope = InstrumentationScope("voice-trace-gateway", __version__)
        # The provider's span limits (OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT and friends, or the config file's
        # attribute_limits), applied as a Tracer would; the check costs nothing while spans are within them.
        self.limits = limits or SpanLimits()
        self.encoder = RecordEncoder(resource, self.scope, self.limits)

    def decide(self, trace_id: str, parent: SpanContext | None, attributes: Attributes = None) -> bool:
        """The configured sampler's verdict for a new session (parent-based samplers see the caller's span)."""
        context = set_span_in_context(NonRecordingSpan(parent)) if parent is not None else Context()
        result = self.sampler.should_sample(context, int(trace_id, 16), "voice_session", SpanKind.INTERNAL,
                                            attributes)
        return result.decision == Decision.RECORD_AND_SAMPLE

    def build(self, trace: TraceRef, record: FinishedSpan) -> ReadableSpan:
        trace_id = int(record.trace_id or trace.trace_id, 16)
        parent = None
        if record.parent_id is not None:
            # The root's parent is the caller's span (remote); every other parent is ours.
            remote = record.span_id == trace.root_span_id
            parent = SpanContext(trace_id, int(record.parent_id, 16), remote, _SAMPLED)
        limits = self.limits
        links = [Link(SpanContext(int(t, 16), int(s, 16), False, _SAMPLED)) for t, s in record.links]
        events = [Event(e.name, _bounded(e.attributes, limits.max_event_attributes, limits.max_attribute_length),
                        e.time_ns)
                  for e in record.events[:_count_limit(limits.max_events)]]
        return ReadableSpan(
            name=record.name,
            context=SpanContext(trace_id, int(record.span_id, 16), False, _SAMPLED),
            parent=parent,
            resource=self.resource,
            attributes=_bounded(record.attributes, limits.max_span_attributes, limits.max_span_attribute_length),
            events=events,
            links=links,
            kind=_KINDS[record.kind],
            status=Status(StatusCode.ERROR, record.error) if record.error is not None else _OK,
            start_time=record.start_ns,
            end_time=record.end_ns,
            instrumentation_scope=self.scope,
        )

    def encode(self, trace: TraceRef, records: Sequence[FinishedSpan]) -> EncodedSpans:
        return self.encoder.encode(trace, records)

    def emit(self, trace: TraceRef, spans: Iterable[FinishedSpan]) -> int:
        if not trace.sampled:
            return 0
        records = spans if isinstance(spans, list | tuple) else list(spans)
        if not records:
            return 0
        encoded: EncodedSpans | None = None
        built: list[ReadableSpan] | None = None
        for processor in self.processors:
            take = getattr(processor, "on_encoded", None) if getattr(processor, "takes_encoded", False) else None
            if take is not None:
                if encoded is None:
                    encoded = self.encoder.encode(trace, records)
                take(encoded)
            else:
                if built is None:
                    built = [self.build(trace, r) for r in records]
                for span in built:
                    processor.on_end(span)
        return len(records)
