"""Session state to bytes and back, for the stores that keep it outside the process (msgspec, MessagePack).

Typed decoding rebuilds the very dataclasses the state machine works on, so a
state written by one replica (or before a restart) is used by another as is.

Versions: a state starts with ``_MARK`` and its version byte. ``_MARK`` (0xc1) is the one byte MessagePack
never uses, so an unversioned state (version 1, a bare MessagePack map) is told apart and still decoded:
states a replica wrote before an upgrade go on after it. Version 2 packs the seen event ids into one string
(``SessionState.seen_ids``) where version 1 had a list.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.sessions.state import SessionState

VERSION = 2
_MARK = b"\xc1"
_HEADER = _MARK + bytes([VERSION])
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SessionState)


def encode(state: SessionState) -> bytes:
    return _HEADER + _encoder.encode(state)


def decode(data: bytes) -> SessionState:
    if data[:2] == _HEADER:
        return _decoder.decode(memoryview(data)[2:])
    if data[:1] == _MARK:
        raise ValueError(f"session state of codec version {data[1]}; this gateway reads up to {VERSION}")
    return _from_v1(msgspec.msgpack.decode(data))


def _from_v1(raw: dict[str, Any]) -> SessionState:
    seen = raw.pop("seen_ids", None) or []
    state = msgspec.convert(raw, SessionState)
    for event_id in seen:
        state.remember(event_id)
    return state
