"""Session state to bytes and back, for the stores that keep it outside the process (msgspec, MessagePack).

Typed decoding rebuilds the very dataclasses the state machine works on, so a
state written by one replica (or before a restart) is used by another as is.
"""

from __future__ import annotations

import msgspec

from gateway.sessions.state import SessionState

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SessionState)


def encode(state: SessionState) -> bytes:
    return _encoder.encode(state)


def decode(data: bytes) -> SessionState:
    return _decoder.decode(data)
