"""Recordings as the API sees them: take a chunk, serve a recording, delete one, sweep old ones.

Nothing here is on the event path: a failing object store costs uploads (503, retried by the browser) and
counts ``vtg_recording_storage_failures``, while events, sessions and spans go on as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from gateway.errors import Forbidden, NotFound, RequestError
from gateway.recordings import uploads
from gateway.recordings.langfuse_media import LangfuseTarget, MediaPublisher
from gateway.recordings.links import RecordingLinks
from gateway.recordings.metrics import RecordingMetrics
from gateway.recordings.store import MIME_BY_EXT, RecordingStore, StorageUnavailable, StoredChunk
from gateway.semconv import RECORDING_CHANNEL_LAYOUT
from gateway.sessions.state import RecordingState
from gateway.sessions.store import SessionStore
from gateway.settings import GatewaySettings

log = logging.getLogger("gateway.recordings")


def recording_allowed(settings: GatewaySettings, consent: bool) -> bool:
    """Twice opted in: the operator captures audio, and the app asked for this session."""
    return consent and settings.captures("audio")


def new_state(settings: GatewaySettings, consent: bool) -> RecordingState | None:
    """A new session's recording state: None unless audio is recorded for it."""
    return RecordingState() if recording_allowed(settings, consent) else None


def session_answer(settings: GatewaySettings, consent: bool) -> dict[str, Any]:
    """The ``recording`` field of the session-creation answer."""
    if not consent:
        return {"enabled": False, "reason": "not requested: start the session with record_audio"}
    if not settings.captures("audio"):
        return {"enabled": False, "reason": "audio capture is off on this gateway (capture_content lacks audio)"}
    return {
        "enabled": True,
        "channel_layout": RECORDING_CHANNEL_LAYOUT,
        "content_types": sorted(uploads.CONTENT_TYPES),
        "max_chunk_bytes": settings.recording_max_chunk_bytes,
        "max_bytes": settings.recording_max_session_bytes,
        "max_duration_s": settings.recording_max_duration_s,
        "grace_s": settings.recording_grace_s,
    }


def links_for(settings: GatewaySettings) -> RecordingLinks:
    return RecordingLinks(settings.signing_key, settings.recording_link_ttl_s, settings.recording_public_url,
                          settings.previous_signing_keys)


@dataclass(frozen=True)
class Playback:
    """A recording to stream: its chunks in order, the byte range asked for, and its type."""

    chunks: list[StoredChunk]
    total: int
    start: int
    end: int  # exclusive
    media_type: str


