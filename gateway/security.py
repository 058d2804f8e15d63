"""Who may write what: ingest tokens, API keys for session creation, client addresses, CORS.

Ingest tokens are JWTs (HS256) scoped to one session, with expiry. Each key is
known by an id derived from the key itself (so replicas sharing a key agree
on it without naming it); the id travels in the token's ``kid`` header. One
key signs; the previous ones still verify, which is how keys rotate without
cutting live sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

import jwt

from gateway.bounded import BoundedMap
from gateway.errors import Forbidden, Unauthorized

_ALGORITHM = "HS256"
_HOT_TOKENS = 1024
_AUDIENCE = "voice-trace-gateway/ingest"


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: float


class TokenSigner:
    def __init__(self, key: str, ttl_s: float, previous_keys: Iterable[str] = (), cache_size: int = 40_000) -> None:
        self._kid = key_id(key)
        self._key = key
        self._keys = {key_id(k): k for k in (*previous_keys, key)}
        self._ttl_s = ttl_s
        # A browser presents the same token on every request: verifying it once is enough. The key is a 128-bit
        # digest of the session id and the whole token (the token itself would be most of an idle session's
        # memory), the value its expiry: a hit means "valid for this session until then". A token whose header or
        # payload was altered, or presented for another session, digests differently and is verified (and
        # refused). Only tokens that verified are remembered, so a forged one never is.
        # Every token used within the last ``cache_size / 2`` new ones stays (gateway.bounded).
        self._verified: BoundedMap[bytes, float] = BoundedMap(cache_size)
        # In front of it, the tokens of the sessions posting right now, by the token itself: a dict lookup on the
        # exact string instead of a digest per request. Bounded by starting over when full (no per-session cost).
        self._hot: dict[str, tuple[str, float]] = {}
        self._last_expiry = 0.0

    def issue(self, session_id: str, now: float | None = None) -> IssuedToken:
        now = time.time() if now is None else now
        expires = int(now + self._ttl_s)
        claims = {"sid": session_id, "aud": _AUDIENCE, "iat": int(now), "exp": expires}
        token = jwt.encode(claims, self._key, algorithm=_ALGORITHM, headers={"kid": self._kid})
        # Known good from birth: the session's first request skips the signature check.
        self._remember(token, session_id, float(expires))
        return IssuedToken(token, float(expires))

    def _remember(self, token: str, session_id: str, expires: float) -> None:
        # Tokens issued within the same second expire together: they share one float instead of one each.
        if expires == self._last_expiry:
            expires = self._last_expiry
        else:
            self._last_expiry = expires
        self._verified.put(_digest(session_id, token), expires)

    def verify(self, token: str | None, session_id: str) -> None:
        """Raise Unauthorized for a missing or invalid token, Forbidden for another session's token."""
        if not token:
            raise Unauthorized("an ingest token is required: 'Authorization: Bearer <token>' or '?token='")
        known = self._hot.get(token)
        if known is None:
            expires = self._verified.get(_digest(session_id, token))
            if expires is not None:
                if len(self._hot) >= _HOT_TOKENS:
                    self._hot.clear()
                known = self._hot[token] = (session_id, expires)
        if known is not None and known[1] > time.time():
            if known[0] != session_id:
                raise Forbidden("the ingest token belongs to another session")
            return
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._keys.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise Unauthorized("the ingest token was signed with a key this gateway does not hold")
            claims = jwt.decode(token, key, algorithms=[_ALGORITHM], audience=_AUDIENCE)
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the ingest token has expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the ingest token is invalid: {exc}") from None
        if claims.get("sid") != session_id:
            raise Forbidden("the ingest token belongs to another session")
        self._remember(token, session_id, float(claims["exp"]))


def _digest(session_id: str, token: str) -> bytes:
    # A token has no NUL in it (base64url and dots), so the pair is read back one way only.
    return hashlib.blake2b(f"{session_id}\0{token}".encode(), digest_size=16).digest()


class ApiKeys:
    """Keys a trusted backend presents to create sessions; none configured means creation is open."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = [k.encode() for k in keys if k]

    @property
    def required(self) -> bool:
        return bool(self._keys)

    def check(self, presented: str | None) -> None:
        if not self._keys:
            return
        if not presented:
            raise Unauthorized("creating a session needs an API key: 'Authorization: Bearer <key>'")
        candidate = presented.encode()
        # Compare against every key, always, so the time taken says nothing about which one nearly matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(candidate, key)
        if not matched:
            raise Unauthorized("the API key is not valid")


class ClientAddress:
    """The client's address: the peer, or from X-Forwarded-For when the peer is a trusted proxy."""

    def __init__(self, trusted: Iterable[str]) -> None:
        self._networks = [ipaddress.ip_network(t.strip(), strict=False) for t in trusted if t.strip()]

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._networks)

    def trusts(self, peer: str | None) -> bool:
        """Whether ``peer`` is one of our own proxies, whose forwarded headers are believed."""
        return peer is not None and self._trusted(peer)

    def resolve(self, peer: str | None, forwarded_for: str | None) -> str:
        peer = peer or "unknown"
        if not forwarded_for or not self._trusted(peer):
            return peer
        # The right-most address not added by one of our own proxies is the client's.
        for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
            if not self._trusted(hop):
                return hop
        return peer


def cors_origin_regex(patterns: Iterable[str], credentialed: bool = False) -> str | None:
    """``https://*.example.com`` allows any subdomain of example.com over https; exact origins match exactly.
    ``credentialed``: the origins that may send cookies, which ``*`` never stands for."""
    parts = []
    for pattern in patterns:
        pattern = pattern.strip().rstrip("/")
        if not pattern:
            continue
        if pattern == "*":
            if credentialed:
                continue
            parts.append(r"https?://.+")
            continue
        escaped = re.escape(pattern).replace(r"\*\.", r"(?:[A-Za-z0-9-]+\.)+")
        parts.append(escaped)
    return "^(?:" + "|".join(parts) + ")$" if parts else None
