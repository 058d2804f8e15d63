"""A store shared by several gateway replicas: Redis (redis-py, asyncio).

Each session is one hash holding its encoded state and a version number;
three sorted sets index the open sessions by last activity and by start, and
the ended ones by end time, which is all the sweeper asks. ``mutate`` is an
optimistic transaction in two round trips: read state and version, run the
function on that copy, then a script writes the new state only if the version
is still the one read (compare-and-set, with the indexes in the same step).
When two replicas update one session at once, one commits and the other runs
again on the new state, so no update is lost. Sweeping needs no lock: two replicas
ending the same session both go through ``mutate``, and only the first finds
it open, so only one emits its spans.

The outbox is a Redis Stream: the same script that writes the state appends
the spans the mutation finished (``XADD``), and refuses both while the stream
holds its bound of entries or bytes. Each exporter reads it as its own
consumer group (gateway/delivery/outbox_redis.py).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, TypeVar, cast

import redis.asyncio as redis

from gateway.sessions.codec import decode, encode
from gateway.sessions.outbox import OutboxOf, outbox_full
from gateway.sessions.state import SessionState

T = TypeVar("T")

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'd', ARGV[1], 'v', 1)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
return 1
"""

# KEYS: session, open-by-activity, open-by-start, ended, outbox stream, outbox bytes.
# ARGV: version read, state, id, ended (0/1), score, then optionally spans (OTLP), span count, max entries, max bytes.
# Returns 1 (saved), 0 (the version moved: run again) or -1 (the outbox is full: nothing written).
_SAVE = """
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
if ARGV[6] then
  if redis.call('XLEN', KEYS[5]) >= tonumber(ARGV[8])
     or tonumber(redis.call('GET', KEYS[6]) or '0') >= tonumber(ARGV[9]) then return -1 end
  redis.call('XADD', KEYS[5], '*', 'n', ARGV[7], 'd', ARGV[6])
  redis.call('INCRBY', KEYS[6], string.len(ARGV[6]))
end
redis.call('HSET', KEYS[1], 'd', ARGV[2], 'v', tonumber(ARGV[1]) + 1)
if ARGV[4] == '1' then
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('ZREM', KEYS[3], ARGV[3])
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[3])
else
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[3])
end
return 1
"""


class _CountedLock(asyncio.Lock):
    users = 0


class StoreContention(RuntimeError):
    """A session changed under every attempt to update it: far more concurrent writers than a session has."""


class RedisStore:
    durable = True

    def __init__(self, url: str, prefix: str = "vtg:", max_attempts: int = 50, outbox_max_entries: int = 100_000,
                 outbox_max_bytes: int = 256 * 1024 * 1024) -> None:
        self.url = url
        self._redis: redis.Redis = redis.Redis.from_url(url)
        self._prefix = prefix
        self.outbox = False
        self.outbox_stream = f"{prefix}outbox"
        self.outbox_bytes_key = f"{prefix}outbox:bytes"
        self.outbox_max_entries = outbox_max_entries
        self.outbox_max_bytes = outbox_max_bytes
        self._activity = f"{prefix}open:activity"
        self._start = f"{prefix}open:start"
        self._ended = f"{prefix}ended"
        self._max_attempts = max_attempts
        self._create = self._redis.register_script(_CREATE)
        self._save = self._redis.register_script(_SAVE)
        self._locks: dict[str, _CountedLock] = {}

    def _key(self, session_id: str) -> str:
        return f"{self._prefix}s:{session_id}"

    async def create(self, state: SessionState) -> bool:
        keys = [self._key(state.session_id), self._activity, self._start]
        args: list[Any] = [encode(state), state.session_id, state.last_activity_ns, state.start_ns]
        return bool(await self._create(keys=keys, args=args))

    async def get(self, session_id: str) -> SessionState | None:
        data = await self._redis.hget(self._key(session_id), "d")
        return decode(cast(bytes, data)) if data is not None else None

    async def mutate(self, session_id: str, fn: Callable[[SessionState], T],
                     outbox: OutboxOf[T] | None = None) -> T | None:
        # Updates of one session from this process queue here, so the optimistic transaction only ever
        # races the other replicas, not this one's own concurrent requests.
        lock = self._locks.setdefault(session_id, _CountedLock())
        lock.users += 1
        try:
            async with lock:
                return await self._transaction(session_id, fn, outbox if self.outbox else None)
        finally:
            lock.users -= 1
            if not lock.users:
                self._locks.pop(session_id, None)

    async def _transaction(self, session_id: str, fn: Callable[[SessionState], T],
                           outbox: OutboxOf[T] | None) -> T | None:
        key = self._key(session_id)
        keys = [key, self._activity, self._start, self._ended, self.outbox_stream, self.outbox_bytes_key]
        for attempt in range(self._max_attempts):
            data, version = await self._redis.hmget(key, ["d", "v"])
            if data is None:
                return None
            state = decode(cast(bytes, data))
            result = fn(state)
            ended = state.ended
            score = (state.ended_at_ns or state.last_activity_ns) if ended else state.last_activity_ns
            args: list[Any] = [version, encode(state), session_id, "1" if ended else "0", score]
            entry = outbox(result) if outbox is not None else None
            if entry is not None:
                args += [entry[0], entry[1], self.outbox_max_entries, self.outbox_max_bytes]
            saved = await self._save(keys=keys, args=args)
            if saved == -1:
                raise outbox_full(int(await self._redis.xlen(self.outbox_stream)),
                                  int(await self._redis.get(self.outbox_bytes_key) or 0))
            if saved:
                return result
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
