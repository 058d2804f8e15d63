"""A store shared by several gateway replicas: Redis (redis-py, asyncio).

Each session is one key holding its encoded state; three sorted sets index
the open sessions by last activity and by start, and the ended ones by end
time, which is all the sweeper asks. ``mutate`` is an optimistic transaction
(WATCH the key, run the function on a fresh copy, MULTI/EXEC): when two
replicas update one session at once, one commits and the other runs again on
the new state, so no update is lost. Sweeping needs no lock: two replicas
ending the same session both go through ``mutate``, and only the first finds
it open, so only one emits its spans.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, TypeVar, cast

import redis.asyncio as redis
from redis.exceptions import WatchError

from gateway.sessions.codec import decode, encode
from gateway.sessions.state import SessionState

T = TypeVar("T")

_CREATE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
  return 1
end
return 0
"""


class _CountedLock(asyncio.Lock):
    users = 0


class StoreContention(RuntimeError):
    """A session changed under every attempt to update it: far more concurrent writers than a session has."""


class RedisStore:
    durable = True

    def __init__(self, url: str, prefix: str = "vtg:", max_attempts: int = 50) -> None:
        self._redis: redis.Redis = redis.Redis.from_url(url)
        self._prefix = prefix
        self._activity = f"{prefix}open:activity"
        self._start = f"{prefix}open:start"
        self._ended = f"{prefix}ended"
        self._max_attempts = max_attempts
        self._create = self._redis.register_script(_CREATE)
        self._locks: dict[str, _CountedLock] = {}

    def _key(self, session_id: str) -> str:
        return f"{self._prefix}s:{session_id}"

    async def create(self, state: SessionState) -> bool:
        keys = [self._key(state.session_id), self._activity, self._start]
        args: list[Any] = [encode(state), state.session_id, state.last_activity_ns, state.start_ns]
        return bool(await self._create(keys=keys, args=args))

    async def get(self, session_id: str) -> SessionState | None:
        data = await self._redis.get(self._key(session_id))
        return decode(cast(bytes, data)) if data is not None else None

    async def mutate(self, session_id: str, fn: Callable[[SessionState], T]) -> T | None:
        # Updates of one session from this process queue here, so the optimistic transaction only ever
        # races the other replicas, not this one's own concurrent requests.
        lock = self._locks.setdefault(session_id, _CountedLock())
        lock.users += 1
        try:
            async with lock:
                return await self._transaction(session_id, fn)
        finally:
            lock.users -= 1
            if not lock.users:
                self._locks.pop(session_id, None)

    async def _transaction(self, session_id: str, fn: Callable[[SessionState], T]) -> T | None:
        key = self._key(session_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            for attempt in range(self._max_attempts):
                try:
                    await pipe.watch(key)
                    data = await pipe.get(key)
                    if data is None:
                        await pipe.unwatch()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                        return None
                    state = decode(cast(bytes, data))
                    result = fn(state)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(key, encode(state))
                    if state.ended:
                        pipe.zrem(self._activity, session_id)
                        pipe.zrem(self._start, session_id)
                        pipe.zadd(self._ended, {session_id: state.ended_at_ns or state.last_activity_ns})
                    else:
                        pipe.zadd(self._activity, {session_id: state.last_activity_ns})
                    await pipe.execute()
                    return result
                except WatchError:
                    await asyncio.sleep(random.uniform(0, 0.001 * (attempt + 1)))
        raise StoreContention(f"session {session_id!r} kept changing during {self._max_attempts} attempts")

    async def remove(self, session_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(session_id))
            pipe.zrem(self._activity, session_id)
            pipe.zrem(self._start, session_id)
            pipe.zrem(self._ended, session_id)
            await pipe.execute()

    async def ids(self) -> list[str]:
        open_ids = await self._redis.zrange(self._activity, 0, -1)
        ended = await self._redis.zrange(self._ended, 0, -1)
        return [i.decode() for i in (*open_ids, *ended)]

    async def count_active(self) -> int:
        return int(await self._redis.zcard(self._activity))

    async def expired(self, idle_before_ns: int, started_before_ns: int, ended_before_ns: int) -> list[str]:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(self._activity, "-inf", f"({idle_before_ns}")
            pipe.zrangebyscore(self._start, "-inf", f"({started_before_ns}")
            pipe.zrangebyscore(self._ended, "-inf", f"({ended_before_ns}")
            idle, old, ended = await pipe.execute()
        return list(dict.fromkeys(i.decode() for i in (*idle, *old, *ended)))

    async def close(self) -> None:
        await self._redis.aclose()
