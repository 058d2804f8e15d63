"""Session state as plain data.

Open spans are records (ids, name, start, attributes), not SDK spans: state
stays serializable for a durable or shared store, and any replica can end a
span another replica opened. A span becomes an SDK span only when it ends
(``FinishedSpan`` → ``gateway.spans``).

Thousands of sessions sit idle between two events, so what a session holds is kept small: slots
everywhere, containers created on first use (``None`` or an empty tuple until then), attributes that follow
from the session (the model, the operation name) added when a span finishes rather than held while it is
open, names shared between sessions, the seen event ids packed into one string, open span ids kept as ints and
a span's few attributes as one flat tuple (``OpenSpan``), and what few sessions ever set in one side object
(``SessionRare``).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, overload

from gateway.analytics.pricing import Cost
from gateway.analytics.usage import Usage
from gateway.frozen import frozen

NO_USAGE = Usage()  # frozen: one instance serves every session that has used nothing yet

AttrValue = str | bool | int | float | list[str]
Attrs = dict[str, AttrValue]
SpanKindName = Literal["internal", "client"]
SpanAttrs = tuple[Any, ...] | dict[str, Any]  # an open span's: see gateway.sessions.records.TUPLE_PAIRS
SEEN_IDS_IN_A_LIST = 32
_SEP = "\x1f"  # between packed seen ids: an id that contains it goes to the set


class _Empty(dict[Any, Any]):
    """An empty dict shared by every span, event or session that has nothing in it yet: changing it in place
    would change them all, so it refuses to (the machine gives a session a dict of its own for its tools and
    attributes; a span event with attributes is given its own dict)."""

    def _refuse(self, *args: object, **kwargs: object) -> None:
        raise TypeError("a shared empty dict: give the owner a dict of its own before changing it")

    __setitem__ = __delitem__ = update = setdefault = popitem = clear = __ior__ = _refuse  # type: ignore[assignment]

    def pop(self, key: Any, *default: Any) -> Any:
        if default:
            return default[0]
        raise KeyError(key)


NO_ATTRIBUTES: Attrs = _Empty()
NO_TOOLS: dict[str, Any] = _Empty()
# Why a turn whose model side ended still holds its spans (TurnState.awaiting):
AWAIT_TURN_COMPLETE = "turn_complete"  # interrupted while generating: the provider's trailing turn_complete
AWAIT_PLAYBACK = "playback"  # completed while its audio still plays: a barge-in may yet cut it


_TAG_SETS: dict[tuple[str, ...], tuple[str, ...]] = {}
_MAX_TAG_SETS = 10_000


def shared_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """``tags`` without repeats, as one tuple object for every session with the same tags: most sessions of an
    app carry the same few, and an idle session need not hold a list of its own."""
    key = tuple(dict.fromkeys(tags))
    found = _TAG_SETS.get(key)
    if found is None:
        if len(_TAG_SETS) >= _MAX_TAG_SETS:
            _TAG_SETS.clear()
        found = _TAG_SETS[key] = tuple(sys.intern(tag) for tag in key)
    return found


def new_span_id() -> str:
    return new_span_int().to_bytes(8, "big").hex()  # a quarter of the time of f"{:016x}"


def new_span_int() -> int:
    # Same source the SDK's RandomIdGenerator uses; zero is not a valid id.
    return random.getrandbits(64) or 1


def new_trace_id() -> str:
    return (random.getrandbits(128) or 1).to_bytes(16, "big").hex()


@dataclass(slots=True)
class SpanEvent:
    name: str
    time_ns: int
    attributes: Attrs = field(default_factory=lambda: NO_ATTRIBUTES)


@dataclass(slots=True)
class OpenSpan:
    """A span not yet ended. Thousands of idle sessions each hold a few, so they are kept lean: the id is an int
    (40 bytes; its hex string would be 72), the parent is the very object its parent holds (the root's hex id
    from ``TraceRef``, or another open span's int id), and a few attributes are one flat tuple (key, value, key,
    value...: 72 bytes for two where a dict takes 184), changed through ``gateway.sessions.records``."""

    name: str
    id: int
    parent: int | str | None  # an int: an open span's id; a str: a hex id (the session's root); None: no parent
    start_ns: int
    kind: SpanKindName = "internal"
    attrs: SpanAttrs = ()  # key, value, key, value... or, past a few, a dict (gateway.sessions.records)
    events: Sequence[SpanEvent] = ()  # a tuple (gateway.sessions.records.add_event); a list once decoded
    trace_id: str | None = None  # set only when the span lives in a trace other than the session's
    links: tuple[tuple[str, str], ...] = ()  # (trace id, span id) of linked spans

    @property
    def span_id(self) -> str:
        return self.id.to_bytes(8, "big").hex()

    @property
    def parent_id(self) -> str | None:
        parent = self.parent
        return parent.to_bytes(8, "big").hex() if isinstance(parent, int) else parent

    @property
    def attributes(self) -> Attrs:
        """A copy, to read: ``gateway.sessions.records.set_attr`` changes them."""
        attrs = self.attrs
        if isinstance(attrs, dict):
            return dict(attrs)
        pairs = iter(attrs)
        return dict(zip(pairs, pairs, strict=True))


@frozen
class FinishedSpan:
    name: str
    span_id: str
    parent_id: str | None
    start_ns: int
    end_ns: int
    kind: SpanKindName
    attributes: Attrs
    events: tuple[SpanEvent, ...]
    error: str | None = None  # status description when the span ended in error
    trace_id: str | None = None
    links: tuple[tuple[str, str], ...] = ()


@frozen
class TraceRef:
    """What the export side needs to place a session's spans: nothing else of the state."""

    trace_id: str
    root_span_id: str
    parent_span_id: str | None  # the caller's span, from a traceparent header
    sampled: bool


