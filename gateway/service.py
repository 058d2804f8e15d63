"""Sessions as the API sees them: start, ingest, end, sweep, shut down.

The one-way flow lives here: validated events go into the store's atomic
``mutate`` (the state machine runs inside it), the spans that ended come out,
and only after the mutation committed are they handed to the emitter. Nothing
here waits on a backend. On the process-local store a large batch is admitted
first (seen ids, limits: all the answer needs) and applied after the answer,
through the backlog (gateway/sessions/backlog.py), in the order admitted.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Any, cast

from opentelemetry.propagators.textmap import DefaultGetter
from opentelemetry.trace import INVALID_SPAN_CONTEXT, SpanContext, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway import events as ev
from gateway import semconv as sc
from gateway.analytics.pricing import Pricer
from gateway.analytics.voice_metrics import VoiceMetrics, session_labels
from gateway.delivery.outbox import SpanEncoder, publish
from gateway.errors import Conflict, FieldError, NotFound, Overloaded, RequestError, ValidationFailed
from gateway.frozen import frozen
from gateway.metrics import GatewayMetrics
from gateway.recordings import service as recordings
from gateway.recordings.trace import annotate as annotate_recording
from gateway.redact import Redactor
from gateway.security import ApiKeys, TokenSigner
from gateway.sessions.backlog import Backlog, Work
from gateway.sessions.clock import event_time_ns, skew_ns
from gateway.sessions.machine import MachineOptions, SessionMachine
from gateway.sessions.outbox import OutboxEntry
from gateway.sessions.state import (
    FinishedSpan,
    SessionState,
    TraceRef,
    new_span_id,
    new_trace_id,
    shared_tags,
)
from gateway.sessions.store import MemoryStore, SessionStore
from gateway.sessions.summary import summarize
from gateway.settings import TEXT_CONTENT_KINDS, GatewaySettings
from gateway.spans import SpanEmitter

log = logging.getLogger("gateway.sessions")
_NO_LABELS: dict[str, str] = {}  # an Emission without spans: its labels are never read
# Batches this large or larger are applied after their answer (gateway.sessions.backlog); a smaller one costs
# less than the queueing would save.
APPLY_LATER_MIN_EVENTS = 8
_seq = attrgetter("seq")
_propagator = TraceContextTextMapPropagator()


_default_pricer: Pricer | None = None


def pricer_for(overrides: Mapping[str, Mapping[str, float]]) -> Pricer:
    """Loading the price tables takes a fifth of a second: one Pricer per process unless overrides differ."""
    global _default_pricer
    if overrides:
        return Pricer(overrides)
    if _default_pricer is None:
        _default_pricer = Pricer()
    return _default_pricer


def parse_traceparent(header: str | None) -> SpanContext | None:
    if not header:
        return None
    ctx = get_current_span(_propagator.extract({"traceparent": header}, getter=DefaultGetter())).get_span_context()
    return None if ctx == INVALID_SPAN_CONTEXT or not ctx.is_valid else ctx


@frozen
class Emission:
    """What one committed mutation hands on: spans that finished (for metrics) and spans to export."""

    trace: TraceRef
    labels: dict[str, str]
    finished: list[FinishedSpan]
    export: list[FinishedSpan]
    # ``export`` as committed to a store's outbox (OTLP), when it was: reused instead of encoding it again.
    encoded: list[OutboxEntry] = field(default_factory=list)


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    limited: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    # Counts by type; a defaultdict costs a quarter of a Counter to make, once per request.
    accepted_types: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    # Set when the accepted events are applied after the answer (gateway.sessions.backlog): done once they are.
    applied: asyncio.Future[None] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}

    def restart(self, invalid: list[dict[str, Any]]) -> None:
        """A store may run a mutation again (a lost compare-and-set): each attempt starts from validation."""
        self.accepted, self.duplicates, self.limited, self.rejected = 0, 0, 0, list(invalid)
        self.accepted_types.clear()


@dataclass(slots=True)
class _Queued:
    """A session's batches in the backlog, not yet applied."""

    last: asyncio.Future[None] | None = None
    batches: int = 0
    calls: int = 0  # tool calls among them


