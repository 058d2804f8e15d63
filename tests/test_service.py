"""The service under a store that runs a mutation twice, as a shared store does when it loses a compare-and-set."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

from starlette.testclient import TestClient
from test_routes import ENV, auth, start

from gateway.app import create_app
from gateway.otel_config import load_telemetry
from gateway.service import IngestResult, body_events
from gateway.sessions.codec import decode, encode
from gateway.sessions.outbox import OutboxOf
from gateway.sessions.state import SessionState
from gateway.sessions.store import MemoryStore

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
