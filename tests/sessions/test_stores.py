"""Every store keeps the same promises; the shared and durable ones keep them across processes."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from otlp_sink import Collector, Sink, free_port, wait_port

from gateway.sessions.redis_store import RedisStore
from gateway.sessions.sqlite_store import SqliteStore
from gateway.sessions.state import SessionState, TraceRef, new_span_id, new_trace_id
from gateway.sessions.store import MemoryStore, SessionStore, open_store
from gateway.simulate import three_turn_session


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is installed by scripts/setup.sh"
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    wait_port(port)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


def state(session_id: str, now: int = 1_000) -> SessionState:
    return SessionState(session_id=session_id, trace=TraceRef(new_trace_id(), new_span_id(), None, True),
                        start_ns=now, last_activity_ns=now, last_event_ns=now)


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str) -> AsyncIterator[SessionStore]:
    if request.param == "memory":
        s: SessionStore = MemoryStore()
    elif request.param == "sqlite":
        s = SqliteStore(tmp_path / "sessions.db")
    else:
        s = RedisStore(redis_url, prefix=f"test:{time.monotonic_ns()}:")
    yield s
    await s.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


pytestmark = pytest.mark.anyio


async def test_store_creates_once_and_mutates_in_place(store: SessionStore) -> None:
    assert await store.create(state("a"))
    assert not await store.create(state("a"))
    assert await store.mutate("nope", lambda s: 1) is None

    def touch(s: SessionState) -> int:
        s.event_count += 5
        s.remember("x")
        return s.event_count

    assert await store.mutate("a", touch) == 5
    got = await store.get("a")
    assert got is not None and got.event_count == 5 and got.has_seen("x")
    assert await store.count_active() == 1


async def test_store_finds_idle_old_and_long_ended_sessions(store: SessionStore) -> None:
    for sid, activity in (("idle", 100), ("busy", 900)):
        s = state(sid, 50)
        s.last_activity_ns = activity
        await store.create(s)

    def finish(s: SessionState) -> None:
        s.ended, s.ended_at_ns = True, 300

    await store.create(state("done", 50))
    await store.mutate("done", finish)
    assert await store.count_active() == 2
    assert sorted(await store.expired(idle_before_ns=500, started_before_ns=0, ended_before_ns=0)) == ["idle"]
    assert sorted(await store.expired(0, started_before_ns=60, ended_before_ns=0)) == ["busy", "idle"]
    assert await store.expired(0, 0, ended_before_ns=400) == ["done"]
    await store.remove("done")
    assert await store.get("done") is None and "done" not in await store.ids()


async def test_redis_concurrent_updates_from_two_replicas_lose_nothing(redis_url: str) -> None:
    prefix = f"race:{time.monotonic_ns()}:"
    a, b = RedisStore(redis_url, prefix=prefix), RedisStore(redis_url, prefix=prefix)
    await a.create(state("shared"))

    def bump(s: SessionState) -> None:
        s.event_count += 1

    await asyncio.gather(*(store.mutate("shared", bump) for _ in range(100) for store in (a, b)))
    final = await a.get("shared")
    assert final is not None and final.event_count == 200
    await a.close()
    await b.close()


def test_unknown_store_url_names_the_setting() -> None:
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        open_store("mongodb://x")
    assert info.value.key == "session_store"


# -- across processes ------------------------------------------------------------------------------


def gateway_env(collector: Collector, store_url: str, **extra: str) -> dict[str, str]:
    return {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100", "VTG_SESSION_STORE": store_url, **extra}


def post_batches(client: Any, session: dict[str, Any], batches: list[tuple[float, list[dict[str, Any]]]]) -> None:
    for sent_at, events in batches:
        r = client.post(f"/v1/sessions/{session['session_id']}/events", json={"events": events, "sent_at": sent_at},
                        headers={"authorization": f"Bearer {session['token']}"})
        assert r.status_code == 202, r.text


def test_sqlite_store_survives_kill_9_and_the_sweeper_ends_the_session_whole(
    collector: Collector, sink: Sink, gateway_factory: Any, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    # Idle long enough to outlast a restart on a loaded machine; then the sweeper ends the session.
    env = gateway_env(collector, url, VTG_SESSION_IDLE_TIMEOUT_S="15", VTG_SWEEP_INTERVAL_S="0.2")
    first = gateway_factory(env)
    script = three_turn_session(time.time() * 1000 - 60_000, scale=0.01)
    with first.client() as client:
        s = client.post("/v1/sessions", json={"model": "gemini-live"}).json()
        post_batches(client, s, script.batches[:2])  # turn 1 done, turn 2 open
    # Turn 1's spans have left; what this test is about is the session's state, with turn 2 and the root still
    # open (tests/delivery/test_outbox.py kills before anything left).
    sink.wait_for(lambda got: any(x.trace_id == s["trace_id"] and x.name.startswith("invoke_agent") for x in got))
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    second = gateway_factory(env)
    with second.client() as client:
        # The session goes on in the new process, with the token the first one issued.
        post_batches(client, s, script.batches[2:4])
    spans = sink.trace(s["trace_id"], timeout=90)
    root = next(x for x in spans if x.name == "voice_session")
    assert root.span_id == s["root_span_id"]
    assert root.attributes["voice.session.end_reason"] == "timeout"
    names = Counter(x.name.split(" ")[0] for x in spans)
    assert names["invoke_agent"] == 2 and names["execute_tool"] == 1 and names["voice.connection"] == 2
    assert len({x.span_id for x in spans}) == len(spans)


def active_gauge(client: httpx.Client) -> float:
    return next(float(line.split()[1]) for line in client.get("/metrics").text.splitlines()
                if line.startswith("vtg_sessions_active "))


def test_two_replicas_on_one_redis_make_one_trace_and_survive_losing_one(
    collector: Collector, sink: Sink, gateway_factory: Any, redis_url: str
) -> None:
    env = gateway_env(collector, redis_url, VTG_SIGNING_KEY="shared-key-for-both-replicas-0123456789",
                      VTG_SESSION_IDLE_TIMEOUT_S="10", VTG_SWEEP_INTERVAL_S="0.2")
    replicas = [gateway_factory(env), gateway_factory(env)]
    clients = [r.client() for r in replicas]
    script = three_turn_session(time.time() * 1000 - 60_000, scale=0.01)
    s = clients[0].post("/v1/sessions", json={"model": "gemini-live"}).json()
    # Every request of the session alternates between the replicas.
    for index, batch in enumerate(script.batches):
        post_batches(clients[index % 2], s, [batch])
    end = clients[1].post(f"/v1/sessions/{s['session_id']}/end", json={"reason": "completed"},
                          headers={"authorization": f"Bearer {s['token']}"})
    assert end.status_code == 200 and end.json()["turns"] == 3
    # Opened on one replica, ended on the other: each reads the shared count back (the other at its next sweep),
    # so neither keeps counting a session that has ended elsewhere.
    deadline = time.monotonic() + 5
    while [active_gauge(c) for c in clients] != [0, 0] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [active_gauge(c) for c in clients] == [0, 0]
    spans = sink.trace(s["trace_id"])
    time.sleep(0.5)
    spans = [x for x in sink.spans if x.trace_id == s["trace_id"]]
    assert len({x.span_id for x in spans}) == len(spans), "a span was exported twice"
    assert Counter(x.name.split(" ")[0] for x in spans) == {
        "voice_session": 1, "invoke_agent": 3, "realtime_inference": 3, "execute_tool": 1,
        "user_speech": 2, "voice.connection": 2}
    ids = {x.span_id for x in spans}
    assert all(x.parent_span_id in ids for x in spans if x.name != "voice_session")

    # A second session; replica 0 dies mid-session; replica 1 carries it on and its sweeper ends it once.
    s2 = clients[0].post("/v1/sessions", json={"model": "gemini-live"}).json()
    post_batches(clients[0], s2, script.batches[:2])
    sink.wait_for(lambda got: any(x.trace_id == s2["trace_id"] and x.name.startswith("invoke_agent") for x in got))
    replicas[0].proc.send_signal(signal.SIGKILL)
    replicas[0].proc.wait(10)
    post_batches(clients[1], s2, script.batches[2:3])
    spans2 = sink.trace(s2["trace_id"], timeout=90)
    root = next(x for x in spans2 if x.name == "voice_session")
    assert root.attributes["voice.session.end_reason"] == "timeout"
    assert Counter(x.name.split(" ")[0] for x in spans2)["invoke_agent"] == 2
    for c in clients:
        c.close()
