"""The legacy protocol of the system we derive from (DESIGN §3.4), translated into canonical events.

Its clients send ``{sessionId, type, timestamp, data}`` with four event types;
each becomes one or more v1 events with ids derived from the legacy fields, so
a replayed legacy event is deduplicated like any other. Pure translation: the
routes that take these events live in ``gateway.api.compat``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from gateway.errors import FieldError, ValidationFailed
from gateway.events import MAX_TOOL_NAME

LEGACY_TYPES = ("turn_start", "turn_complete", "tool_call", "tool_result")
_BAD_TIMESTAMP = FieldError("timestamp", "ms epoch or ISO 8601")
# finish reason of a turn closed because the client went on to the next one without saying it completed
SUPERSEDED = "superseded"

MAX_SESSIONS = 10_000
MAX_KEYS_PER_SESSION = 4_096
MAX_UNMATCHED_PER_TOOL = 256


def as_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object", [FieldError("", "expected an object")])
    return body


def session_id_of(body: dict[str, Any]) -> str:
    sid = body.get("sessionId")
    if not isinstance(sid, str) or not sid:
        raise ValidationFailed("sessionId is required", [FieldError("sessionId", "required string")])
    return sid


def _ms(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000
        except ValueError:
            raise ValidationFailed("timestamp is not a date", [_BAD_TIMESTAMP]) from None
    raise ValidationFailed("timestamp is not a date", [_BAD_TIMESTAMP])


def _turn_key(value: Any) -> str | None:
    """The turnNumber as a key: 2, 2.0 and "2" are the same turn."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValidationFailed("turnNumber must be a number", [FieldError("data.turnNumber", "expected a number")])
    return str(value)


def _ts_key(ms: float | None) -> str:
    # Microsecond precision, so a call time recomputed as result time minus duration compares equal.
    return "-" if ms is None else f"{ms:.3f}"


def _before(ms: float | None, duration: Any) -> float | None:
    """The moment ``duration`` ms before ``ms``: when a legacy event's measured span began."""
    if ms is None or isinstance(duration, bool) or not isinstance(duration, int | float):
        return ms
    return ms - float(duration)


def _digest(*parts: Any) -> str:
    """A short, stable digest of legacy fields: ids stay within their length limits whatever the client sent."""
    raw = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


# -- tool call pairing ------------------------------------------------------------------------------


def _drop_oldest(entries: dict[Any, Any]) -> None:
    """Keep a per-session map within MAX_KEYS_PER_SESSION, forgetting the oldest entries first."""
    while len(entries) > MAX_KEYS_PER_SESSION:
        del entries[next(iter(entries))]


@dataclass
class _SessionCalls:
    given: dict[str, str] = field(default_factory=dict)  # legacy event key -> the call id it was given
    taken: dict[str, None] = field(default_factory=dict)  # call ids given to calls (an ordered set)
    unmatched: dict[tuple[str | None, str], deque[str]] = field(default_factory=dict)  # oldest first

    def remember(self, key: str, call_id: str) -> None:
        self.given[key] = call_id
        _drop_oldest(self.given)


class LegacyToolCalls:
    """Pairs legacy tool results with their calls: first in, first out per (turn, tool name).

    Legacy events carry no call id, and which call a result belongs to depends on
    which calls are still unmatched: state that only the session has, and that compat
    cannot read. No stateless scheme is correct (a replayed call and a second call of
    the same tool with the same arguments at the same instant are indistinguishable,
    and nothing in a result says which call it answers), so the pairing is kept here,
    bounded: the most recently used MAX_SESSIONS sessions, MAX_KEYS_PER_SESSION events each.

    Limitation: this is per process. With several replicas and no session affinity, a
    result that reaches another replica than its call (or arrives after a restart or an
    eviction) is paired by timing instead: the call it answers is assumed to have been
    reported at the result's timestamp minus its durationMs. When that matches no open
    call, the tool span ends with the session (voice.tool.end_reason session_closed).
    """

    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self._max_sessions = max_sessions
        self._sessions: OrderedDict[str, _SessionCalls] = OrderedDict()

    def _session(self, session_id: str) -> _SessionCalls:
        calls = self._sessions.pop(session_id, None) or _SessionCalls()
        self._sessions[session_id] = calls
        while len(self._sessions) > self._max_sessions:
            self._sessions.popitem(last=False)
        return calls

    def call(self, session_id: str, key: str, pair: tuple[str | None, str], base: str) -> str:
        """The call id of a tool call: ``base``, unless another call already has it; a replay gets its own again."""
        s = self._session(session_id)
        known = s.given.get(key)
        if known is not None:
            return known
        call_id, n = base, 1
        while call_id in s.taken:  # same tool, turn and instant, other arguments: parallel calls
            call_id, n = f"{base}:{n}", n + 1
        s.remember(key, call_id)
        s.taken[call_id] = None
        _drop_oldest(s.taken)
        queue = s.unmatched.pop(pair, None) or deque(maxlen=MAX_UNMATCHED_PER_TOOL)
        queue.append(call_id)
        s.unmatched[pair] = queue
        _drop_oldest(s.unmatched)
        return call_id

    def result(self, session_id: str, key: str, pair: tuple[str | None, str], fallback: str) -> str:
        """The call id a result answers: the oldest unmatched call of that tool in that turn."""
        s = self._session(session_id)
        known = s.given.get(key)
        if known is not None:
            # A replay (or a retry after a 429) answers the same call, not the next one.
            return known
        queue = s.unmatched.get(pair)
        call_id = queue.popleft() if queue else fallback
        if queue is not None and not queue:
            del s.unmatched[pair]
        s.remember(key, call_id)
        return call_id

    def forget(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)


