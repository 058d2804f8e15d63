"""Ingest tokens: a signed JWT scoped to one session, with expiry.

The token is handed to the browser at session start and proves on every event
and end request that the caller may write into that session and no other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from gateway.errors import Forbidden, Unauthorized

_ALGORITHM = "HS256"
_AUDIENCE = "voice-trace-gateway/ingest"


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: float


class TokenSigner:
    def __init__(self, key: str, ttl_s: float) -> None:
        self._key = key
        self._ttl_s = ttl_s

    def issue(self, session_id: str, now: float | None = None) -> IssuedToken:
        now = time.time() if now is None else now
        expires = now + self._ttl_s
        claims = {"sid": session_id, "aud": _AUDIENCE, "iat": int(now), "exp": int(expires)}
        return IssuedToken(jwt.encode(claims, self._key, algorithm=_ALGORITHM), float(int(expires)))

    def verify(self, token: str | None, session_id: str) -> None:
        """Raise Unauthorized for a missing or invalid token, Forbidden for another session's token."""
        if not token:
            raise Unauthorized("an ingest token is required: 'Authorization: Bearer <token>' or '?token='")
        try:
            claims = jwt.decode(token, self._key, algorithms=[_ALGORITHM], audience=_AUDIENCE)
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the ingest token has expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the ingest token is invalid: {exc}") from None
        if claims.get("sid") != session_id:
            raise Forbidden("the ingest token belongs to another session")
