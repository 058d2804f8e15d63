"""One recording chunk's way in: the rules it must pass, then a stream into the object store.

Chunks are numbered from 0 by the browser (``?chunk=N``) and stored in that order only: chunk N is taken
when N chunks are stored. A chunk already stored is answered again without being read (a retry whose first
answer was lost); one ahead of the next expected is a 409 that names the expected number. Chunk 0 carries
``start``, the browser's clock (ms since the epoch) when recording began, which places the recording on the
session's timeline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.errors import Conflict, FieldError, Forbidden, PayloadTooLarge, RequestError, ValidationFailed
from gateway.sessions.state import SessionState

# Base type: (file extension, codecs accepted in its `codecs` parameter; empty: none may be named).
CONTENT_TYPES: dict[str, tuple[str, frozenset[str]]] = {
    "audio/webm": ("webm", frozenset({"opus"})),
    "audio/ogg": ("ogg", frozenset({"opus"})),
    "audio/mp4": ("m4a", frozenset({"opus", "mp4a.40.2", "mp4a.40.5", "aac"})),
    "audio/wav": ("wav", frozenset({"1"})),
    "audio/wave": ("wav", frozenset({"1"})),
    "audio/x-wav": ("wav", frozenset({"1"})),
}
MAX_CHUNK_NUMBER = 99_999_999  # eight digits in the object's name


class UnsupportedMediaType(RequestError):
    status = 415
    title = "Unsupported media type"
    slug = "unsupported-media-type"


class StorageFailed(RequestError):
    """The object store failed: the browser keeps the chunk and retries later."""

    status = 503
    title = "Service unavailable"
    slug = "recording-storage-unavailable"
    retry_after_s: ClassVar[int] = 5

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


@dataclass(frozen=True)
class AudioType:
    mime: str  # normalized, e.g. audio/webm;codecs=opus
    ext: str


def parse_content_type(header: str | None) -> AudioType:
    allowed = ", ".join(sorted(CONTENT_TYPES))
    if not header:
        raise UnsupportedMediaType(f"a recording chunk needs a Content-Type; accepted: {allowed}",
                                   [FieldError("content-type", "missing")])
    base, *params = (part.strip() for part in header.split(";"))
    base = base.lower()
    if base not in CONTENT_TYPES:
        raise UnsupportedMediaType(f"{base!r} is not an accepted recording type; accepted: {allowed}",
                                   [FieldError("content-type", f"{base!r} not accepted")])
    ext, codecs_ok = CONTENT_TYPES[base]
    codecs: list[str] = []
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "codecs":
            codecs = [c.strip().lower() for c in value.strip().strip('"').split(",") if c.strip()]
    bad = [c for c in codecs if c not in codecs_ok]
    if bad:
        raise UnsupportedMediaType(f"codec(s) {bad} are not accepted in {base}",
                                   [FieldError("content-type", f"codec(s) {bad} not accepted")])
    return AudioType(f"{base};codecs={','.join(codecs)}" if codecs else base, ext)


def parse_chunk_number(raw: str | None) -> int:
    if raw is None or not raw.isdigit() or int(raw) > MAX_CHUNK_NUMBER:
        raise ValidationFailed("'chunk' must be the chunk's number, 0 and up",
                               [FieldError("chunk", f"expected an integer 0..{MAX_CHUNK_NUMBER}")])
    return int(raw)


def parse_start(raw: str | None, chunk: int) -> float | None:
    if raw is None:
        if chunk == 0:
            raise ValidationFailed("chunk 0 needs 'start', the browser's time (ms since the epoch) recording began",
                                   [FieldError("start", "required on chunk 0")])
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1e14:
        raise ValidationFailed("'start' must be ms since the epoch",
                               [FieldError("start", "expected ms since the epoch")])
    return value


@dataclass(frozen=True)
class Limits:
    max_chunk_bytes: int
    max_session_bytes: int
    max_duration_s: float
    grace_s: float


class Verdict:
    STORE: ClassVar[str] = "store"
    DUPLICATE: ClassVar[str] = "duplicate"


def check(state: SessionState, chunk: int, audio: AudioType, declared: int | None, now_ns: int,
          limits: Limits) -> str:
    """What to do with chunk ``chunk`` of this session, or the refusal, before a byte of it is read."""
    rec = state.recording
    if rec is None:
        raise Forbidden("this session does not record audio: the app did not ask for it (record_audio) at its start")
    if state.ended and state.ended_at_ns is not None and now_ns - state.ended_at_ns > limits.grace_s * 1e9:
        raise Conflict(f"the session ended more than {limits.grace_s:g} s ago; its recording is closed")
    if chunk < rec.chunks:
        return Verdict.DUPLICATE
    if chunk > rec.chunks:
        raise Conflict(f"chunk {chunk} is ahead of the recording: the next one expected is {rec.chunks}",
                       [FieldError("chunk", f"expected {rec.chunks}")])
    if rec.content_type is not None and rec.content_type != audio.mime:
        raise Conflict(f"the recording is {rec.content_type}; a chunk cannot switch to {audio.mime}",
                       [FieldError("content-type", f"expected {rec.content_type}")])
    if now_ns - state.start_ns > (limits.max_duration_s + limits.grace_s) * 1e9:
        raise PayloadTooLarge(f"the recording is past its {limits.max_duration_s:g} s limit")
    if declared is not None and declared > limits.max_chunk_bytes:
        raise PayloadTooLarge(f"the chunk is {declared} bytes; the limit is {limits.max_chunk_bytes}")
    if rec.bytes + (declared or 0) > limits.max_session_bytes:
        raise PayloadTooLarge(f"the recording would pass its {limits.max_session_bytes} byte limit")
    return Verdict.STORE


class CountingBody:
    """The request body on its way to the store, counted: past the limit the upload aborts (and stores nothing)."""

    def __init__(self, stream: AsyncIterator[bytes], limit: int, what: str) -> None:
        self._stream = stream
        self._limit = limit
        self._what = what
        self.size = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for piece in self._stream:
            self.size += len(piece)
            if self.size > self._limit:
                raise PayloadTooLarge(f"the chunk is over {self._what}, {self._limit} bytes")
            if piece:
                yield piece


def commit(state: SessionState, chunk: int, audio: AudioType, size: int, start_ms: float | None) -> dict[str, Any]:
    """Record a stored chunk in the session (inside the store's atomic mutate)."""
    rec = state.recording
    assert rec is not None
    if chunk < rec.chunks:  # the same chunk, stored twice by two concurrent retries: counted once
        return {"chunk": chunk, "duplicate": True, "next": rec.chunks}
    rec.chunks = chunk + 1
    rec.bytes += size
    rec.content_type = audio.mime
    if rec.started_ms is None and start_ms is not None:
        rec.started_ms = start_ms
    return {"chunk": chunk, "bytes": size, "next": rec.chunks}
