"""The service under a store that runs a mutation twice, as a shared store does when it loses a compare-and-set."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client import generate_latest
from starlette.testclient import TestClient
from test_routes import ENV, auth, start

from gateway.app import create_app
from gateway.errors import Conflict
from gateway.events import SessionCreate, parse_model
from gateway.otel_config import load_telemetry
from gateway.service import IngestResult, SessionService, body_events
from gateway.sessions.backlog import Backlog
from gateway.sessions.codec import decode, encode
from gateway.sessions.outbox import OutboxOf
from gateway.sessions.state import SessionState
from gateway.sessions.store import MemoryStore, open_store
from gateway.simulate import three_turn_session

T = TypeVar("T")


class LosesFirstRace(MemoryStore):
    """Every mutation first runs on a copy that is thrown away (another replica won), then for real."""

    async def mutate(self, session_id: str, fn: Callable[[SessionState], T],
                     outbox: OutboxOf[T] | None = None) -> T | None:
        state = await self.get(session_id)
        if state is not None:
            fn(decode(encode(state)))
        return await super().mutate(session_id, fn, outbox)


def accepted_total(client: TestClient) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in client.get("/metrics").text.splitlines()
               if line.startswith("vtg_events_accepted_total{"))


def test_a_retried_mutation_counts_each_event_once_on_events_and_on_end() -> None:
    with TestClient(create_app(load_telemetry(env=ENV), store=LosesFirstRace())) as client:
        s = start(client)
        base = f"/v1/sessions/{s['session_id']}"
        events = [{"type": "user.speech_start", "id": "1"}, {"type": "bogus", "id": "2"},
                  {"type": "user.speech_end", "id": "3"}]
        r = client.post(f"{base}/events", json={"events": events}, headers=auth(s)).json()
        assert r["accepted"] == 2 and r["duplicates"] == 0 and len(r["rejected"]) == 1
        end = client.post(f"{base}/end", headers=auth(s), json={
            "reason": "completed", "events": [{"type": "mark", "id": "4", "name": "bye"}, {"type": "x", "id": "5"}]})
        assert end.status_code == 200 and end.json()["end_reason"] == "completed"
        assert accepted_total(client) == 3


def test_session_creation_tells_the_client_what_content_the_gateway_keeps() -> None:
    with TestClient(create_app(load_telemetry(env=ENV))) as client:
        assert start(client)["capture"] == []
    env = {**ENV, "VTG_CAPTURE_CONTENT": "tool_results,transcripts"}
    with TestClient(create_app(load_telemetry(env=env))) as client:
        assert start(client)["capture"] == ["transcripts", "tool_results"]
    env = {**ENV, "VTG_CAPTURE_CONTENT": "all"}
    with TestClient(create_app(load_telemetry(env=env))) as client:
        assert start(client)["capture"] == ["transcripts", "tool_arguments", "tool_results"]


def test_a_batch_is_applied_in_seq_order_when_every_event_has_one_else_as_sent() -> None:
    service = create_app(load_telemetry(env=ENV)).state.service

    def order(events: list[dict[str, object]]) -> list[str]:
        decoded, _, prefix = body_events(json.dumps({"events": events}).encode())
        result = IngestResult()
        return [e.id for _, e in service._validate(decoded, prefix, result)] + [
            f"rejected {r['index']}" for r in result.rejected]

    def marks(*seqs: int | None) -> list[dict[str, object]]:
        return [{"type": "mark", "id": f"m{i}", "name": "x", **({} if s is None else {"seq": s})}
                for i, s in enumerate(seqs)]

    assert order(marks(1, 2, 2, 5)) == ["m0", "m1", "m2", "m3"]
    assert order(marks(3, 1, 2, 1)) == ["m1", "m3", "m2", "m0"]  # ties keep the order they came in
    assert order(marks(3, None, 1)) == ["m0", "m1", "m2"]
    bad = marks(4, 3, None, 2)
    del bad[2]["name"]  # a mark needs a name: the batch is decoded event by event, the bad one refused
    assert order(bad) == ["m3", "m1", "m0", "rejected 2"]
    assert order(marks(2, 1)[:1]) == ["m0"]


# -- batches applied after their answer (gateway.sessions.backlog) ---------------------------------------------


class Tick:
    """A gateway clock that moves 1 ms per reading, so two runs of the same calls give the same times."""

    def __init__(self) -> None:
        self.ns = 1_700_000_000_000_000_000

    def __call__(self) -> int:
        self.ns += 1_000_000
        return self.ns


def marks(prefix: str, n: int) -> list[dict[str, object]]:
    return [{"type": "mark", "id": f"{prefix}{i}", "name": f"{prefix}{i}"} for i in range(n)]


async def begin(service: SessionService, session_id: str = "s1") -> str:
    created = await service.start(parse_model(SessionCreate, {"session_id": session_id}), None)
    return str(created["session_id"])


async def post(service: SessionService, session_id: str, events: list[dict[str, object]],
               later: bool = True) -> IngestResult:
    decoded, sent_at, prefix = body_events(json.dumps({"events": events}).encode())
    return await service.ingest(session_id, decoded, sent_at, prefix, later=later)


def root_marks(service: SessionService, session_id: str) -> list[str]:
    state = service.store._sessions[session_id]  # type: ignore[attr-defined]
    return [e.name for e in state.root_events]


def without_ids(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = ("trace_id", "span_id", "parent_span_id", "links")
    return sorted(({k: v for k, v in s.items() if k not in ids} for s in spans),
                  key=lambda s: (s["start_time_unix_nano"], s["name"]))


def test_a_session_applied_after_each_answer_ends_in_the_spans_it_would_have_had_before() -> None:
    script = three_turn_session(1_699_999_990_000.0, scale=0.001)

    async def play(later: bool) -> list[dict[str, Any]]:
        app = create_app(load_telemetry(env=ENV), clock=Tick())
        service = app.state.service
        sid = await begin(service)
        applied = []
        for _, events in script.batches:
            result = await post(service, sid, events, later=later)
            assert result.rejected == []
            if result.applied is not None:
                applied.append(result.applied)
        assert bool(applied) is later
        await service.end(sid, "completed")
        trace_id = service.store._sessions[sid].trace.trace_id
        return list(app.state.recent.get(trace_id) or [])

    before, after = asyncio.run(play(False)), asyncio.run(play(True))
    assert len(before) > 10 and without_ids(after) == without_ids(before)


def test_a_batch_is_answered_before_it_is_applied_and_read_back_after() -> None:
    async def main() -> None:
        service = create_app(load_telemetry(env=ENV)).state.service
        sid = await begin(service)
        result = await post(service, sid, marks("m", 8))
        assert (result.accepted, result.duplicates, result.rejected) == (8, 0, [])
        assert result.applied is not None and not result.applied.done()
        assert root_marks(service, sid) == []
        again = await post(service, sid, marks("m", 8))  # the ids count as seen from the answer on
        assert (again.accepted, again.duplicates) == (0, 8)
        assert (await service.describe(sid))["session_id"] == sid  # a read waits for the session's batches
        assert root_marks(service, sid) == [f"m{i}" for i in range(8)]

    asyncio.run(main())


def test_an_event_posted_alone_waits_for_the_batches_accepted_before_it() -> None:
    async def main() -> None:
        service = create_app(load_telemetry(env=ENV)).state.service
        sid = await begin(service)
        first = await post(service, sid, marks("b", 8))
        assert first.applied is not None
        alone = await post(service, sid, marks("s", 1))
        assert alone.applied is None  # too small to queue: applied before its answer, after the batch
        assert root_marks(service, sid) == [*(f"b{i}" for i in range(8)), "s0"]

    asyncio.run(main())


def test_an_end_applies_the_queued_batches_first_and_refuses_events_sent_while_it_waits() -> None:
    async def main() -> None:
        service = create_app(load_telemetry(env=ENV)).state.service
        sid = await begin(service)
        await post(service, sid, marks("b", 8))
        ending = asyncio.create_task(service.end(sid, "completed"))
        await asyncio.sleep(0)  # the end is waiting for the batch
        with pytest.raises(Conflict):
            await post(service, sid, marks("late", 8))
        summary, _ = await ending
        assert summary["end_reason"] == "completed"
        assert root_marks(service, sid) == []  # forgotten at the end, after the batch went into the root span

    asyncio.run(main())


def test_tool_calls_that_could_pass_the_open_tool_limit_are_counted_as_if_applied_before_the_answer() -> None:
    def calls(prefix: str, n: int) -> list[dict[str, object]]:
        return [{"type": "tool.call", "id": f"{prefix}{i}", "call_id": f"{prefix}{i}", "name": "lookup"}
                for i in range(n)] + marks(f"{prefix}-m", 6)

    async def play(later: bool) -> list[tuple[int, int, bool]]:
        env = {**ENV, "VTG_MAX_OPEN_TOOLS_PER_SESSION": "3"}
        service = create_app(load_telemetry(env=env)).state.service
        sid = await begin(service)
        out = []
        for prefix in ("a", "b"):
            result = await post(service, sid, calls(prefix, 2), later=later)
            out.append((result.accepted, result.limited, result.applied is not None))
        return out

    # The first batch's two calls fit whatever happens; the second's might not, so it waits and is counted exactly.
    assert asyncio.run(play(True)) == [(8, 0, True), (7, 1, False)]
    assert [r[:2] for r in asyncio.run(play(False))] == [(8, 0), (7, 1)]


def test_a_gateway_behind_on_its_backlog_answers_once_the_batch_is_applied() -> None:
    async def main() -> None:
        service = create_app(load_telemetry(env=ENV)).state.service
        service.backlog = Backlog(max_pending_events=8)
        sid = await begin(service)
        result = await post(service, sid, marks("m", 8))
        assert result.applied is None and root_marks(service, sid) == [f"m{i}" for i in range(8)]

    asyncio.run(main())


def test_batches_on_a_durable_store_are_applied_before_their_answer(tmp_path: Path) -> None:
    async def main() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'sessions.db'}")
        service = create_app(load_telemetry(env=ENV), store=store).state.service
        sid = await begin(service)
        result = await post(service, sid, marks("m", 8))
        assert result.applied is None and result.accepted == 8
        state = await store.get(sid)
        assert state is not None and [e.name for e in state.root_events] == [f"m{i}" for i in range(8)]
        await store.close()

    asyncio.run(main())


def test_the_backlog_depth_is_a_prometheus_gauge() -> None:
    app = create_app(load_telemetry(env=ENV))
    service = app.state.service

    async def main() -> str:
        sid = await begin(service)
        await post(service, sid, marks("m", 8))
        queued = generate_latest(service.metrics.registry).decode()
        await service.settle()
        return queued

    queued = asyncio.run(main())
    assert "vtg_ingest_backlog_events 8.0" in queued
    assert "vtg_ingest_backlog_events 0.0" in generate_latest(service.metrics.registry).decode()


def test_the_sweeper_and_shutdown_apply_the_queued_batches_before_they_end_sessions() -> None:
    async def main() -> None:
        app = create_app(load_telemetry(env={**ENV, "VTG_SESSION_IDLE_TIMEOUT_S": "1"}), clock=Tick())
        service = app.state.service
        idle = await begin(service, "idle")
        await post(service, idle, marks("i", 8))
        service.clock.ns += 5_000_000_000  # past the idle timeout
        assert await service.sweep() == 1
        kept = await begin(service, "kept")
        await post(service, kept, marks("k", 8))
        assert await service.end_all("gateway_shutdown") == 1
        for sid in (idle, kept):
            trace_id = service.store._sessions[sid].trace.trace_id
            root = [s for s in app.state.recent.get(trace_id) or [] if s["name"] == "voice_session"]
            assert [e["name"] for e in root[0]["events"]] == [f"{sid[0]}{i}" for i in range(8)]

    asyncio.run(main())
