"""The outbox of the durable and shared stores: a span of an event that got a 202 reaches the collector,
whatever process is killed when (SIGKILL to the process group, real collector, real SQLite file, real Redis)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kill_loop
import pytest
from conftest import GatewayProcess
from kill_loop import kill, start_gateway
from otlp_sink import Collector, Sink, free_port
from test_fanout import PUBLIC, SECRET, langfuse_sink, metric  # noqa: F401  (a fixture)
from test_stores import post_batches, redis_url  # noqa: F401  (the redis-server fixture)

from gateway.simulate import three_turn_session


def gauge(client: httpx.Client, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", client.get("/metrics").text, re.M)
    assert match, name
    return float(match.group(1))


def outbox_env(collector: Collector, store_url: str, **extra: str) -> dict[str, str]:
    return {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_METRICS_EXPORTER": "none", "VTG_SESSION_STORE": store_url,
            "VTG_SIGNING_KEY": "shared-key-for-every-replica-0123456789", **extra}


def end(client: httpx.Client, s: dict[str, Any]) -> None:
    r = client.post(f"/v1/sessions/{s['session_id']}/end", json={"reason": "completed"},
                    headers={"authorization": f"Bearer {s['token']}"})
    assert r.status_code == 200, r.text


def whole_trace(sink: Sink, trace_id: str, timeout: float = 60) -> None:
    """Every span of a three-turn session, at least once; a span seen twice must be the very same span."""
    kill_loop.wait_whole(sink, [trace_id], timeout)
    kill_loop.check_copies(kill_loop.spans_of(sink, trace_id))


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[Any]:
    """Gateways in their own process groups, stopped at the end."""
    started: list[GatewayProcess] = []

    def factory(env: dict[str, str]) -> GatewayProcess:
        gw = start_gateway(env, tmp_path)
        started.append(gw)
        return gw

    yield factory
    for gw in started:
        gw.stop()


def test_sqlite_killed_right_after_the_202_that_closed_turn_1_delivers_turn_1_after_the_restart(
    collector: Collector, sink: Sink, tmp_path: Path, gateways: Any
) -> None:
    env = outbox_env(collector, f"sqlite:///{tmp_path / 'sessions.db'}")
    first = gateways(env)
    script = three_turn_session(time.time() * 1000 - 60_000, scale=0.01)
    with first.client() as client:
        s = client.post("/v1/sessions", json={"model": "gemini-live"}).json()
        post_batches(client, s, script.batches[:2])  # the second batch's 202 closed turn 1
    kill(first)  # at once: no time for any export
    second = gateways(env)
    with second.client() as client:
        post_batches(client, s, script.batches[2:])
        end(client, s)
        # The viewer's buffer keeps what this process committed (the outbox's bytes, not encoded again).
        viewed = client.get(f"/ui/api/traces/{s['trace_id']}").json()["spans"]
        assert {x["name"].split(" ")[0] for x in viewed} >= {"voice_session", "invoke_agent", "realtime_inference"}
    whole_trace(sink, s["trace_id"])


def test_two_redis_replicas_one_killed_after_closing_turn_3_the_other_delivers_everything(
    collector: Collector, sink: Sink, redis_url: str, gateways: Any  # noqa: F811
) -> None:
    env = outbox_env(collector, redis_url, VTG_OUTBOX_CLAIM_IDLE_S="1")
    replicas = [gateways(env), gateways(env)]
    clients = [r.client() for r in replicas]
    script = three_turn_session(time.time() * 1000 - 60_000, scale=0.01)
    s = clients[0].post("/v1/sessions", json={"model": "gemini-live"}).json()
    last = len(script.batches) - 1
    for index, batch in enumerate(script.batches[:last]):  # alternating; replica 0 takes the one closing turn 3
        post_batches(clients[(last - 1 - index) % 2], s, [batch])
    kill(replicas[0])
    post_batches(clients[1], s, script.batches[last:])
    end(clients[1], s)
    whole_trace(sink, s["trace_id"])
    # What every exporter acknowledged is deleted from the stream, the dead replica's share included.
    deadline = time.monotonic() + 30
    while gauge(clients[1], "vtg_outbox_entries") != 0 or gauge(clients[1], "vtg_outbox_bytes") != 0:
        assert time.monotonic() < deadline, "the stream was never trimmed"
        time.sleep(0.1)
    for c in clients:
        c.close()


def test_one_backend_down_holds_back_only_its_own_consumer_and_a_restart_delivers_what_it_held(
    collector: Collector, sink: Sink, langfuse_sink: Sink, tmp_path: Path,  # noqa: F811
    gateways: Any,
) -> None:
    env = {**outbox_env(collector, f"sqlite:///{tmp_path / 'sessions.db'}"), "OTEL_TRACES_EXPORTER": "otlp,langfuse",
           "LANGFUSE_PUBLIC_KEY": PUBLIC, "LANGFUSE_SECRET_KEY": SECRET,
           "LANGFUSE_HOST": f"http://127.0.0.1:{free_port()}"}  # nothing listens: Langfuse is down
    first = gateways(env)
    script = three_turn_session(time.time() * 1000 - 60_000, scale=0.01)
    with first.client() as client:
        s = client.post("/v1/sessions", json={"model": "gemini-live"}).json()
        post_batches(client, s, script.batches)
        end(client, s)
        whole_trace(sink, s["trace_id"])  # the collector got everything while Langfuse was away
        deadline = time.monotonic() + 30
        while metric(client.get("/metrics").text, "vtg_export_retries_total", "langfuse") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert gauge(client, "vtg_outbox_entries") > 0 and gauge(client, "vtg_outbox_bytes") > 0
        assert gauge(client, "vtg_outbox_oldest_age_seconds") > 0
    kill(first)
    second = gateways({**env, "LANGFUSE_HOST": langfuse_sink.url})
    whole_trace(langfuse_sink, s["trace_id"])
    with second.client() as client:
        deadline = time.monotonic() + 30
        while gauge(client, "vtg_outbox_entries") != 0:
            assert time.monotonic() < deadline, "the outbox was never emptied"
            time.sleep(0.1)


def test_a_full_outbox_answers_503_with_retry_after_and_keeps_what_it_holds(
    gateway_factory: Any, tmp_path: Path
) -> None:
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
           "OTEL_METRICS_EXPORTER": "none", "VTG_SESSION_STORE": f"sqlite:///{tmp_path / 'sessions.db'}",
           "VTG_OUTBOX_MAX_ENTRIES": "2"}
    gw = gateway_factory(env)
    script = three_turn_session(time.time() * 1000 - 60_000, scale=0.01)
    with gw.client() as client:
        s = client.post("/v1/sessions", json={"model": "gemini-live"}).json()
        headers = {"authorization": f"Bearer {s['token']}"}
        statuses = []
        for sent_at, events in script.batches:
            r = client.post(f"/v1/sessions/{s['session_id']}/events", json={"events": events, "sent_at": sent_at},
                            headers=headers)
            statuses.append(r.status_code)
            if r.status_code == 503:
                assert int(r.headers["retry-after"]) >= 1
                assert r.headers["content-type"].startswith("application/problem+json")
                break
        assert statuses[-1] == 503 and set(statuses[:-1]) == {202}
        assert 'vtg_events_rejected_total{reason="outbox_full"} 1.0' in client.get("/metrics").text
        deadline = time.monotonic() + 30
        while gauge(client, "vtg_outbox_entries") != 2:  # published by the drain's next trim
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_kill_loop_on_sqlite_loses_no_span_of_an_accepted_event(
    collector: Collector, sink: Sink, tmp_path: Path
) -> None:
    """A bounded loop in the suite; the 200-kill run is bench/outbox_kills.py (results in bench/RESULTS.md)."""
    env = outbox_env(collector, f"sqlite:///{tmp_path / 'sessions.db'}")
    report = kill_loop.run(env, tmp_path, sink, replicas=1, kills=6, seed=13)
    assert report.kills == 6 and len(report.sessions) == 3


def test_kill_loop_on_two_redis_replicas_loses_no_span_of_an_accepted_event(
    collector: Collector, sink: Sink, tmp_path: Path, redis_url: str  # noqa: F811
) -> None:
    env = outbox_env(collector, redis_url, VTG_OUTBOX_CLAIM_IDLE_S="1")
    report = kill_loop.run(env, tmp_path, sink, replicas=2, kills=6, seed=14)
    assert report.kills == 6 and len(report.sessions) == 3


def test_sigterm_with_the_backend_down_keeps_the_spans_in_the_outbox_for_the_next_start(
    collector: Collector, sink: Sink, gateway_factory: Any, tmp_path: Path
) -> None:
    down = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}", "VTG_SHUTDOWN_GRACE_S": "3"}
    env = outbox_env(collector, f"sqlite:///{tmp_path / 'sessions.db'}")
    first = gateway_factory({**env, **down})
    script = three_turn_session(time.time() * 1000 - 60_000, scale=0.01)
    with first.client() as client:
        s = client.post("/v1/sessions", json={"model": "gemini-live"}).json()
        post_batches(client, s, script.batches)
        end(client, s)
    started = time.monotonic()
    assert first.terminate(timeout=60) in (0, -15)
    assert time.monotonic() - started < 30, first.log()  # 3 s of grace; the margin is for a loaded machine
    assert "could not be delivered" not in first.log()  # nothing dropped: it waits in the outbox
    gateway_factory(env)  # the collector is reachable now
    whole_trace(sink, s["trace_id"])
