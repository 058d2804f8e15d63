"""Request and event schema (DESIGN §3, §4), decoded by msgspec straight from the request body's bytes.

Events are a tagged union on ``type``. A batch is decoded whole, typed, in one pass; only when that fails
is it decoded again with each event left as raw JSON, then each event on its own, so that a bad event is
reported by its index while the good ones go on (bench/validate_cpu.py measured this against always
decoding each event on its own: less than half the CPU per event for a valid batch, about 40% more for a
batch with a bad event). msgspec stops at the first error; a value that fails is examined again field by field (bad
input only), so that every bad field is reported with its JSON path (``events[3].call_id``).
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union, cast, get_args, get_origin

import msgspec
from msgspec import UNSET, Meta, Raw, UnsetType

from gateway.errors import BadRequest, FieldError, ValidationFailed

# Trailing (?!\n): Python's $ also matches before a final newline, a session id must not end with one.
SessionId = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$(?!\n)")]
MAX_TOOL_NAME = 256  # what tool.call accepts as a name, and the legacy protocol as toolName
ShortText = Annotated[str, Meta(max_length=256)]
LongText = Annotated[str, Meta(max_length=1024)]
EventId = Annotated[str, Meta(min_length=1, max_length=128)]
CallId = Annotated[str, Meta(min_length=1, max_length=256)]
# OTLP carries int64; a larger client number would fail the whole export batch, so it is refused here.
Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
# Infinity and NaN cannot come through JSON; refused anyway for callers that build events in code.
_MAX_FLOAT = sys.float_info.max
Finite = Annotated[float, Meta(ge=-_MAX_FLOAT, le=_MAX_FLOAT)]
Millis = Annotated[float, Meta(ge=0, le=_MAX_FLOAT)]
AttributeValue = LongText | Int64 | Finite | bool
AttributeKey = Annotated[str, Meta(min_length=1, max_length=128)]
Attributes = Annotated[dict[AttributeKey, AttributeValue], Meta(max_length=64)]
Tags = Annotated[list[ShortText], Meta(max_length=64)]
# Client time: ms since the epoch (up to the end of year 9999, past which nanoseconds overflow), or an
# RFC 3339 string (a number is ms and nothing else, never seconds).
MAX_EPOCH_MS = 253_402_300_799_999
EpochMs = Annotated[float, Meta(ge=0, le=MAX_EPOCH_MS)]
Timestamp = EpochMs | Annotated[datetime, Meta(extra_json_schema={"format": "date-time"})]


class _Body(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """Unknown fields are ignored so that a newer client keeps working against an older gateway."""


class ClientInfo(_Body, frozen=True):
    sdk: ShortText | None = None
    user_agent: Annotated[str, Meta(max_length=512)] | None = None


class SessionCreate(_Body, frozen=True):
    session_id: SessionId | None = None
    user_id: ShortText | None = None
    provider: ShortText | None = None
    model: ShortText | None = None
    agent: ShortText | None = None
    tags: Tags = []
    attributes: Attributes = {}
    client: ClientInfo | None = None
    record_audio: bool = False  # the app's consent to record this call's audio (gateway/recordings)


class EndRequest(_Body, frozen=True):
    reason: ShortText = "completed"
    ts: Timestamp | None = None


class BaseEvent(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False, tag_field="type", gc=False):
    """What every event has; an event is one of its subclasses (``Event``), told apart by ``type``."""

    # gc=False: an event holds JSON values only, never a cycle, so the collector need not track it.
    type: ClassVar[str]  # the tag, set on each event class below
    id: EventId
    seq: Int64 | None = None
    ts: Timestamp | None = None


class ConnectionOpen(BaseEvent, tag="connection.open", frozen=True):
    connection_id: ShortText | None = None


class ConnectionSetupComplete(BaseEvent, tag="connection.setup_complete", frozen=True):
    pass


class ConnectionGoAway(BaseEvent, tag="connection.go_away", frozen=True):
    time_left_ms: Millis | None = None


class ConnectionResumed(BaseEvent, tag="connection.resumed", frozen=True):
    handle: LongText | None = None


class ConnectionClose(BaseEvent, tag="connection.close", frozen=True):
    code: Int64 | None = None
    reason: LongText | None = None


SpeechSource = Literal["client_vad", "push_to_talk", "provider_vad"]


class UserSpeechStart(BaseEvent, tag="user.speech_start", frozen=True):
    source: SpeechSource | None = None


class UserSpeechEnd(BaseEvent, tag="user.speech_end", frozen=True):
    # How the end of speech was known: the client's VAD (default), a released push-to-talk button,
    # or the provider's own VAD signal relayed by the client.
    source: SpeechSource | None = None


class UserTranscript(BaseEvent, tag="user.transcript", frozen=True):
    text: str
    final: bool | None = None


class ModelResponseStart(BaseEvent, tag="model.response_start", frozen=True):
    pass


class ModelAudioStart(BaseEvent, tag="model.audio_start", frozen=True):
    pass


class ModelPlaybackStart(BaseEvent, tag="model.playback_start", frozen=True):
    pass


class ModelPlaybackEnd(BaseEvent, tag="model.playback_end", frozen=True):
    """The player played the turn's last audio (after the model finished generating it)."""