@dataclass(slots=True)
class TurnState:
    number: int
    span: OpenSpan
    inference: OpenSpan | None = None
    speech: OpenSpan | None = None
    usage: Usage | None = None  # the current response's (its last report)
    usage_reports: int = 0
    earlier_usage: Usage | None = None  # the sum over the turn's earlier responses (gateway.sessions.responses)
    responses: int = 0  # earlier responses, their inference spans ended
    response_done_ns: int | None = None  # when the current response completed (model.generation_complete)
    response_tool_calls: int = 0  # tool calls the current response asked for
    user_text: list[str] | None = None  # words, when transcripts are captured (gateway.sessions.content)
    model_text: list[str] | None = None
    speech_end_ns: int | None = None
    speech_end_source: str = "client_vad"
    last_user_transcript_ns: int | None = None
    first_audio_ns: int | None = None
    first_playback_ns: int | None = None
    finish_reason: str = "stop"
    user_audio_ms: float = 0.0  # speech durations, for estimating cost when no usage is reported
    playback_ended: bool = False
    end_ns: int | None = None  # set when the turn ends; its spans may wait a little longer (awaiting)
    end_reason: str | None = None
    awaiting: str | None = None  # AWAIT_TURN_COMPLETE or AWAIT_PLAYBACK while held


@dataclass(slots=True)
class PendingSpeech:
    """User speech that began while the model was still answering (a barge-in):
    it belongs to the next turn, which does not exist yet."""

    start_ns: int
    end_ns: int | None = None
    source: str = "client_vad"
    text: list[str] | None = None


@dataclass(slots=True)
class RecordingState:
    """A call recording the operator allows and the app consented to (gateway/recordings)."""

    started_ms: float | None = None  # client clock, from the first chunk
    chunks: int = 0  # chunks stored: the next one expected has this number
    bytes: int = 0
    content_type: str | None = None


@dataclass(slots=True)
class SessionRare:
    """The part of a session's state most open sessions never set: counts of what seldom happens, priced cost,
    captured words, what its end decided. One object, created on the first of them, where a dozen slots on
    every ``SessionState`` would cost 96 bytes each session."""

    expect_trailing_turn_complete: bool = False  # an interruption cut no visible generation (machine)
    interruption_count: int = 0
    error_count: int = 0
    tool_error_count: int = 0
    cost_total: Cost | None = None
    last_turn_cost: Cost | None = None
    transcript: Sequence[dict[str, str | int]] = ()
    held_spans: list[FinishedSpan] | None = None  # unsampled, kept in case it ends in error
    end_reason: str | None = None
    end_ns: int | None = None
    ended_at_ns: int | None = None  # gateway clock, for how long the summary is kept
    summary: dict[str, object] | None = None


T = TypeVar("T")


class _Rare(Generic[T]):
    """A ``SessionState`` attribute kept in its ``SessionRare``: reads its default while there is none, and
    setting the default creates none."""

    def __init__(self, default: T) -> None:
        self.default = default
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, state: None, owner: type) -> _Rare[T]: ...

    @overload
    def __get__(self, state: SessionState, owner: type) -> T: ...

    def __get__(self, state: SessionState | None, owner: type) -> T | _Rare[T]:
        if state is None:
            return self
        rare = state.rare
        value: T = self.default if rare is None else getattr(rare, self.name)
        return value

    def __set__(self, state: SessionState, value: T) -> None:
        rare = state.rare
        if rare is None:
            if value is self.default or (value == self.default and type(value) is type(self.default)):
                return
            rare = state.rare = SessionRare()
        setattr(rare, self.name, value)


