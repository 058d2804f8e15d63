"""The whole call as Langfuse media on its trace, through Langfuse's media API.

Once a recorded session has ended and its grace window for late chunks has passed, the recording is complete:

    POST  {host}/api/public/media        {traceId, contentType, contentLength, sha256Hash, field: "metadata"}
                                         → {mediaId, uploadUrl}; uploadUrl is null when Langfuse has these bytes
    PUT   {uploadUrl}                    the bytes, Content-Type and X-Amz-Checksum-Sha256 (a presigned URL: no auth)
    PATCH {host}/api/public/media/{id}   {uploadedAt, uploadHttpStatus, uploadHttpError, uploadTimeMs}

with the Langfuse exporter's Basic auth (its host and keys, from LANGFUSE_BASE_URL / LANGFUSE_HOST,
LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY). The hash is SHA-256, base64, computed in a first pass over the stored
chunks; the upload streams them again, so the recording is never held whole in memory.

Hand-written over httpx rather than the ``langfuse`` package: its media support (``LangfuseMedia``) uploads media
found in the observations its own SDK creates, while these spans are built by the gateway and the audio arrives
after its trace was exported; the three documented requests are all that is needed.

Which sessions to publish is remembered in this process only (a session whose chunks this replica took): after a
restart, calls that ended in between are not published (their recordings stay in the store, linked from the trace).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from gateway.recordings.metrics import RecordingMetrics
from gateway.recordings.store import MIME_BY_EXT, RecordingStore, StoredChunk
from gateway.sessions.store import SessionStore

log = logging.getLogger("gateway.recordings.langfuse")

MEDIA_PATH = "/api/public/media"
MAX_WAITING = 10_000  # sessions remembered for publishing; the oldest goes first past it


@dataclass(frozen=True)
class LangfuseTarget:
    base_url: str
    authorization: str
    timeout_s: float = 30.0


def target_from_env() -> LangfuseTarget:
    """The Langfuse exporter's host and keys, by its own rules (a missing key is its ConfigError)."""
    from gateway.exporters.langfuse import _api_keys, _base_url

    public, secret = _api_keys(None, None)
    token = base64.b64encode(f"{public}:{secret}".encode()).decode("ascii")
    return LangfuseTarget(_base_url(None), f"Basic {token}")


class MediaPublisher:
    def __init__(self, target: LangfuseTarget, store: RecordingStore, sessions: SessionStore,
                 metrics: RecordingMetrics, grace_s: float, clock: Callable[[], int]) -> None:
        self.target = target
        self.store = store
        self.sessions = sessions
        self.metrics = metrics
        self.grace_s = grace_s
        self.clock = clock
        self._waiting: OrderedDict[str, str] = OrderedDict()  # session id → trace id

    def remember(self, session_id: str, trace_id: str) -> None:
        self._waiting[session_id] = trace_id
        while len(self._waiting) > MAX_WAITING:
            dropped, _ = self._waiting.popitem(last=False)
            log.warning("not publishing the recording of session %s to Langfuse: too many waiting", dropped)

    async def publish_due(self) -> int:
        """Publish every remembered recording whose session ended more than the grace window ago."""
        published = 0
        now = self.clock()
        for session_id, trace_id in list(self._waiting.items()):
            state = await self.sessions.get(session_id)
            if state is not None and not (state.ended and state.ended_at_ns is not None
                                          and now - state.ended_at_ns > self.grace_s * 1e9):
                continue
            del self._waiting[session_id]
            try:
                await self.publish(session_id, trace_id)
                published += 1
                self.metrics.langfuse_media.labels("published").inc()
            except Exception as exc:  # one failed publication never stops the others
                self.metrics.langfuse_media.labels("failed").inc()
                log.warning("recording of session %s not published to Langfuse: %s", session_id, exc)
        return published

    async def publish(self, session_id: str, trace_id: str) -> str:
        chunks: list[StoredChunk] = []
        for chunk in await self.store.chunks(session_id):
            if chunk.number != len(chunks):
                break
            chunks.append(chunk)
        if not chunks:
            raise LookupError("no recording stored")
        content_type = MIME_BY_EXT.get(chunks[0].ext, "application/octet-stream")
        size = sum(c.size for c in chunks)
        digest = hashlib.sha256()
        async for piece in self._bytes(session_id, chunks):
            digest.update(piece)
        sha256 = base64.b64encode(digest.digest()).decode("ascii")
        headers = {"authorization": self.target.authorization}
        async with httpx.AsyncClient(timeout=self.target.timeout_s) as client:
            created = await client.post(f"{self.target.base_url}{MEDIA_PATH}", headers=headers, json={
                "traceId": trace_id, "contentType": content_type, "contentLength": size, "sha256Hash": sha256,
                "field": "metadata",
            })
            created.raise_for_status()
            answer: dict[str, Any] = created.json()
            media_id = str(answer["mediaId"])
            upload_url = answer.get("uploadUrl")
            if not upload_url:
                return media_id  # Langfuse already holds these bytes
            started = time.monotonic()
            error: str | None = None
            try:
                put = await client.put(upload_url, content=self._bytes(session_id, chunks), headers={
                    "content-type": content_type, "content-length": str(size), "x-amz-checksum-sha256": sha256})
                status = put.status_code
                if status >= 300:
                    error = put.text[:500] or f"HTTP {status}"
            except httpx.HTTPError as exc:
                status, error = 0, str(exc) or type(exc).__name__
            patched = await client.patch(f"{self.target.base_url}{MEDIA_PATH}/{media_id}", headers=headers, json={
                "uploadedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "uploadHttpStatus": status, "uploadHttpError": error,
                "uploadTimeMs": round((time.monotonic() - started) * 1000)})
            patched.raise_for_status()
            if error is not None:
                raise RuntimeError(f"the upload to Langfuse's storage failed: {error}")
        return media_id

    async def _bytes(self, session_id: str, chunks: list[StoredChunk]) -> AsyncIterator[bytes]:
        for chunk in chunks:
            async for piece in self.store.read(session_id, chunk):
                yield piece
