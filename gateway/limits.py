"""Rate limits: token buckets keyed by session, client address or user, in process memory.

A flood is answered with 429 and the time after which a retry would pass;
the buckets themselves are bounded so that a flood of distinct keys cannot
grow memory without limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

from gateway.bounded import BoundedMap
from gateway.errors import PayloadTooLarge, TooManyRequests
from gateway.security import ClientAddress
from gateway.settings import GatewaySettings


class RateLimiter:
    """A token bucket kept as one number per key, its "theoretical arrival time" (GCRA): the moment the bucket
    would be full again. Same answers as counting tokens, a third of the memory per key."""

    def __init__(self, rate_per_s: float, burst: float, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.burst = max(burst, 1.0)
        self._clock = clock
        # A key dropped for want of room starts full again: the keys unused longest are the likeliest full already.
        self._full_at: BoundedMap[Hashable, float] = BoundedMap(max_keys)

    def acquire(self, key: Hashable, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; returns 0 when allowed, else the seconds until it would be."""
        rate = self.rate
        if rate <= 0:
            return 0.0
        now = self._clock()
        burst = self.burst
        if cost > burst:
            cost = burst  # a batch larger than the burst still passes once the bucket is full
        full_at = self._full_at.get(key)
        if full_at is None or full_at < now:
            full_at = now
        full_at += cost / rate
        over = full_at - now - burst / rate
        if over > 1e-9:  # not float dust from adding up costs
            return over  # refused: nothing taken
        self._full_at.put(key, full_at)
        return 0.0


class IngestGuard:
    """The per-request limits of the HTTP API, in one place for the handlers to ask."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.addresses = ClientAddress(settings.trusted_proxies)
        rate = settings.session_create_rate_per_client
        self.creates = RateLimiter(rate, rate * 10)
        self.session_events = RateLimiter(settings.event_rate_per_session, settings.event_rate_per_session * 10)
        self.client_events = RateLimiter(settings.event_rate_per_client, settings.event_rate_per_client * 10)
        self.client_mints = RateLimiter(settings.provider_token_rate_per_client,
                                        settings.provider_token_rate_per_client * 10)
        self.user_mints = RateLimiter(settings.provider_token_rate_per_user, settings.provider_token_rate_per_user * 10)

    def client(self, peer: str | None, forwarded_for: str | None) -> str:
        return self.addresses.resolve(peer, forwarded_for)

    def session_created(self, client: str) -> None:
        wait = self.creates.acquire(client)
        if wait:
            raise TooManyRequests("too many sessions started from this address; slow down", wait)

    def token_minted(self, client: str, user: str | None) -> None:
        """Minting spends the operator's money: bounded per address, and per user wherever the user comes from."""
        wait = self.client_mints.acquire(client)
        if not wait and user:
            wait = self.user_mints.acquire(user)
        if wait:
            raise TooManyRequests("too many provider tokens minted for this client; slow down", wait)

    def events(self, client: str, session_id: str, count: int) -> None:
        if count > self.settings.max_events_per_request:
            raise PayloadTooLarge(
                f"{count} events in one request; the limit is {self.settings.max_events_per_request}"
            )
        # By the id's hash: the id string from the request's path would be a second copy of it kept per session
        # (and ids colliding in 64 bits, under a per-process hash seed, would only share a bucket).
        wait = max(self.session_events.acquire(hash(session_id), count), self.client_events.acquire(client, count))
        if wait:
            raise TooManyRequests("event rate limit reached; retry after the indicated delay", wait)
