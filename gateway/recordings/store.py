"""Where recordings live: an object store reached through ``obstore`` (Rust ``object_store`` bindings).

One layout for every backend: ``<session key>/<chunk number, 8 digits>.<ext>``. The chunks of a recording are
the browser's MediaRecorder output in order, so concatenated they are one playable file; reading the chunk
list from the store (not from the session state) keeps a recording playable long after its session is
forgotten, from any replica.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import obstore
from obstore.exceptions import BaseError
from obstore.store import LocalStore, S3Store

from gateway.errors import ConfigError

if TYPE_CHECKING:
    from obstore.store import ObjectStore

DEFAULT_DIR = Path("data") / "recordings"
MIME_BY_EXT = {"webm": "audio/webm", "ogg": "audio/ogg", "m4a": "audio/mp4", "wav": "audio/wav"}
_CHUNK = re.compile(r"^(\d{8})\.([a-z0-9]+)$")
# A store that does not answer fails the upload quickly, rather than holding the browser's request open.
_RETRY = {"max_retries": 2, "retry_timeout": timedelta(seconds=10)}
_CLIENT = {"connect_timeout": "5s", "timeout": "60s"}


_STORE_ERRORS = (BaseError, OSError)


class StorageUnavailable(Exception):
    """The object store failed an operation (network, credentials, disk)."""


@dataclass(frozen=True)
class StoredChunk:
    number: int
    ext: str
    size: int
    last_modified: datetime


def session_key(session_id: str) -> str:
    # Session ids are [A-Za-z0-9._:-]; "." and ".." are not valid object path segments, so every key gets a prefix.
    return f"s-{session_id}"


def open_object_store(url: str) -> ObjectStore:
    """``file:///dir`` or ``s3://bucket/prefix``; empty: ``./data/recordings``. S3 takes the usual AWS_* variables
    (AWS_ENDPOINT_URL for an S3-compatible server; plain http is allowed only for such an explicit endpoint)."""
    key = "distribution.voice_gateway.recording_store"
    if not url:
        url = DEFAULT_DIR.resolve().as_uri()
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
        # file://dir/x names host "dir": only file:///abs/path (or file://localhost/abs/path) is a local directory.
        if parsed.netloc not in ("", "localhost") or not path.is_absolute():
            raise ConfigError(key, f"expected file:///absolute/path, got {url!r}")
        try:
            return LocalStore(path, mkdir=True)
        except Exception as exc:
            raise ConfigError(key, f"cannot use {url!r}: {exc}") from None
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigError(key, f"expected s3://bucket/prefix, got {url!r}")
        client: dict[str, Any] = dict(_CLIENT)
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
        if endpoint.startswith("http://"):
            client["allow_http"] = True
        try:
            return S3Store.from_url(url, client_options=client, retry_config=_RETRY)  # type: ignore[arg-type]
        except Exception as exc:
            raise ConfigError(key, f"cannot use {url!r}: {exc}") from None
    raise ConfigError(key, f"expected file:///path or s3://bucket/prefix, got {url!r}")


class RecordingStore:
    def __init__(self, store: ObjectStore, description: str) -> None:
        self._store = store
        self.description = description

    @classmethod
    def open(cls, url: str) -> RecordingStore:
        return cls(open_object_store(url), url or DEFAULT_DIR.resolve().as_uri())

    async def put_chunk(self, session_id: str, number: int, ext: str, body: AsyncIterable[bytes]) -> None:
        """Stream one chunk in; the object appears whole or not at all. A body that raises aborts the upload."""
        path = f"{session_key(session_id)}/{number:08d}.{ext}"
        # An exception the body raises (a limit) comes back out of put_async as itself, the upload aborted.
        try:
            await obstore.put_async(self._store, path, body)
        except _STORE_ERRORS as exc:
            raise StorageUnavailable(str(exc)) from exc

    async def chunks(self, session_id: str) -> list[StoredChunk]:
        found: list[StoredChunk] = []
        try:
            async for batch in obstore.list(self._store, f"{session_key(session_id)}/"):
                for meta in batch:
                    name = meta["path"].rpartition("/")[2]
                    match = _CHUNK.match(name)
                    if match:
                        found.append(StoredChunk(int(match[1]), match[2], meta["size"], meta["last_modified"]))
        except _STORE_ERRORS as exc:
            raise StorageUnavailable(str(exc)) from exc
        return sorted(found, key=lambda c: c.number)

    async def read(self, session_id: str, chunk: StoredChunk, start: int = 0, end: int | None = None
                   ) -> AsyncIterator[bytes]:
        """One chunk's bytes [start, end), streamed."""
        path = f"{session_key(session_id)}/{chunk.number:08d}.{chunk.ext}"
        stop = chunk.size if end is None else end
        if stop <= start:
            return
        try:
            result = await obstore.get_async(self._store, path, options={"range": (start, stop)})
            async for buf in result.stream(min_chunk_size=64 * 1024):
                yield bytes(buf)
        except _STORE_ERRORS as exc:
            raise StorageUnavailable(str(exc)) from exc

    async def delete(self, session_id: str) -> int:
        chunks = await self.chunks(session_id)
        paths = [f"{session_key(session_id)}/{c.number:08d}.{c.ext}" for c in chunks]
        await self._delete(paths)
        return len(paths)

    async def sweep(self, older_than: datetime) -> int:
        """Delete every recording whose last chunk was written before ``older_than``, whole; returns how many."""
        newest: dict[str, datetime] = {}
        paths: dict[str, list[str]] = {}
        try:
            async for batch in obstore.list(self._store):
                for meta in batch:
                    key = meta["path"].partition("/")[0]
                    paths.setdefault(key, []).append(meta["path"])
                    if key not in newest or meta["last_modified"] > newest[key]:
                        newest[key] = meta["last_modified"]
        except _STORE_ERRORS as exc:
            raise StorageUnavailable(str(exc)) from exc
        stale = [key for key, when in newest.items() if when < older_than]
        await self._delete(p for key in stale for p in paths[key])
        return len(stale)

    async def _delete(self, paths: Iterable[str]) -> None:
        batch = list(paths)
        for i in range(0, len(batch), 1000):  # S3 DeleteObjects takes at most 1000 keys
            try:
                await obstore.delete_async(self._store, batch[i:i + 1000])
            except _STORE_ERRORS as exc:
                raise StorageUnavailable(str(exc)) from exc
