"""Signed, expiring links to a session's recording, served by the gateway itself.

``/v1/recordings/{session_id}?exp=<unix s>&sig=<hex>``: the signature is HMAC-SHA256 over
``session_id\\nexp`` with a key derived from the gateway's signing key, so every replica sharing the key
verifies any replica's links, a link names exactly one recording, and the admin key never leaves the server.
A rotated-out key (``previous_signing_keys``) still verifies the links it signed until they expire.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from urllib.parse import quote

from gateway.errors import Forbidden

_CONTEXT = b"voice-trace-gateway/recording-link"


def _derive(key: str) -> bytes:
    # A separate key per purpose: a recording signature can never pass as an ingest token's, nor the reverse.
    return hmac.new(key.encode(), _CONTEXT, hashlib.sha256).digest()


class RecordingLinks:
    def __init__(self, key: str, ttl_s: float, base_url: str = "", previous_keys: Iterable[str] = ()) -> None:
        self._key = _derive(key)
        self._keys = [self._key, *(_derive(k) for k in previous_keys)]
        self._ttl_s = ttl_s
        self._base = base_url.rstrip("/")

    def path(self, session_id: str) -> str:
        return f"/v1/recordings/{quote(session_id, safe='')}"

    def _sign(self, key: bytes, session_id: str, exp: int) -> str:
        return hmac.new(key, f"{session_id}\n{exp}".encode(), hashlib.sha256).hexdigest()

    def url(self, session_id: str, now: float | None = None) -> str:
        exp = int((time.time() if now is None else now) + self._ttl_s)
        return f"{self._base}{self.path(session_id)}?exp={exp}&sig={self._sign(self._key, session_id, exp)}"

    def verify(self, session_id: str, exp: str | None, sig: str | None, now: float | None = None) -> None:
        if not exp or not sig or not exp.isdigit():
            raise Forbidden("a recording link needs its 'exp' and 'sig' parameters")
        if int(exp) < (time.time() if now is None else now):
            raise Forbidden("this recording link has expired")
        if not any(hmac.compare_digest(self._sign(k, session_id, int(exp)), sig) for k in self._keys):
            raise Forbidden("this recording link's signature does not verify")


def media_fragment(url: str, start_s: float, end_s: float) -> str:
    """A W3C Media Fragments temporal range (``#t=start,end``, seconds), which players seek to."""
    return f"{url}#t={max(0.0, start_s):.3f},{max(0.0, end_s):.3f}"