class SessionService:
    def __init__(
        self,
        settings: GatewaySettings,
        store: SessionStore,
        emitter: SpanEmitter,
        metrics: GatewayMetrics,
        clock: Callable[[], int] = time.time_ns,
        voice_metrics: VoiceMetrics | None = None,
    ) -> None:
        self.voice_metrics = voice_metrics
        self.settings = settings
        self.store = store
        # Only a process-local store can apply after the answer: a durable or shared one commits before it.
        self._local = store if type(store) is MemoryStore else None
        self.backlog = Backlog()
        self._ending: set[str] = set()  # sessions whose end waits for the backlog: their events get a 409 now
        self._queued: dict[str, _Queued] = {}
        self.emitter = emitter
        self.outbox = SpanEncoder(emitter)
        self.metrics = metrics
        self.clock = clock
        self.signer = TokenSigner(settings.signing_key, settings.effective_token_ttl_s, settings.previous_signing_keys)
        self.api_keys = ApiKeys(settings.api_keys)
        self.recording_links = recordings.links_for(settings)
        self.machine = SessionMachine(MachineOptions(
            transcripts=settings.captures("transcripts"),
            tool_arguments=settings.captures("tool_arguments"),
            tool_results=settings.captures("tool_results"),
            redactor=Redactor(settings.redact, settings.redact_patterns),
            max_attribute_length=settings.max_attribute_length,
            per_turn_traces=settings.trace_mode == "per_turn",
            pricer=pricer_for(settings.price_overrides),
        ))

    # -- start ----------------------------------------------------------------------------------------

    async def start(self, req: ev.SessionCreate, traceparent: str | None) -> dict[str, Any]:
        active = await self.store.count_active()
        if active >= self.settings.max_open_sessions:
            self.metrics.events_rejected.labels("too_many_sessions").inc()
            raise Overloaded(f"the gateway holds {active} open sessions, its limit; retry shortly",
                             retry_after_s=max(1.0, self.settings.sweep_interval_s))
        now = self.clock()
        parent = parse_traceparent(traceparent)
        trace_id = f"{parent.trace_id:032x}" if parent else new_trace_id()
        root_span_id = new_span_id()
        sampled = self.emitter.decide(trace_id, parent, {sc.SESSION_ID: req.session_id or ""})
        trace = TraceRef(trace_id, root_span_id, f"{parent.span_id:016x}" if parent else None, sampled)
        state = SessionState(
            session_id=req.session_id or str(uuid.uuid4()),
            trace=trace,
            start_ns=now,
            last_activity_ns=now,
            last_event_ns=now,
            user_id=req.user_id,
            # Interned: these repeat across sessions, and thousands of open sessions need not each hold a copy.
            provider=_shared(req.provider),
            model=_shared(req.model),
            agent=_shared(req.agent),
            tags=shared_tags(req.tags),
            attributes=dict(req.attributes),
            client_sdk=_shared(req.client.sdk) if req.client else None,
            user_agent=_shared(req.client.user_agent) if req.client else None,
            recording=recordings.new_state(self.settings, req.record_audio),
        )
        if not await self.store.create(state):
            raise Conflict(f"session {state.session_id!r} already exists",
                           [FieldError("session_id", "already in use")])
        self.metrics.sessions_started.inc()
        self.metrics.sessions_active.set(active + 1)
        if not sampled:
            self.metrics.sessions_unsampled.inc()
        token = self.signer.issue(state.session_id, now / 1e9)
        flags = "01" if sampled else "00"
        return {
            "session_id": state.session_id,
            "trace_id": trace_id,
            "root_span_id": root_span_id,
            "traceparent": f"00-{trace_id}-{root_span_id}-{flags}",
            "sampled": sampled,
            "token": token.token,
            "expires_at": token.expires_at,
            "idle_timeout_s": self.settings.session_idle_timeout_s,
            # What the session keeps: a client sends no words, arguments or results the gateway would drop.
            "capture": [kind for kind in TEXT_CONTENT_KINDS if self.settings.captures(kind)],
            "recording": recordings.session_answer(self.settings, req.record_audio),
        }

    # -- ingest ---------------------------------------------------------------------------------------

    def _validate(
        self, raw_events: Sequence[object], prefix: str, result: IngestResult
    ) -> list[tuple[int, ev.Event]]:
        # isinstance() on a msgspec Struct class costs some 0.1 µs here: the event classes are looked up by type.
        if len(raw_events) == 1 and type(raw_events[0]) in ev.EVENT_CLASS_SET:
            return [(0, cast(ev.Event, raw_events[0]))]  # one event, decoded already: nothing to check or order
        if ev.EVENT_CLASS_SET.issuperset(map(type, raw_events)):  # a batch decoded whole: all valid
            valid = list(enumerate(cast(Sequence[ev.Event], raw_events)))
            seqs = list(map(_seq, raw_events))
        else:
            valid = []
            for index, raw in enumerate(raw_events):
                if isinstance(raw, ev.BaseEvent):  # decoded with its batch already
                    valid.append((index, cast(ev.Event, raw)))
                    continue
                try:
                    valid.append((index, ev.parse_event(raw, f"{prefix}[{index}]" if prefix else "")))
                except RequestError as exc:
                    result.rejected.append({"index": index, "errors": [e.to_json() for e in exc.errors]})
                    self.metrics.events_rejected.labels("invalid_event").inc()
            seqs = [e.seq for _, e in valid]
        # Client order: by seq when every event has one, else as sent. Clients send in order: a batch whose seqs
        # already run up is left as it is (the sort, stable on ties, would not move anything).
        if len(valid) > 1 and None not in seqs and seqs != sorted(seqs):
            valid.sort(key=lambda item: (item[1].seq or 0, item[0]))
        return valid

    async def ingest(
        self, session_id: str, raw_events: Sequence[object], sent_at_ms: float | None, prefix: str = "events",
        whole: bool = False, later: bool = False,
    ) -> IngestResult:
        """Apply the valid events and list the invalid ones; ``whole``: refuse all of them if one is invalid.

        ``later``: the caller answers before the events are applied, when that is possible (a batch of
        ``APPLY_LATER_MIN_EVENTS`` or more, on the process-local store): ``result.applied`` is then set, and the
        caller awaits it once it has answered. The answer is the same either way."""
        result = IngestResult()
        events = self._validate(raw_events, prefix, result)
        if whole and result.rejected:
            raise ValidationFailed("the events could not be applied",
                                   [FieldError(e["path"], e["message"]) for r in result.rejected for e in r["errors"]])
        if self._ending and session_id in self._ending:
            raise Conflict(f"session {session_id!r} has ended; events are no longer accepted")
        local = self._local
        if later and local is not None and len(events) >= APPLY_LATER_MIN_EVENTS:
            state = local.peek(session_id)
            if state is None:
                raise NotFound(f"no session {session_id!r}")
            if self._may_queue(state, events):
                await self._queue(state, events, sent_at_ms, result)
                self._count(result)
                return result
        if self._queued and session_id in self._queued:
            await self._caught_up(session_id)  # its earlier batches first
        now = self.clock()
        out: list[FinishedSpan] = []

        invalid = list(result.rejected)

        def apply(state: SessionState) -> Emission:
            result.restart(invalid)
            out.clear()
            self._apply(state, events, sent_at_ms, now, result, out)
            return self._hold_or_emit(state, out)

        emission = await self.store.mutate(session_id, apply, self._outbox_entry)
        if emission is None:
            raise NotFound(f"no session {session_id!r}")
        self._emit(emission)
        self._count(result)
        return result

    def _may_queue(self, state: SessionState, events: list[tuple[int, ev.Event]]) -> bool:
        """Whether the answer can be settled before the events are applied: the one limit that depends on what
        they do, open tool calls, cannot be reached even if every call accepted so far stays open."""
        calls = sum(1 for _, event in events if event.type == "tool.call")
        if not calls:
            return True
        queued = self._queued.get(state.session_id)
        pending = queued.calls if queued is not None else 0
        return len(state.tools) + pending + calls <= self.settings.max_open_tools_per_session

    async def _queue(self, state: SessionState, events: list[tuple[int, ev.Event]], sent_at_ms: float | None,
                     result: IngestResult) -> None:
        now = self.clock()
        skew = self._admit(state, sent_at_ms, now)
        accepted = list(self._admitted(state, events, result))
        if not accepted:
            return
        calls = sum(1 for event in accepted if event.type == "tool.call")
        queued = self._queued.get(state.session_id)
        if queued is None:
            queued = self._queued[state.session_id] = _Queued()
        queued.batches += 1
        queued.calls += calls
        done = self.backlog.submit(self._applying(state, accepted, now, skew, queued, calls), len(accepted))
        queued.last = done
        if self.backlog.full:  # behind on its work: this answer waits for it
            await done
        else:
            result.applied = done

    def _applying(self, state: SessionState, events: list[ev.Event], now: int, skew: int, queued: _Queued,
                  calls: int) -> Work:
        """The state machine over accepted events, one per step, then their spans handed on."""
        out: list[FinishedSpan] = []
        apply = self.machine.apply_into
        try:
            for event in events:
                apply(state, event, event_time_ns(state, event, now, skew), now, out)
                yield
            self._emit(self._hold_or_emit(state, out))
        finally:
            queued.batches -= 1
            queued.calls -= calls
            if not queued.batches:
                del self._queued[state.session_id]

    async def _caught_up(self, session_id: str) -> None:
        """Until the session's batches in the backlog have been applied."""
        queued = self._queued.get(session_id)
        while queued is not None and queued.last is not None:
            await self.backlog.wait(queued.last)
            queued = self._queued.get(session_id)

    async def settle(self) -> None:
        """Until every batch accepted so far has been applied: before reading sessions in bulk."""
        await self.backlog.settle()

    def _admit(self, state: SessionState, sent_at_ms: float | None, now: int) -> int:
        """A request reached the session: its activity and clock offset; the skew for its events' times."""
        if state.ended:
            raise Conflict(f"session {state.session_id!r} has ended; events are no longer accepted")
        state.last_activity_ns = now
        if sent_at_ms is not None:
            # receive minus send is clock offset plus network latency: the smallest seen is the best estimate.
            offset = now - int(sent_at_ms * 1_000_000)
            state.skew_ns = offset if state.skew_ns is None else min(state.skew_ns, offset)
        # Looked up once per request, not per event: the skew changes only above, per batch.
        return skew_ns(state)

    def _admitted(self, state: SessionState, events: list[tuple[int, ev.Event]],
                  result: IngestResult) -> Iterator[ev.Event]:
        """The events the session takes, each marked seen and counted as it is taken: not seen before, within
        its limits. Taken one at a time, so a limit sees the events taken before it applied."""
        limits = self.settings
        max_events, max_tools = limits.max_events_per_session, limits.max_open_tools_per_session
        accepted_types = result.accepted_types
        has_seen, remember = state.has_seen, state.remember
        accepted = duplicates = 0
        for index, event in events:
            event_id = event.id
            if has_seen(event_id):
                duplicates += 1
                continue
            count, kind = state.event_count, event.type
            if count >= max_events or (kind == "tool.call" and len(state.tools) >= max_tools):
                refusal = (f"the session reached its limit of {max_events} events" if count >= max_events
                           else f"the session has {len(state.tools)} open tool calls, its limit")
                result.rejected.append({"index": index, "errors": [{"path": "", "message": refusal}]})
                result.limited += 1
                continue
            remember(event_id)
            state.event_count = count + 1
            accepted += 1
            accepted_types[kind] += 1
            yield event
        result.accepted += accepted
        result.duplicates += duplicates

    def _apply(self, state: SessionState, events: list[tuple[int, ev.Event]], sent_at_ms: float | None, now: int,
               result: IngestResult, out: list[FinishedSpan]) -> None:
        skew = self._admit(state, sent_at_ms, now)
        apply = self.machine.apply_into
        for event in self._admitted(state, events, result):
            apply(state, event, event_time_ns(state, event, now, skew), now, out)

    def _hold_or_emit(self, state: SessionState, spans: list[FinishedSpan], ended: bool = False) -> Emission:
        """What leaves for the exporters now. An unsampled session under the keep-errored rule holds its
        spans in its state until its end decides: sent whole if it had an error, dropped otherwise."""
        trace = state.trace
        if not spans and not ended:  # most requests finish no span
            return Emission(trace, _NO_LABELS, [], [])
        annotate_recording(state, spans, self.recording_links)
        labels = session_labels(state.provider, state.model, state.agent)
        finished = list(spans)  # one copy: neither list is changed once handed on
        if trace.sampled or not self.settings.keep_errored_sessions:
            return Emission(trace, labels, finished, finished)
        if not ended:
            if state.held_spans is None:
                state.held_spans = []
            state.held_spans.extend(spans)
            return Emission(trace, labels, finished, [])
        held, state.held_spans = [*(state.held_spans or ()), *spans], None
        if state.error_count or state.tool_error_count or state.end_reason == sc.END_ERROR:
            self.metrics.sessions_kept_for_error.inc()
            return Emission(replace(trace, sampled=True), labels, finished, held)
        return Emission(trace, labels, finished, [])

    def _outbox_entry(self, emission: Emission) -> OutboxEntry | None:
        """The spans a mutation finished, encoded for a store's outbox (committed with the state)."""
        entry = self.outbox.entry(emission.trace, emission.export)
        # Reused for the viewer's buffer, which files spans by trace: only when they are all of the session's.
        one_trace = all(r.trace_id in (None, emission.trace.trace_id) for r in emission.export)
        emission.encoded[:] = [entry] if entry is not None and one_trace else []
        return entry

    def _count(self, result: IngestResult) -> None:
        if result.duplicates:
            self.metrics.events_duplicate.inc(result.duplicates)
        if result.limited:
            self.metrics.events_rejected.labels("session_limit").inc(result.limited)
        if result.accepted_types:
            self.metrics.add_accepted(result.accepted_types)

    def _emit(self, emission: Emission) -> None:
        # Metrics count every session, traced or not.
        if self.voice_metrics is not None and emission.finished:
            self.voice_metrics.observe(emission.finished, emission.labels)
        if emission.encoded:  # the exporters read the outbox; the viewer's buffer takes the same bytes
            self.metrics.add_spans_emitted(publish(self.emitter, emission.trace, emission.encoded[0]))
        elif emission.export:
            self.metrics.add_spans_emitted(self.emitter.emit(emission.trace, emission.export))

    # -- end ------------------------------------------------------------------------------------------

    async def end(
        self,
        session_id: str,
        reason: str,
        ts: float | None = None,
        raw_events: Sequence[object] = (),
        sent_at_ms: float | None = None,
        root_attrs: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], IngestResult]:
        """End a session (its final events first); ending an ended session returns its summary again."""
        if session_id in self._queued:
            # The end comes after the batches already accepted, and before any that arrive while they are applied.
            self._ending.add(session_id)
            try:
                await self._caught_up(session_id)
            finally:
                self._ending.discard(session_id)
        result = IngestResult()
        events = self._validate(raw_events, "events", result)
        now = self.clock()
        out: list[FinishedSpan] = []
        ended_now = False
        invalid = list(result.rejected)

        def apply(state: SessionState) -> tuple[Emission, dict[str, Any]]:
            nonlocal ended_now
            result.restart(invalid)
            out.clear()
            ended_now = False
            if state.ended:
                assert state.summary is not None
                return Emission(state.trace, {}, [], []), state.summary
            if events:
                self._apply(state, events, sent_at_ms, now, result, out)
            t = now if ts is None else min(int(ts * 1_000_000) + skew_ns(state), now)
            out.extend(self.machine.end(state, reason, t, **(root_attrs or {})))
            self._forget(state, now)
            ended_now = True
            assert state.summary is not None
            return self._hold_or_emit(state, out, ended=True), state.summary

        found = await self.store.mutate(session_id, apply, lambda done: self._outbox_entry(done[0]))
        if found is None:
            raise NotFound(f"no session {session_id!r}")
        emission, summary = found
        self._emit(emission)
        self._count(result)
        if ended_now:
            self._ended(summary, reason)
            # Read back, not decremented: on a shared store other replicas open and end sessions too.
            self.metrics.sessions_active.set(await self.store.count_active())
        return summary, result

    def _forget(self, state: SessionState, now: int) -> None:
        """An ended session keeps its summary only: drop what made it big."""
        state.ended_at_ns = now
        state.forget_seen()
        state.root_events = ()
        state.transcript = []
        state.tools = {}

    def _ended(self, summary: dict[str, Any], reason: str) -> None:
        self.metrics.sessions_ended.labels(sc.metric_end_reason(reason)).inc()
        log.info(
            "session %s ended (%s): %s turns, %s interruptions, %s tool calls, %s errors, %.1f s, "
            "tokens in/out %s/%s, trace %s",
            summary["session_id"], reason, summary["turns"], summary["interruptions"], summary["tool_calls"],
            summary["errors"], float(summary["duration_ms"]) / 1000, summary["usage"]["input_tokens"],
            summary["usage"]["output_tokens"], summary["trace_id"],
        )

    # -- read -----------------------------------------------------------------------------------------

    async def describe(self, session_id: str) -> dict[str, Any]:
        await self._caught_up(session_id)
        state = await self.store.get(session_id)
        if state is None:
            raise NotFound(f"no session {session_id!r}")
        return {
            "session_id": state.session_id,
            "trace_id": state.trace.trace_id,
            "root_span_id": state.trace.root_span_id,
            "sampled": state.trace.sampled,
            "ended": state.ended,
            "user_id": state.user_id,
            "provider": state.provider,
            "model": state.model,
            "agent": state.agent,
            "tags": state.tags,
            "idle_s": round((self.clock() - state.last_activity_ns) / 1e9, 3),
            "open_turn": state.turn.number if state.turn else None,
            "open_spans": state.open_span_names(),
            "summary": state.summary if state.summary is not None else summarize(state),
        }

    # -- sweep and shutdown ---------------------------------------------------------------------------

    async def sweep(self) -> int:
        """End sessions idle past the timeout or older than the maximum duration; forget old summaries."""
        await self.settle()  # a session's last event time is read below
        now = self.clock()
        s = self.settings
        ids = await self.store.expired(
            now - int(s.session_idle_timeout_s * 1e9),
            now - int(s.session_max_duration_s * 1e9),
            now - int(s.ended_retention_s * 1e9),
        )
        self.metrics.sessions_active.set(await self.store.count_active())
        ended = 0
        for session_id in ids:
            state = await self.store.get(session_id)
            if state is None:
                continue
            if state.ended:
                await self.store.remove(session_id)
                continue
            idle = state.last_activity_ns < now - int(s.session_idle_timeout_s * 1e9)
            kind = "idle" if idle else "max_duration"
            # An idle session ends where its last event was, not when the sweeper noticed. end() takes client
            # time (it adds the skew), and the last event's time is the gateway's already.
            at = (state.last_event_ns - skew_ns(state)) / 1e6 if idle else None
            try:
                await self.end(session_id, sc.END_TIMEOUT, ts=at, root_attrs={sc.VOICE_SESSION_TIMEOUT_KIND: kind})
                ended += 1
            except RequestError:
                continue
        return ended

    async def end_all(self, reason: str) -> int:
        await self.settle()
        count = 0
        for session_id in await self.store.ids():
            state = await self.store.get(session_id)
            if state is not None and not state.ended:
                await self.end(session_id, reason)
                count += 1
        return count


def _shared(text: str | None) -> str | None:
    return None if text is None else sys.intern(text)


def checked_sent_at(value: object) -> float | None:
    """A batch's ``sent_at``: ms since the epoch, within what a clock can read."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= ev.MAX_EPOCH_MS:
        message = f"must be a number of ms since the epoch, 0 to {ev.MAX_EPOCH_MS}"
        raise ValidationFailed("'sent_at' must be ms since the epoch", [FieldError("sent_at", message)])
    return value


def body_events(body: bytes) -> tuple[Sequence[object], float | None, str]:
    """One event, or ``{"events": [...], "sent_at": ms}``, from the body's bytes; returns (events, sent_at, path
    prefix). The events come decoded when all are valid, else as raw JSON that ``_validate`` decodes one by one,
    so that a bad one costs only itself."""
    events, sent_at, batched = ev.decode_envelope(body)
    if batched:
        return events, checked_sent_at(sent_at), "events"
    return events, None, ""