class Recordings:
    def __init__(self, settings: GatewaySettings, sessions: SessionStore, registry: CollectorRegistry,
                 store: RecordingStore | None = None, clock: Callable[[], int] | None = None,
                 langfuse: LangfuseTarget | None = None) -> None:
        self.settings = settings
        self.sessions = sessions
        self.metrics = RecordingMetrics(registry)
        self.links = links_for(settings)
        self.enabled = settings.captures("audio")
        # Opened only when audio is captured: a gateway that never records needs no store, nor its config.
        self.store = store if store is not None else (RecordingStore.open(settings.recording_store)
                                                      if self.enabled else None)
        self.clock = clock or time.time_ns
        # The whole call as media on its Langfuse trace, when Langfuse is an exporter (langfuse_media.py).
        self.publisher = (MediaPublisher(langfuse, self.store, sessions, self.metrics, settings.recording_grace_s,
                                         self.clock) if langfuse is not None and self.store is not None else None)
        self.limits = uploads.Limits(settings.recording_max_chunk_bytes, settings.recording_max_session_bytes,
                                     settings.recording_max_duration_s, settings.recording_grace_s)

    def _refuse(self, exc: RequestError) -> RequestError:
        self.metrics.rejected.labels(exc.slug).inc()
        return exc

    async def upload(self, session_id: str, chunk_raw: str | None, start_raw: str | None, content_type: str | None,
                     declared: int | None, body: AsyncIterator[bytes]) -> tuple[int, dict[str, Any]]:
        """Take one chunk; returns (HTTP status, answer)."""
        try:
            if not self.enabled or self.store is None:
                raise Forbidden("this gateway does not record audio (capture_content lacks audio)")
            chunk = uploads.parse_chunk_number(chunk_raw)
            start_ms = uploads.parse_start(start_raw, chunk)
            audio = uploads.parse_content_type(content_type)
            state = await self.sessions.get(session_id)
            if state is None:
                raise NotFound(f"no session {session_id!r}")
            verdict = uploads.check(state, chunk, audio, declared, self.clock(), self.limits)
        except RequestError as exc:
            raise self._refuse(exc) from None
        if verdict == uploads.Verdict.DUPLICATE:
            self.metrics.chunks.labels("duplicate").inc()
            return 200, {"chunk": chunk, "duplicate": True, "next": state.recording.chunks if state.recording else 0}
        rec = state.recording
        assert rec is not None
        room = min(self.limits.max_chunk_bytes, self.limits.max_session_bytes - rec.bytes)
        what = "the per-chunk limit" if room == self.limits.max_chunk_bytes else "the recording's remaining room"
        counted = uploads.CountingBody(body, room, what)
        try:
            await self.store.put_chunk(session_id, chunk, audio.ext, counted)
        except StorageUnavailable as exc:
            self.metrics.storage_failures.labels("put").inc()
            log.warning("recording chunk %d of session %s not stored: %s", chunk, session_id, exc)
            raise self._refuse(uploads.StorageFailed("the recording store is unavailable; retry later")) from None
        except RequestError as exc:
            raise self._refuse(exc) from None
        answer = await self.sessions.mutate(
            session_id, lambda s: uploads.commit(s, chunk, audio, counted.size, start_ms))
        if answer is None:  # the session was forgotten while its chunk streamed in
            raise self._refuse(NotFound(f"no session {session_id!r}"))
        duplicate = bool(answer.get("duplicate"))
        self.metrics.chunks.labels("duplicate" if duplicate else "stored").inc()
        if not duplicate:
            self.metrics.bytes.inc(counted.size)
            if self.publisher is not None:
                self.publisher.remember(session_id, state.trace.trace_id)
        return (200 if duplicate else 201), answer

    async def playback(self, session_id: str, range_header: str | None) -> Playback:
        if self.store is None:
            raise NotFound("this gateway does not record audio")
        try:
            chunks = await self.store.chunks(session_id)
        except StorageUnavailable as exc:
            self.metrics.storage_failures.labels("list").inc()
            raise uploads.StorageFailed(f"the recording store is unavailable: {exc}") from None
        # Only the unbroken run from chunk 0 plays: a gap (a chunk lost for good) ends the recording there.
        run: list[StoredChunk] = []
        for chunk in chunks:
            if chunk.number != len(run):
                break
            run.append(chunk)
        if not run:
            raise NotFound(f"no recording for session {session_id!r}")
        total = sum(c.size for c in run)
        start, end = _byte_range(range_header, total)
        return Playback(run, total, start, end, MIME_BY_EXT.get(run[0].ext, "application/octet-stream"))

    async def stream(self, session_id: str, playback: Playback) -> AsyncIterator[bytes]:
        assert self.store is not None
        offset = 0
        try:
            for chunk in playback.chunks:
                lo, hi = max(playback.start - offset, 0), min(playback.end - offset, chunk.size)
                if lo < hi:
                    async for piece in self.store.read(session_id, chunk, lo, hi):
                        yield piece
                offset += chunk.size
                if offset >= playback.end:
                    break
        except StorageUnavailable as exc:
            # The status line is gone already: the response ends short, which a player reports as a network error.
            self.metrics.storage_failures.labels("get").inc()
            log.warning("recording of session %s cut short: %s", session_id, exc)

    async def delete(self, session_id: str) -> int:
        if self.store is None:
            return 0
        try:
            count = await self.store.delete(session_id)
        except StorageUnavailable as exc:
            self.metrics.storage_failures.labels("delete").inc()
            raise uploads.StorageFailed(f"the recording store is unavailable: {exc}") from None
        if count:
            self.metrics.deleted.labels("request").inc()
        return count

    async def sweep(self) -> int:
        """Delete recordings past ``recording_retention_days``."""
        if self.store is None or self.settings.recording_retention_days <= 0:
            return 0
        cutoff = datetime.fromtimestamp(self.clock() / 1e9, UTC) - timedelta(
            days=self.settings.recording_retention_days)
        try:
            count = await self.store.sweep(cutoff)
        except StorageUnavailable as exc:
            self.metrics.storage_failures.labels("sweep").inc()
            log.warning("recording retention sweep failed: %s", exc)
            return 0
        if count:
            self.metrics.deleted.labels("retention").inc(count)
            log.info("deleted %d recordings past %g days", count, self.settings.recording_retention_days)
        return count


async def publish_forever(recordings: Recordings) -> None:
    """Publish finished recordings to Langfuse, a few times per grace window."""
    if recordings.publisher is None:
        return
    interval = max(1.0, recordings.settings.recording_grace_s / 3)
    while True:
        await asyncio.sleep(interval)
        try:
            await recordings.publisher.publish_due()
        except Exception:
            log.exception("publishing recordings to Langfuse failed; retrying next interval")


class RangeNotSatisfiable(RequestError):
    status = 416
    title = "Range not satisfiable"
    slug = "range-not-satisfiable"


def _byte_range(header: str | None, total: int) -> tuple[int, int]:
    """One ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range (what media players send); else the whole."""
    if not header or not header.startswith("bytes=") or "," in header:
        return 0, total
    first, _, last = header[6:].strip().partition("-")
    try:
        if first == "":
            n = int(last)
            return max(total - n, 0), total
        start = int(first)
        end = min(int(last) + 1, total) if last else total
    except ValueError:
        return 0, total
    if start >= total or end <= start:
        raise RangeNotSatisfiable(f"the recording has {total} bytes")
    return start, end
