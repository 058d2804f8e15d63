"""The outbox's two homes, in process: a SQLite file and a Redis Stream (real redis-server)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_stores import redis_url, state  # noqa: F401  (the redis-server fixture)

from gateway.delivery.outbox import OutboxSource
from gateway.delivery.outbox_redis import RedisOutbox
from gateway.delivery.outbox_sqlite import SqliteOutbox
from gateway.sessions.outbox import OutboxFull
from gateway.sessions.redis_store import RedisStore
from gateway.sessions.sqlite_store import SqliteStore
from gateway.sessions.state import SessionState

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def touch(s: SessionState) -> int:
    s.event_count += 1
    return s.event_count


def payload(n: int) -> tuple[bytes, int]:
    return f"spans-of-update-{n}".encode(), 2


async def fill(store: SqliteStore | RedisStore, count: int) -> None:
    store.outbox = True
    assert await store.create(state("a"))
    for _ in range(count):
        assert await store.mutate("a", touch, payload) is not None


def poll(read: object, deadline_s: float = 30) -> list[object]:
    assert callable(read)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        got = read()
        if got:
            return list(got)
    return []


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[RedisStore]:  # noqa: F811
    s = RedisStore(redis_url, prefix=f"outbox-test:{time.monotonic_ns()}:", outbox_max_entries=5)
    yield s
    await s.close()


async def test_a_full_outbox_refuses_the_update_whole(tmp_path: Path, redis_store: RedisStore) -> None:
    for store in (SqliteStore(tmp_path / "s.db", outbox_max_entries=5), redis_store):
        await fill(store, 5)
        with pytest.raises(OutboxFull) as info:
            await store.mutate("a", touch, payload)
        assert info.value.status == 503 and info.value.headers["Retry-After"]
        got = await store.get("a")
        assert got is not None and got.event_count == 5, "the refused update left the state as it was"
        # Updates that finish no span still go through.
        assert await store.mutate("a", touch, lambda _: None) == 6


async def test_sqlite_cursor_survives_a_restart_and_trim_follows_the_slowest_exporter(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await fill(store, 4)
    outbox = SqliteOutbox(store)
    outbox.register(["otlp", "langfuse"])
    batch = outbox.read("otlp", max_spans=4, wait_s=0)
    assert [e.data for e in batch] == [payload(1)[0], payload(2)[0]] and sum(e.spans for e in batch) == 4
    outbox.ack("otlp", batch)
    assert outbox.trim().entries == 4, "langfuse has acknowledged nothing yet"
    outbox.close()
    await store.close()
    # A restart: each exporter goes on from its own cursor.
    store = SqliteStore(tmp_path / "s.db")
    outbox = SqliteOutbox(store)
    outbox.register(["otlp", "langfuse"])
    assert len(outbox.read("otlp", max_spans=100, wait_s=0)) == 2
    everything = outbox.read("langfuse", max_spans=100, wait_s=0)
    assert len(everything) == 4
    outbox.ack("langfuse", everything)
    stats = outbox.trim()
    assert stats.entries == 2 and store.outbox_entries == 2
    outbox.close()
    await store.close()


async def test_redis_entries_a_dead_consumer_left_are_claimed_and_a_live_ones_are_not(
    redis_store: RedisStore,
) -> None:
    await fill(redis_store, 3)
    dead, live, other = (RedisOutbox(redis_store, claim_idle_s=0.3) for _ in range(3))
    for outbox in (dead, live, other):
        outbox.register(["otlp"])
    taken = dead.read("otlp", max_spans=512, wait_s=0.1)
    assert len(taken) == 3
    # Still theirs while they keep them.
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:
        dead.keep("otlp", taken)
        assert live.read("otlp", max_spans=512, wait_s=0.05) == []
    # Then "dead" dies: another replica takes its entries over once they have been idle long enough.
    claimed = poll(lambda: live.read("otlp", max_spans=512, wait_s=0.1))
    assert [e.data for e in claimed] == [e.data for e in taken]  # type: ignore[attr-defined]
    live.ack("otlp", claimed)  # type: ignore[arg-type]
    assert other.read("otlp", max_spans=512, wait_s=0.1) == []
    stats = other.trim()
    assert (stats.entries, stats.bytes) == (0, 0)
    for outbox in (dead, live, other):
        outbox.close()


async def test_redis_trim_keeps_what_any_group_still_needs(redis_store: RedisStore) -> None:
    await fill(redis_store, 2)
    outbox: OutboxSource = RedisOutbox(redis_store)
    outbox.register(["otlp", "langfuse"])
    batch = outbox.read("otlp", max_spans=512, wait_s=0.1)
    outbox.ack("otlp", batch)
    stats = outbox.trim()
    assert stats.entries == 2 and stats.bytes == 2 * len(payload(0)[0]) and stats.oldest_age_s >= 0
    outbox.ack("langfuse", outbox.read("langfuse", max_spans=512, wait_s=0.1))
    assert outbox.trim().entries == 0
    outbox.close()


async def test_redis_forgets_consumers_gone_for_good_once_they_hold_nothing(redis_store: RedisStore) -> None:
    await fill(redis_store, 1)
    gone, live = RedisOutbox(redis_store), RedisOutbox(redis_store, claim_idle_s=0.1, forget_idle_s=0.2)
    for outbox in (gone, live):
        outbox.register(["otlp"])
    gone.ack("otlp", gone.read("otlp", max_spans=512, wait_s=0.1))
    gone.close()

    def consumers() -> set[str]:
        return {c["name"].decode() for c in live._redis.xinfo_consumers(redis_store.outbox_stream, "otlp")}

    assert gone.consumer_name in consumers()
    deadline = time.monotonic() + 30
    while gone.consumer_name in consumers():
        assert time.monotonic() < deadline, "an idle consumer with nothing pending was never forgotten"
        live.trim()  # any replica's trim forgets them
        time.sleep(0.05)
    live.close()
