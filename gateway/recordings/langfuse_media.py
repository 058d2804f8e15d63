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

Each turn's audio then goes on its observation (the turn's span: Langfuse's observation id is the span id): the
turn's user clip (left channel) as media of its ``input``, the model clip (right) of its ``output``, cut by
``turn_clips`` into Ogg Opus, each through the same three requests with ``observationId`` and ``field``. Langfuse's
media id is the first 22 characters of the URL-safe base64 SHA-256, which it answers; the observation then gets
the media reference strings (``@@@langfuseMedia:type=audio/ogg|id=...|source=bytes@@@``) in its input and output
through the ingestion API (``POST /api/public/ingestion``, one ``span-update`` per turn: ``{id, traceId, input:
{messages, audio}, output: {messages, audio}}``, ``messages`` the turn's gen_ai messages when content is captured),
since the span left for Langfuse before its audio was complete.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import tempfile
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from gateway.recordings import turn_clips
from gateway.recordings.metrics import RecordingMetrics
from gateway.recordings.store import MIME_BY_EXT, RecordingStore, StoredChunk
from gateway.sessions.store import SessionStore

log = logging.getLogger("gateway.recordings.langfuse")

MEDIA_PATH = "/api/public/media"
INGESTION_PATH = "/api/public/ingestion"
FILE_PIECE = 64 * 1024
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
        turn_clips.TURNS.enable()  # turns of recorded calls are noted from now on, for their clips

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
        async with httpx.AsyncClient(timeout=self.target.timeout_s) as client:
            media_id = await self._send(client, {"traceId": trace_id, "field": "metadata"}, content_type, size,
                                        digest.digest(), lambda: self._bytes(session_id, chunks))
            turns = turn_clips.TURNS.pop(session_id)
            if turns:
                try:
                    await self._publish_turns(client, session_id, trace_id, chunks, turns)
                except Exception as exc:  # the call is published; its turns' references are what failed
                    log.warning("turns of session %s not updated in Langfuse: %s", session_id, exc)
        return media_id

    async def _send(self, client: httpx.AsyncClient, link: dict[str, str], content_type: str, size: int,
                    sha256: bytes, body: Callable[[], AsyncIterator[bytes]]) -> str:
        """The three documented requests for one medium; returns Langfuse's media id."""
        hash_b64 = base64.b64encode(sha256).decode("ascii")
        headers = {"authorization": self.target.authorization}
        # link: traceId and field, and observationId for media on an observation rather than the trace.
        created = await client.post(f"{self.target.base_url}{MEDIA_PATH}", headers=headers, json={
            **link, "contentType": content_type, "contentLength": size, "sha256Hash": hash_b64})
        created.raise_for_status()
        answer: dict[str, Any] = created.json()
        media_id = str(answer["mediaId"])
        upload_url = answer.get("uploadUrl")
        if not upload_url:
            return media_id  # Langfuse already holds these bytes
        started = time.monotonic()
        error: str | None = None
        try:
            put = await client.put(upload_url, content=body(), headers={
                "content-type": content_type, "content-length": str(size), "x-amz-checksum-sha256": hash_b64})
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

    async def _publish_turns(self, client: httpx.AsyncClient, session_id: str, trace_id: str,
                             chunks: list[StoredChunk], turns: list[turn_clips.TurnRange]) -> None:
        """Each turn's user and model clips as media on its observation, then the references on its input/output.
        A turn that fails is counted and skipped; the others go on."""
        with tempfile.TemporaryDirectory(prefix="vtg-turns-") as tmp:
            workdir = Path(tmp)
            source = workdir / f"call.{chunks[0].ext}"
            with source.open("wb") as f:  # spooled to disk: the recording is never held in memory
                async for piece in self._bytes(session_id, chunks):
                    f.write(piece)
            try:
                clips = await asyncio.to_thread(turn_clips.cut, source, turns, workdir)
            except Exception as exc:
                self.metrics.langfuse_media.labels("turn_failed").inc(len(turns))
                log.warning("recording of session %s not cut into turns: %s", session_id, exc)
                return
            updates: list[dict[str, Any]] = []
            for clip in clips:
                try:
                    refs = {}
                    for field, path in (("input", clip.user), ("output", clip.model)):
                        media_id = await self._send_file(client, trace_id, clip.turn.span_id, field, path)
                        refs[field] = f"@@@langfuseMedia:type={turn_clips.CLIP_TYPE}|id={media_id}|source=bytes@@@"
                    updates.append(_observation_update(trace_id, clip.turn, refs))
                    self.metrics.langfuse_media.labels("turn_published").inc()
                except Exception as exc:
                    self.metrics.langfuse_media.labels("turn_failed").inc()
                    log.warning("turn %s of session %s not published to Langfuse: %s", clip.turn.span_id,
                                session_id, exc)
            if updates:
                r = await client.post(f"{self.target.base_url}{INGESTION_PATH}",
                                      headers={"authorization": self.target.authorization}, json={"batch": updates})
                r.raise_for_status()
                refused = r.json().get("errors") if r.status_code == 207 else None
                if refused:  # the media are on the observations all the same; only the references are missing
                    log.warning("Langfuse refused %d observation update(s) of session %s: %s", len(refused),
                                session_id, str(refused)[:500])

    async def _send_file(self, client: httpx.AsyncClient, trace_id: str, observation_id: str, field: str,
                         path: Path) -> str:
        digest = hashlib.sha256(path.read_bytes()).digest()  # a clip: ten minutes at most, 2.4 MB

        async def body() -> AsyncIterator[bytes]:
            with path.open("rb") as f:
                while piece := f.read(FILE_PIECE):
                    yield piece

        return await self._send(client, {"traceId": trace_id, "observationId": observation_id, "field": field},
                                turn_clips.CLIP_TYPE, path.stat().st_size, digest, body)

    async def _bytes(self, session_id: str, chunks: list[StoredChunk]) -> AsyncIterator[bytes]:
        for chunk in chunks:
            async for piece in self.store.read(session_id, chunk):
                yield piece


def _observation_update(trace_id: str, turn: turn_clips.TurnRange, refs: dict[str, str]) -> dict[str, Any]:
    """A ``span-update`` ingestion event: the turn's input and output with their audio's media references."""

    def side(messages: str | None, ref: str) -> dict[str, Any]:
        try:
            parsed = json.loads(messages) if messages else None
        except ValueError:
            parsed = messages
        return {"messages": parsed, "audio": ref} if parsed is not None else {"audio": ref}

    return {
        "id": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "type": "span-update",
        "body": {"id": turn.span_id, "traceId": trace_id, "input": side(turn.input_messages, refs["input"]),
                 "output": side(turn.output_messages, refs["output"])},
    }
