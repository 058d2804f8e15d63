"""Session state to bytes and back, for the stores that keep it outside the process (msgspec, MessagePack).

Typed decoding rebuilds the very dataclasses the state machine works on, so a
state written by one replica (or before a restart) is used by another as is.

Versions: a state starts with ``_MARK`` and its version byte. ``_MARK`` (0xc1) is the one byte MessagePack
never uses, so an unversioned state (version 1, a bare MessagePack map) is told apart and still decoded:
states a replica wrote before an upgrade go on after it. Version 2 packs the seen event ids into one string
(``SessionState.seen_ids``) where version 1 had a list. Version 3 keeps open spans lean (``OpenSpan``): the
id an int, the parent under ``parent``, a few attributes a flat key, value list where versions 1 and 2 had
``span_id``, ``parent_id`` (hex strings) and an ``attributes`` map, and what few sessions set (the end, error
counts...) in one ``rare`` map (``SessionRare``) where earlier versions had them on the state itself.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import msgspec

from gateway.sessions.records import TUPLE_PAIRS
from gateway.sessions.state import SessionRare, SessionState

VERSION = 3
_MARK = b"\xc1"
_HEADER = _MARK + bytes([VERSION])
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SessionState)
_RARE = tuple(f.name for f in fields(SessionRare))


def encode(state: SessionState) -> bytes:
    return _HEADER + _encoder.encode(state)


def decode(data: bytes) -> SessionState:
    if data[:2] == _HEADER:
        return _decoder.decode(memoryview(data)[2:])
    if data[:1] != _MARK:
        return _from_old(msgspec.msgpack.decode(data), seen_in_a_list=True)  # version 1
    if data[1] == 2:
        return _from_old(msgspec.msgpack.decode(memoryview(data)[2:]), seen_in_a_list=False)
    raise ValueError(f"session state of codec version {data[1]}; this gateway reads up to {VERSION}")


def _from_old(raw: dict[str, Any], seen_in_a_list: bool) -> SessionState:
    """A version 1 or 2 state: its open spans and rare fields take today's form, and version 1's list of seen ids
    is packed."""
    seen = (raw.pop("seen_ids", None) or []) if seen_in_a_list else []
    for turn in (raw.get("turn"), raw.get("held")):
        if turn:
            for key in ("span", "inference", "speech"):
                _span_from_old(turn.get(key))
    _span_from_old(raw.get("connection"))
    rare = {name: raw.pop(name) for name in _RARE if name in raw}
    if any(rare.values()):  # every default is false: nothing else needs a SessionRare
        raw["rare"] = rare
    for tool in (raw.get("tools") or {}).values():
        _span_from_old(tool)
    state = msgspec.convert(raw, SessionState)
    for event_id in seen:
        state.remember(event_id)
    return state


def _span_from_old(span: dict[str, Any] | None) -> None:
    if span:
        span["id"] = int(span.pop("span_id"), 16)
        span["parent"] = span.pop("parent_id", None)  # a hex string still names the parent (OpenSpan.parent)
        attrs = span.pop("attributes", None) or {}
        # As gateway.sessions.records keeps them: a few as a flat list, more as the map they were.
        span["attrs"] = attrs if len(attrs) > TUPLE_PAIRS else [item for pair in attrs.items() for item in pair]
