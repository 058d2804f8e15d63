"""Finished span records → SDK spans, through the gateway's own TracerProvider.

Spans go through the public Tracer API so that everything the SDK applies
(resource, instrumentation scope, span limits, every configured processor)
applies to them. Two things the Tracer does not know are supplied around it:
the ids, fixed when the span opened (the root's at session start, so the
client could be told), and the sampling decision, taken once per session at
its start so that a session is kept whole or not at all.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
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
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from gateway import __version__
from gateway.sessions.state import FinishedSpan, TraceRef

_KINDS = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT}


class _PresetIds(threading.local):
    span_id: int | None = None
    trace_id: int | None = None


class PresetIdGenerator(IdGenerator):
    """Hands out the id the gateway already chose for the span being started; random otherwise."""

    def __init__(self) -> None:
        self.preset = _PresetIds()
        self._random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        value, self.preset.span_id = self.preset.span_id, None
        return value if value is not None else self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        value, self.preset.trace_id = self.preset.trace_id, None
        return value if value is not None else self._random.generate_trace_id()


class SessionSampler(Sampler):
    """The configured sampler decides once per session (``decide``); when the session's spans are
    built later, its decision is replayed instead of asking again."""

    def __init__(self, delegate: Sampler) -> None:
        self.delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        # Spans reach the Tracer only for sessions already decided as sampled.
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)

    def get_description(self) -> str:
        return f"SessionSampler({self.delegate.get_description()})"

    def decide(self, parent: SpanContext | None, trace_id: int, attributes: Attributes) -> bool:
        context = set_span_in_context(NonRecordingSpan(parent)) if parent is not None else Context()
        result = self.delegate.should_sample(context, trace_id, "voice_session", SpanKind.INTERNAL, attributes)
        return result.decision == Decision.RECORD_AND_SAMPLE


class SpanEmitter:
    """Builds SDK spans from finished records; the provider's processors take it from there."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._ids = PresetIdGenerator()
        self.sampler = SessionSampler(provider.sampler)
        # Both are read by get_tracer, so they must be in place before the tracer exists.
        provider.id_generator = self._ids  # type: ignore[assignment]  # the SDK annotates it too narrowly
        provider.sampler = self.sampler
        self._tracer = provider.get_tracer("voice-trace-gateway", __version__)

    def decide(self, trace_id: str, parent: SpanContext | None, attributes: Attributes = None) -> bool:
        return self.sampler.decide(parent, int(trace_id, 16), attributes)

    def emit(self, trace: TraceRef, spans: Iterable[FinishedSpan]) -> int:
        if not trace.sampled:
            return 0
        session_trace_id = int(trace.trace_id, 16)
        count = 0
        for record in spans:
            parent_id = record.parent_id
            trace_id = int(record.trace_id, 16) if record.trace_id else session_trace_id
            if parent_id is None:
                context = Context()
                self._ids.preset.trace_id = trace_id
            else:
                # The root's parent is the caller's span (remote); everything else is ours.
                remote = record.span_id == trace.root_span_id
                parent = SpanContext(trace_id, int(parent_id, 16), remote, TraceFlags(TraceFlags.SAMPLED))
                context = set_span_in_context(NonRecordingSpan(parent))
            self._ids.preset.span_id = int(record.span_id, 16)
            links = [
                Link(SpanContext(int(t, 16), int(sid, 16), False, TraceFlags(TraceFlags.SAMPLED)))
                for t, sid in record.links
            ]
            span = self._tracer.start_span(
                record.name,
                context=context,
                kind=_KINDS[record.kind],
                attributes=record.attributes,
                links=links,
                start_time=record.start_ns,
            )
            for event in record.events:
                span.add_event(event.name, event.attributes, event.time_ns)
            if record.error is not None:
                span.set_status(Status(StatusCode.ERROR, record.error))
            span.end(record.end_ns)
            count += 1
        return count
