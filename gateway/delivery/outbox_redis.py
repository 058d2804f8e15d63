"""The Redis store's outbox: a Stream, one consumer group per exporter, shared by every replica.

Each replica reads as its own consumer in each exporter's group
(``XREADGROUP``) and acknowledges (``XACK``) once the backend took a batch.
Entries a replica read and never acknowledged (it died) stay pending in the
group; once idle past ``claim_idle_s`` any live replica takes them over
(``XAUTOCLAIM``) and delivers them. A replica retrying a batch through an
outage touches its entries (``XCLAIM`` to itself) so they never look
abandoned. Entries every group has acknowledged are deleted, with the byte
count the bound is checked against.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis

from gateway.delivery.outbox import Entry, OutboxStats
from gateway.sessions.redis_store import RedisStore

# KEYS: stream, byte count. ARGV: the last id to delete (inclusive). Returns how many entries went.
_TRIM = """
local entries = redis.call('XRANGE', KEYS[1], '-', ARGV[1], 'COUNT', 1000)
local ids = {}
local freed = 0
for _, entry in ipairs(entries) do
  ids[#ids + 1] = entry[1]
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'd' then freed = freed + string.len(fields[i + 1]) end
  end
end
if #ids > 0 then
  redis.call('XDEL', KEYS[1], unpack(ids))
  redis.call('DECRBY', KEYS[2], freed)
end
return #ids
"""


def _id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _before(stream_id: tuple[int, int]) -> tuple[int, int] | None:
    ms, seq = stream_id
    if seq > 0:
        return ms, seq - 1
    return (ms - 1, 2**64 - 1) if ms > 0 else None


class RedisOutbox:
    def __init__(self, store: RedisStore, claim_idle_s: float = 30.0, forget_idle_s: float = 3600.0) -> None:
        self._redis: Any = redis.Redis.from_url(store.url)
        self._stream = store.outbox_stream
        self._bytes = store.outbox_bytes_key
        self._claim_idle_ms = max(1, int(claim_idle_s * 1000))
        # Every restart is a new consumer: one idle this long with nothing pending is a replica gone for good.
        self._forget_idle_ms = max(self._claim_idle_ms, int(forget_idle_s * 1000))
        # One consumer name per process: a restarted replica is a new consumer, and its predecessor's pending
        # entries are claimed like any dead replica's.
        self.consumer_name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._trim = self._redis.register_script(_TRIM)

    def register(self, consumers: Sequence[str]) -> None:
        for group in consumers:
            try:
                self._redis.xgroup_create(self._stream, group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _entries(self, raw: Sequence[Any]) -> list[Entry]:
        out = []
        for entry_id, fields in raw:
            if not fields:  # deleted while pending
                continue
            out.append(Entry(entry_id.decode(), bytes(fields[b"d"]), int(fields[b"n"])))
        return out

    def read(self, consumer: str, max_spans: int, wait_s: float) -> list[Entry]:
        count = max(1, min(1000, max_spans // 4))
        claimed = self._redis.xautoclaim(self._stream, consumer, self.consumer_name, self._claim_idle_ms,
                                         start_id="0-0", count=count)
        entries = self._entries(claimed[1])
        if not entries:
            block = max(1, int(wait_s * 1000))
            got = self._redis.xreadgroup(consumer, self.consumer_name, {self._stream: ">"}, count=count, block=block)
            entries = self._entries(got[0][1]) if got else []
        # Everything read goes out in this batch: an entry read but left aside would sit pending, unseen, until
        # it looked abandoned. The count keeps a batch near max_spans (a mutation finishes a few spans).
        return entries

    def ack(self, consumer: str, entries: Sequence[Entry]) -> None:
        if entries:
            self._redis.xack(self._stream, consumer, *[e.id for e in entries])

    def keep(self, consumer: str, entries: Sequence[Entry]) -> None:
        if entries:
            self._redis.xclaim(self._stream, consumer, self.consumer_name, 0, [e.id for e in entries], justid=True)

    def trim(self) -> OutboxStats:
        groups = self._redis.xinfo_groups(self._stream) if self._redis.exists(self._stream) else []
        bound: tuple[int, int] | None = None
        for group in groups:
            self._forget_gone(group["name"])
            last = _id(group["last-delivered-id"])
            if group["pending"]:
                smallest = self._redis.xpending(self._stream, group["name"])["min"]
                mark = _before(_id(smallest))
            else:
                mark = last
            if mark is None:
                bound = None
                break
            bound = mark if bound is None else min(bound, mark)
        if groups and bound is not None and bound > (0, 0):
            while self._trim(keys=[self._stream, self._bytes], args=[f"{bound[0]}-{bound[1]}"]) == 1000:
                pass
        entries = int(self._redis.xlen(self._stream))
        size = int(self._redis.get(self._bytes) or 0)
        oldest = self._redis.xrange(self._stream, "-", "+", count=1)
        age = max(0.0, time.time() - _id(oldest[0][0])[0] / 1000) if oldest else 0.0
        return OutboxStats(entries, size, age)

    def _forget_gone(self, group: bytes | str) -> None:
        for consumer in self._redis.xinfo_consumers(self._stream, group):
            name = consumer["name"]
            name = name.decode() if isinstance(name, bytes) else name
            if not consumer["pending"] and consumer["idle"] > self._forget_idle_ms and name != self.consumer_name:
                self._redis.xgroup_delconsumer(self._stream, group, name)

    def close(self) -> None:
        self._redis.close()
