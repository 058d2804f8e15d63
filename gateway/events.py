"""Request and event schema (DESIGN §3, §4), validated with pydantic.

Events are validated one by one so that a bad event in a batch is reported by
its index while the good ones go on; every error carries the JSON path of the
bad field (``events[3].call_id``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from gateway.errors import FieldError, ValidationFailed

SessionId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
MAX_TOOL_NAME = 256  # what tool.call accepts as a name, and the legacy protocol as toolName
ShortText = Annotated[str, StringConstraints(max_length=256)]
# OTLP carries int64; a larger client number would fail the whole export batch, so it is refused here.
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
AttributeValue = Annotated[str, StringConstraints(max_length=1024)] | Int64 | float | bool
Attributes = dict[Annotated[str, StringConstraints(min_length=1, max_length=128)], AttributeValue]
# Client time: ms since the epoch (up to the end of year 9999, past which nanoseconds overflow), or an
# RFC 3339 string.
MAX_EPOCH_MS = 253_402_300_799_999
EpochMs = Annotated[float, Field(ge=0, le=MAX_EPOCH_MS)]


def _rfc3339_only(value: object) -> object:
    # A number is ms since the epoch and nothing else: left to itself the date type would read it as seconds.
    if isinstance(value, int | float):
        raise ValueError("a number here is ms since the epoch, from 0 to the end of year 9999")
    return value


Timestamp = EpochMs | Annotated[datetime, BeforeValidator(_rfc3339_only)]


class _Model(BaseModel):
    # Unknown fields are ignored so that a newer client keeps working against an older gateway.
    # Infinity and NaN cannot come through JSON; refused anyway for callers that build events in code.
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


class ClientInfo(_Model):
    sdk: ShortText | None = None
    user_agent: Annotated[str, StringConstraints(max_length=512)] | None = None


class SessionCreate(_Model):
    session_id: SessionId | None = None
    user_id: ShortText | None = None
    provider: ShortText | None = None
    model: ShortText | None = None
    agent: ShortText | None = None
    tags: list[ShortText] = Field(default_factory=list, max_length=64)
    attributes: Attributes = Field(default_factory=dict, max_length=64)
    client: ClientInfo | None = None
    record_audio: bool = False  # the app's consent to record this call's audio (gateway/recordings)


class _Event(_Model):
    id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    seq: Int64 | None = None
    ts: Timestamp | None = None


class ConnectionOpen(_Event):
    type: Literal["connection.open"]
    connection_id: ShortText | None = None


class ConnectionSetupComplete(_Event):
    type: Literal["connection.setup_complete"]


class ConnectionGoAway(_Event):
    type: Literal["connection.go_away"]
    time_left_ms: float | None = Field(default=None, ge=0)


class ConnectionResumed(_Event):
    type: Literal["connection.resumed"]
    handle: Annotated[str, StringConstraints(max_length=1024)] | None = None


class ConnectionClose(_Event):
    type: Literal["connection.close"]
    code: int | None = None
    reason: Annotated[str, StringConstraints(max_length=1024)] | None = None


SpeechSource = Literal["client_vad", "push_to_talk", "provider_vad"]


class UserSpeechStart(_Event):
    type: Literal["user.speech_start"]
    source: SpeechSource | None = None


class UserSpeechEnd(_Event):
    type: Literal["user.speech_end"]
    # How the end of speech was known: the client's VAD (default), a released push-to-talk button,
    # or the provider's own VAD signal relayed by the client.
    source: SpeechSource | None = None


class UserTranscript(_Event):
    type: Literal["user.transcript"]
    text: str
    final: bool | None = None


class ModelResponseStart(_Event):
    type: Literal["model.response_start"]


class ModelAudioStart(_Event):
    type: Literal["model.audio_start"]


class ModelPlaybackStart(_Event):
    type: Literal["model.playback_start"]


class ModelPlaybackEnd(_Event):
    """The player played the turn's last audio (after the model finished generating it)."""

    type: Literal["model.playback_end"]


class ModelTranscript(_Event):
    type: Literal["model.transcript"]
    text: str


class ModelGenerationComplete(_Event):
    type: Literal["model.generation_complete"]


class ModelTurnComplete(_Event):
    type: Literal["model.turn_complete"]
    reason: ShortText | None = None


class ModelInterrupted(_Event):
    type: Literal["model.interrupted"]
    played_ms: float | None = Field(default=None, ge=0)
    generated_ms: float | None = Field(default=None, ge=0)


class ModelUsage(_Event):
    type: Literal["model.usage"]
    usage: dict[str, Any]


class ToolCall(_Event):
    type: Literal["tool.call"]
    call_id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    name: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TOOL_NAME)]
    arguments: Any = None


class ToolResult(_Event):
    type: Literal["tool.result"]
    call_id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    result: Any = None
    error: Any = None


class ToolCancel(_Event):
    type: Literal["tool.cancel"]
    call_ids: list[Annotated[str, StringConstraints(min_length=1, max_length=256)]] = Field(min_length=1)


class ErrorEvent(_Event):
    type: Literal["error"]
    error_type: ShortText
    message: Annotated[str, StringConstraints(max_length=4096)] | None = None


class SessionUpdate(_Event):
    type: Literal["session.update"]
    user_id: ShortText | None = None
    tags: list[ShortText] | None = Field(default=None, max_length=64)
    attributes: Attributes | None = Field(default=None, max_length=64)


class Mark(_Event):
    type: Literal["mark"]
    name: ShortText
    attributes: Attributes | None = Field(default=None, max_length=32)


Event = Annotated[
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
    | Mark,
    Field(discriminator="type"),
]

EVENT_TYPES: frozenset[str] = frozenset(
    m.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    for m in _Event.__subclasses__()
)

_event_adapter: TypeAdapter[Event] = TypeAdapter(Event)
_M = TypeVar("_M", bound=BaseModel)


class EndRequest(_Model):
    reason: ShortText = "completed"
    ts: Timestamp | None = None


def _path(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


_UNION_MEMBERS = frozenset({"str", "int", "float", "bool", "datetime", "none", "list", "dict"})


def _union_member(part: int | str) -> bool:
    return isinstance(part, str) and (part in _UNION_MEMBERS or "-" in part or "[" in part)


def field_errors(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    """Pydantic's errors as (path, message), one per bad field: a value that fits no member of a union
    gets one error, not one per member, and member tags never appear in a path."""
    errors: dict[str, FieldError] = {}
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if len(loc) > 1 and isinstance(loc[0], str) and loc[0] in EVENT_TYPES:
            loc = loc[1:]
        while loc and _union_member(loc[-1]):
            loc = loc[:-1]
        path = _path(prefix, loc)
        errors.setdefault(path, FieldError(path, err["msg"]))
    return list(errors.values())


def parse_event(raw: object, path: str) -> Event:
    """Validate one event; raises ValidationFailed whose errors are rooted at ``path``."""
    if isinstance(raw, dict):
        kind = raw.get("type")
        if kind is None:
            raise ValidationFailed("event has no type", [FieldError(_path(path, ("type",)), "field required")])
        if not isinstance(kind, str) or kind not in EVENT_TYPES:
            raise ValidationFailed(
                f"unknown event type {kind!r}", [FieldError(_path(path, ("type",)), f"unknown event type {kind!r}")]
            )
    try:
        return _event_adapter.validate_python(raw)
    except ValidationError as exc:
        raise ValidationFailed("invalid event", field_errors(exc, path)) from None


def parse_model(model: type[_M], raw: object, prefix: str = "") -> _M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ValidationFailed("invalid request body", field_errors(exc, prefix)) from None