class ModelTranscript(BaseEvent, tag="model.transcript", frozen=True):
    text: str


class ModelGenerationComplete(BaseEvent, tag="model.generation_complete", frozen=True):
    pass


class ModelTurnComplete(BaseEvent, tag="model.turn_complete", frozen=True):
    reason: ShortText | None = None


class ModelInterrupted(BaseEvent, tag="model.interrupted", frozen=True):
    played_ms: Millis | None = None
    generated_ms: Millis | None = None


class ModelUsage(BaseEvent, tag="model.usage", frozen=True):
    usage: dict[str, Any]


class ToolCall(BaseEvent, tag="tool.call", frozen=True):
    call_id: CallId
    name: Annotated[str, Meta(min_length=1, max_length=MAX_TOOL_NAME)]
    arguments: Any = None


class ToolResult(BaseEvent, tag="tool.result", frozen=True):
    call_id: CallId
    result: Any = None
    error: Any = None


class ToolCancel(BaseEvent, tag="tool.cancel", frozen=True):
    call_ids: Annotated[list[CallId], Meta(min_length=1)]


class ErrorEvent(BaseEvent, tag="error", frozen=True):
    error_type: ShortText
    message: Annotated[str, Meta(max_length=4096)] | None = None


class SessionUpdate(BaseEvent, tag="session.update", frozen=True):
    user_id: ShortText | None = None
    tags: Tags | None = None
    attributes: Attributes | None = None


class Mark(BaseEvent, tag="mark", frozen=True):
    name: ShortText
    attributes: Annotated[dict[AttributeKey, AttributeValue], Meta(max_length=32)] | None = None


Event = (
    ConnectionOpen
    | ConnectionSetupComplete
    | ConnectionGoAway
    | ConnectionResumed
    | ConnectionClose
    | UserSpeechStart
    | UserSpeechEnd
    | UserTranscript
    | ModelResponseStart
    | ModelAudioStart
    | ModelPlaybackStart
    | ModelPlaybackEnd
    | ModelTranscript
    | ModelGenerationComplete
    | ModelTurnComplete
    | ModelInterrupted
    | ModelUsage
    | ToolCall
    | ToolResult
    | ToolCancel
    | ErrorEvent
    | SessionUpdate
    | Mark
)

EVENT_CLASSES: dict[str, type[BaseEvent]] = {}
for _cls in get_args(Event):
    _cls.type = _cls.__struct_config__.tag
    EVENT_CLASSES[_cls.type] = _cls
EVENT_TYPES: frozenset[str] = frozenset(EVENT_CLASSES)
EVENT_CLASS_SET: frozenset[type[BaseEvent]] = frozenset(EVENT_CLASSES.values())  # what a decoded event is

_event_decoder = msgspec.json.Decoder(Event)


# -- request bodies -------------------------------------------------------------------------------