@dataclass(slots=True)
class SessionState:
    session_id: str
    trace: TraceRef
    start_ns: int
    last_activity_ns: int  # gateway clock at the last request: the idle timeout counts from here
    last_event_ns: int  # session timeline; never goes backwards
    user_id: str | None = None
    provider: str | None = None
    model: str | None = None
    agent: str | None = None
    tags: tuple[str, ...] = ()  # one tuple shared by the sessions that have the same tags (shared_tags)
    attributes: Attrs = field(default_factory=dict)
    client_sdk: str | None = None
    user_agent: str | None = None
    skew_ns: int | None = None  # gateway clock minus client clock, least-latency estimate
    # Event ids already applied. Most sessions are short: their ids are packed into one string ("\x1fa\x1fb\x1f"),
    # a few bytes an id where a list of strings costs some 60; past SEEN_IDS_IN_A_LIST they move to a set, so a
    # long session's lookups stay constant-time.
    seen_ids: str = ""
    seen_id_set: set[str] | None = None
    event_count: int = 0
    turn: TurnState | None = None
    held: TurnState | None = None  # the previous turn, ended but not yet exported (see TurnState.awaiting)
    first_event_ns: int | None = None  # the session's first event time: before start_ns when a client buffered
    pending_speech: PendingSpeech | None = None
    connection: OpenSpan | None = None
    tools: dict[str, OpenSpan] = field(default_factory=lambda: NO_TOOLS)  # a dict of its own from the first call
    root_events: Sequence[SpanEvent] = ()  # a tuple (gateway.sessions.records.root_event); a list once decoded
    turn_count: int = 0
    tool_call_count: int = 0
    connection_count: int = 0
    last_turn_end_ns: int | None = None
    first_audio_ms: Sequence[float] = ()  # per turn, for the session's percentiles
    usage_total: Usage = NO_USAGE
    last_turn_usage: Usage | None = None  # the last closed turn's, while no later turn has closed
    ended: bool = False
    recording: RecordingState | None = None  # None: no audio is recorded for this session
    rare: SessionRare | None = None  # what most sessions never set, until they end

    # Read and written as if they were fields of their own (SessionRare):
    expect_trailing_turn_complete = _Rare(False)
    interruption_count = _Rare(0)
    error_count = _Rare(0)
    tool_error_count = _Rare(0)
    cost_total = _Rare[Cost | None](None)
    last_turn_cost = _Rare[Cost | None](None)
    transcript = _Rare[Sequence[dict[str, str | int]]](())
    held_spans = _Rare[list[FinishedSpan] | None](None)
    end_reason = _Rare[str | None](None)
    end_ns = _Rare[int | None](None)
    ended_at_ns = _Rare[int | None](None)
    summary = _Rare[dict[str, object] | None](None)

    def __post_init__(self) -> None:
        if not self.attributes and type(self.attributes) is dict:
            self.attributes = NO_ATTRIBUTES  # most sessions never get any: share one empty dict

    @property
    def root_start_ns(self) -> int:
        """The root starts at the session's creation, or earlier at events a client buffered before it."""
        first = self.first_event_ns
        return self.start_ns if first is None else min(first, self.start_ns)

    def has_seen(self, event_id: str) -> bool:
        if self.seen_id_set is not None:
            return event_id in self.seen_id_set
        # An id holding the separator never got into the string (remember), so it cannot match across two.
        return _SEP not in event_id and f"{_SEP}{event_id}{_SEP}" in self.seen_ids

    def remember(self, event_id: str) -> None:
        if self.seen_id_set is not None:
            self.seen_id_set.add(event_id)
        elif _SEP not in event_id and self.seen_ids.count(_SEP) <= SEEN_IDS_IN_A_LIST:
            self.seen_ids = f"{self.seen_ids or _SEP}{event_id}{_SEP}"
        else:
            self.seen_id_set = {*self.seen_ids.split(_SEP)[1:-1], event_id}
            self.seen_ids = ""

    def forget_seen(self) -> None:
        self.seen_ids, self.seen_id_set = "", None

    def open_span_names(self) -> list[str]:
        names = []
        if self.connection:
            names.append(self.connection.name)
        if self.turn:
            names.append(self.turn.span.name)
            if self.turn.speech:
                names.append(self.turn.speech.name)
            if self.turn.inference:
                names.append(self.turn.inference.name)
        if self.held:  # ended, its spans not yet out
            names.append(self.held.span.name)
        names.extend(t.name for t in self.tools.values())
        return names