# -- mapping ----------------------------------------------------------------------------------------


def legacy_to_events(
    body: dict[str, Any], session_id: str | None = None, tools: LegacyToolCalls | None = None
) -> list[dict[str, Any]]:
    kind = body.get("type")
    if kind not in LEGACY_TYPES:
        raise ValidationFailed(
            f"unknown event type {kind!r}", [FieldError("type", f"expected one of {', '.join(LEGACY_TYPES)}")]
        )
    data = body.get("data") or {}
    if not isinstance(data, dict):
        raise ValidationFailed("data must be an object", [FieldError("data", "expected an object")])
    ts = _ms(body.get("timestamp"))
    turn = _turn_key(data.get("turnNumber"))
    out: list[dict[str, Any]] = []

    def add(event_type: str, event_id: str, at: float | None = ts, **fields: Any) -> None:
        out.append({"type": event_type, "id": event_id, "ts": at, **fields})

    def begin_turn(at: float | None) -> None:
        # The legacy client may never send turn_complete for a turn (a barge-in, a lost request), and
        # compat cannot see which turn the session has open. So the first event of each turnNumber is
        # preceded by a turn_complete whose id depends on the turnNumber alone: it closes whatever is
        # still open, which can only be an earlier turn since every event of this one comes after it,
        # and for any later event of the same turn (or a replay) it is a duplicate, so it never closes
        # the turn it began. After a proper turn_complete no turn is open and the machine ignores it.
        # Without a turnNumber there is nothing to tell turns apart by: the machine's own segmentation.
        if turn is not None:
            add("model.turn_complete", f"compat:{_digest('turn', turn)}:begin", at=at, reason=SUPERSEDED)

    if kind in ("turn_start", "turn_complete"):
        # A turn has one start and one end: its number and the time identify the legacy event.
        base = f"compat:{_digest(kind, turn, _ts_key(ts))}"
        if kind == "turn_start":
            begin_turn(ts)
            add("user.transcript", f"{base}:transcript", text=str(data.get("userTranscript") or ""), final=True)
        else:
            started = _before(ts, data.get("durationMs"))
            begin_turn(started)
            add("model.response_start", f"{base}:response", at=started)
            if data.get("aiTranscript"):
                add("model.transcript", f"{base}:transcript", text=str(data["aiTranscript"]))
            add("model.turn_complete", f"{base}:complete")
        return out

    name = data.get("toolName")
    if not isinstance(name, str) or not name or len(name) > MAX_TOOL_NAME:
        raise ValidationFailed("toolName is required", [FieldError("data.toolName", "required string, 1-256 chars")])
    pair = (turn, name)
    # Parallel calls of one tool may share a turn and a millisecond: arguments (results) tell them apart.
    if kind == "tool_call":
        args = data.get("toolArgs")
        key = _digest(kind, turn, name, _ts_key(ts), args)
        base = f"compat:{_digest('call', turn, name, _ts_key(ts))}"
        call_id = base if tools is None or session_id is None else tools.call(session_id, key, pair, base)
        begin_turn(ts)
        add("tool.call", f"compat:{key}:call", call_id=call_id, name=name, arguments=args)
    else:
        key = _digest(kind, turn, name, _ts_key(ts), data.get("result"), data.get("error"))
        fallback = f"compat:{_digest('call', turn, name, _ts_key(_before(ts, data.get('durationMs'))))}"
        call_id = fallback if tools is None or session_id is None else tools.result(session_id, key, pair, fallback)
        add("tool.result", f"compat:{key}:result", call_id=call_id, result=data.get("result"),
            error=data.get("error"))
    return out