class _Envelope(msgspec.Struct, forbid_unknown_fields=False):
    """A body of POST .../events: a batch (``events`` without ``type``) or a single event (anything else)."""

    events: list[Event] | UnsetType | None = UNSET
    type: Raw | UnsetType = UNSET
    sent_at: Any = None


class _LooseEnvelope(msgspec.Struct, forbid_unknown_fields=False):
    """The same, nothing decoded yet: when something in the body is bad, each part is decoded on its own."""

    events: Raw | UnsetType = UNSET
    type: Raw | UnsetType = UNSET
    sent_at: Raw | UnsetType = UNSET


class EndBody(EndRequest, frozen=True):
    """The whole body of POST .../end: the end itself, and the page's final events."""

    events: Raw | UnsetType = UNSET  # decoded by ``end_events``, each event on its own like a batch's
    sent_at: Any = None


_envelope_decoder = msgspec.json.Decoder(_Envelope)
# An object whose first key is "type" is one event (a body with "type" is never a batch): the browser client
# sends its single events so, and they are decoded in one pass, without the envelope's.
_EVENT_FIRST = re.compile(rb'\s*\{\s*"type"\s*:')
_loose_decoder = msgspec.json.Decoder(_LooseEnvelope)
_event_list_decoder = msgspec.json.Decoder(list[Event] | None)
_raw_list_decoder = msgspec.json.Decoder(list[Raw] | None)
_M = TypeVar("_M", bound=_Body)
_model_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}
_NOT_AN_OBJECT = FieldError("", "expected an object")


def _not_a_list() -> ValidationFailed:
    return ValidationFailed("'events' must be a list", [FieldError("events", "must be a list")])


def _not_json(exc: msgspec.DecodeError) -> BadRequest:
    return BadRequest(f"the body is not valid JSON: {exc}", [FieldError("", "invalid JSON")])


def decode_envelope(body: bytes) -> tuple[Sequence[object], Any, bool]:
    """(events, sent_at, batched) of a POST .../events body. The events are decoded when they all are valid;
    when one is not, they are left as raw JSON for ``parse_event`` to decode one by one, so that the bad one
    is reported by its index and costs only itself. Raises BadRequest when the body is not JSON,
    ValidationFailed when it is not an object or its ``events`` no list."""
    if not body or body.isspace():
        raise ValidationFailed("the body must be an event object or {\"events\": [...]}", [_NOT_AN_OBJECT])
    try:
        try:
            if body.startswith(b'{"type":') or _EVENT_FIRST.match(body):
                return [_event_decoder.decode(body)], None, False
            return _contents(_envelope_decoder.decode(body), body)
        except msgspec.ValidationError:
            return _decode_apart(body)
    except msgspec.DecodeError as exc:  # malformed, maybe past where a validation error stopped the first pass
        raise _not_json(exc) from None


def _decode_apart(body: bytes) -> tuple[Sequence[object], Any, bool]:
    """``decode_envelope`` when something in the body is bad: each part decoded on its own, the events left
    as raw JSON for ``parse_event``."""
    try:
        loose = _loose_decoder.decode(body)
    except msgspec.ValidationError:
        raise ValidationFailed("the body must be an event object or {\"events\": [...]}",
                               [_NOT_AN_OBJECT]) from None
    if loose.events is UNSET or loose.type is not UNSET:
        return [Raw(body)], None, False  # an event (an ``events`` field of its own is ignored like any other)
    try:
        events = _raw_list_decoder.decode(loose.events)
    except msgspec.ValidationError:
        events = None
    if events is None:
        raise _not_a_list()
    # A number past any float's range fails here as a DecodeError: the body is not JSON the gateway reads.
    return events, None if loose.sent_at is UNSET else msgspec.json.decode(loose.sent_at), True


def _contents(envelope: _Envelope, body: bytes) -> tuple[Sequence[object], Any, bool]:
    if envelope.events is UNSET or envelope.type is not UNSET:
        return [Raw(body)], None, False
    if envelope.events is None:
        raise _not_a_list()
    return envelope.events, envelope.sent_at, True


def end_events(body: EndBody) -> Sequence[object]:
    """The final events of an end body, as ``decode_envelope`` gives a batch's: a list, or nothing (absent,
    null, or any other false value)."""
    if body.events is UNSET:
        return []
    try:
        return _event_list_decoder.decode(body.events) or []
    except msgspec.ValidationError:
        pass
    try:
        return _raw_list_decoder.decode(body.events) or []
    except msgspec.ValidationError:
        pass
    try:
        nothing = not msgspec.json.decode(body.events)
    except msgspec.ValidationError:  # a number past any float's range
        nothing = False
    if nothing:
        return []
    raise _not_a_list()


def decode_model(model: type[_M], body: bytes, prefix: str = "") -> _M:
    """A request body of ``model``'s shape from its bytes; an empty body is every field's default."""
    if not body or body.isspace():
        return model()
    decoder = _model_decoders.get(model)
    if decoder is None:
        decoder = _model_decoders[model] = msgspec.json.Decoder(model)
    try:
        try:
            return cast(_M, decoder.decode(body))
        except msgspec.ValidationError as exc:
            raise _invalid_body(model, msgspec.json.decode(body), prefix, exc) from None
    except msgspec.DecodeError as exc:  # malformed, maybe past where a validation error stopped the first pass
        raise _not_json(exc) from None


def parse_model(model: type[_M], raw: object, prefix: str = "") -> _M:
    """A request body of ``model``'s shape from JSON values (a body some code put together)."""
    try:
        return msgspec.convert(raw, model)
    except msgspec.ValidationError as exc:
        raise _invalid_body(model, raw, prefix, exc) from None


def _invalid_body(model: type[_Body], value: object, prefix: str, exc: msgspec.ValidationError) -> ValidationFailed:
    if not isinstance(value, dict):
        return ValidationFailed("the body must be an object", [FieldError(prefix, "expected an object")])
    return ValidationFailed("invalid request body", _explain(model, value, prefix, exc))


def parse_event(raw: object, path: str) -> Event:
    """One event: raw JSON (from a request body), JSON values (events built in code), or an event already.
    Raises ValidationFailed whose errors are rooted at ``path``."""
    if isinstance(raw, BaseEvent):
        return cast(Event, raw)
    try:
        if isinstance(raw, Raw):
            return _event_decoder.decode(raw)
        event: Event = msgspec.convert(raw, Event)
        return event
    except msgspec.ValidationError as exc:
        try:
            value = msgspec.json.decode(raw) if isinstance(raw, Raw) else raw
        except msgspec.DecodeError:
            value = _MALFORMED
        raise _refusal(value, path, exc) from None
    except msgspec.DecodeError:  # raw JSON comes from a body decoded already: never, unless built by hand
        raise _refusal(_MALFORMED, path, None) from None


_MALFORMED = object()


def _refusal(value: object, path: str, exc: msgspec.ValidationError | None) -> ValidationFailed:
    if value is _MALFORMED or exc is None:
        return ValidationFailed("invalid event", [FieldError(path, "invalid JSON")])
    if not isinstance(value, dict):
        return ValidationFailed("invalid event", [_reported(exc, path)])
    kind = value.get("type")
    if kind is None:
        return ValidationFailed("event has no type", [FieldError(_join(path, "type"), "field required")])
    cls = EVENT_CLASSES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return ValidationFailed(f"unknown event type {kind!r}",
                                [FieldError(_join(path, "type"), f"unknown event type {kind!r}")])
    return ValidationFailed("invalid event", _explain(cls, value, path, exc))


# -- errors, every bad field with its path ----------------------------------------------------------


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


_MISSING = re.compile(r"Object missing required field `(.*)`")


def _reported(exc: msgspec.ValidationError, path: str) -> FieldError:
    """msgspec's first error as (path, message): ``Expected `str`, got `int` - at `$.name``` -> name."""
    message, at, where = str(exc).rpartition(" - at `")
    if not at:
        message, where = str(exc), "$`"
    if where.startswith("key` in `"):  # a bad key of a map: the map's path
        where = where[len("key` in `"):]
    where = where.rstrip("`").replace("[...]", "")
    rest = where[1:]
    full = path + rest if path or not rest.startswith(".") else rest[1:]
    missing = _MISSING.fullmatch(message)
    if missing:
        return FieldError(_join(full, missing.group(1)), "field required")
    return FieldError(full, message)


def _explain(tp: Any, value: Any, path: str, first: msgspec.ValidationError | None = None) -> list[FieldError]:
    """Every bad field of ``value`` against ``tp`` (msgspec stops at the first): the members of structs,
    lists and maps are checked one by one; where none is at fault the value as a whole is."""
    plan = _plans.get(tp)
    if plan is None:
        plan = _plans[tp] = _Plan(tp)
    return plan.explain(value, path, first)


class _Plan:
    """How to examine a value of one type member by member; built the first time a value fails it, and kept
    (a bad client sends bad values again), with the plans of its members."""

    __slots__ = ("_holder", "_shapes", "_type")

    def __init__(self, tp: Any) -> None:
        self._type = tp
        # msgspec keeps what it learnt of a struct's types, but works a bare annotated type or union out
        # again at every ``convert``: several times slower than converting a struct that holds it.
        self._holder = msgspec.defstruct("_Holder", [("v", tp)])
        self._shapes: dict[str, tuple[str, list[tuple[str, bool, _Plan]]]] = {}

    def explain(self, value: Any, path: str, first: msgspec.ValidationError | None = None) -> list[FieldError]:
        if first is None:
            first = self._check(value)
            if first is None:
                return []
        return self._members(value, path) or [_reported(first, path)]

    def _check(self, value: Any) -> msgspec.ValidationError | None:
        """Why ``value`` is not of this type (located as if ``value`` were the whole document), or None."""
        try:
            msgspec.convert({"v": value}, self._holder)
            return None
        except msgspec.ValidationError as exc:
            text = str(exc)
            at = text.rfind("`$.v")
            return msgspec.ValidationError(f"{text[:at]}`${text[at + 4:]}" if at >= 0 else text)

    def _members(self, value: Any, path: str) -> list[FieldError]:
        shape = "dict" if isinstance(value, dict) else "list" if isinstance(value, list) else ""
        known = self._shapes.get(shape)
        if known is None:
            known = self._shapes[shape] = _members_of(self._type, shape)
        kind, members = known
        errors: list[FieldError] = []
        if kind == "struct":
            for name, required, plan in members:
                if name in value:
                    errors += plan.explain(value[name], _join(path, name))
                elif required:
                    errors.append(FieldError(_join(path, name), "field required"))
        elif kind == "list":
            item = members[0][2]
            for i, v in enumerate(value):
                errors += item.explain(v, f"{path}[{i}]")
        elif kind == "dict":
            key, item = members[0][2], members[1][2]
            for k, v in value.items():
                errors += key.explain(k, _join(path, str(k))) or item.explain(v, _join(path, str(k)))
        return errors


_plans: dict[Any, _Plan] = {}


def _members_of(tp: Any, shape: str) -> tuple[str, list[tuple[str, bool, _Plan]]]:
    """What a value of ``shape`` ("dict", "list" or "") is examined against member by member: a struct's
    fields, a list's items, a map's keys and values (in a union, of the one member of that shape)."""
    if get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        fits = [found for m in get_args(tp) if (found := _members_of(m, shape))[0]]
        return fits[0] if len(fits) == 1 else ("", [])
    if shape == "dict" and isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        # Raw fields are decoded apart, and reported there.
        return "struct", [(f.encode_name, f.required, _Plan(f.type)) for f in msgspec.structs.fields(tp)
                          if f.type is not Raw and f.type != Raw | UnsetType]
    if shape == "dict" and get_origin(tp) is dict:
        key, item = get_args(tp)
        return "dict", [("key", True, _Plan(key)), ("value", True, _Plan(item))]
    if shape == "list" and get_origin(tp) is list:
        return "list", [("item", True, _Plan(get_args(tp)[0]))]
    return "", []
