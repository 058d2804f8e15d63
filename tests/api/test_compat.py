"""The legacy routes (DESIGN §3.4): same limits as the v1 API, one span per turn and per tool call."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fake_providers import FakeProviders, serve_fake_providers
from starlette.testclient import TestClient

from gateway.api.legacy import LegacyToolCalls, legacy_to_events
from gateway.app import create_app
from gateway.otel_config import load_telemetry

API_KEY = "compat-api-key"
# /api/live/token mints a provider token: a trusted backend with an API key asks for it here (the frontend's own
# cookie-only flow, through forward auth, is tests/providers/test_frontend.py).
ENV = {"VTG_SIGNING_KEY": "k" * 40, "VTG_PROVIDER_TOKENS": "gemini", "VTG_API_KEYS": API_KEY}
AUTH = {"authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def fake_providers() -> Iterator[FakeProviders]:
    with serve_fake_providers() as fake:
        yield fake


@pytest.fixture(autouse=True)
def provider_env(fake_providers: FakeProviders, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in fake_providers.env().items():
        monkeypatch.setenv(name, value)
    yield
    assert fake_providers.mismatches == []


def make_client(**env: str) -> TestClient:
    return TestClient(create_app(load_telemetry(env={**ENV, **env})))


@pytest.fixture
def client() -> Iterator[TestClient]:
    with make_client(VTG_CAPTURE_CONTENT="all") as c:
        yield c


class Legacy:
    """A legacy client: one session, events stamped at ``base`` plus an offset in ms, all in the past."""

    def __init__(self, client: TestClient, **body: Any) -> None:
        self.client = client
        r = client.post("/api/live/token", json=body, headers=AUTH)
        assert r.status_code == 200, r.text
        self.created = r.json()
        self.sid, self.token = self.created["sessionId"], self.created["ingestToken"]
        self.base = time.time() * 1000
        time.sleep(0.25)  # every offset used below is in the past when sent: times are kept as reported

    def send(self, kind: str, offset: float, **data: Any) -> int:
        body = {"sessionId": self.sid, "type": kind, "timestamp": self.base + offset, "data": data}
        r = self.client.post("/api/live/trace/event", json=body, headers={"authorization": f"Bearer {self.token}"})
        assert r.status_code in (204, 429), r.text
        return r.status_code

    def end(self) -> dict[str, Any]:
        r = self.client.post("/api/live/trace/end", json={"sessionId": self.sid, "token": self.token})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def spans(self, prefix: str) -> list[dict[str, Any]]:
        spans = self.client.app.state.recent.get(self.created["traceId"]) or []  # type: ignore[attr-defined]
        return sorted((s for s in spans if s["name"].split(" ")[0] == prefix), key=lambda s: s["start_time_unix_nano"])


def duration_ms(span: dict[str, Any]) -> float:
    return float(span["end_time_unix_nano"] - span["start_time_unix_nano"]) / 1e6


def said(span: dict[str, Any], attribute: str) -> str:
    return str(json.loads(span["attributes"][attribute])[0]["parts"][0]["content"])


# -- session creation ---------------------------------------------------------------------------------


def test_legacy_token_needs_an_api_key_when_keys_are_configured() -> None:
    with make_client(VTG_API_KEYS="key-one,key-two") as client:
        assert client.post("/api/live/token", json={}).status_code == 401
        assert client.post("/api/live/token", json={}, headers={"authorization": "Bearer nope"}).status_code == 401
        # Like POST /v1/sessions, a key is never taken from the query string.
        assert client.post("/api/live/token", json={}, params={"token": "key-one"}).status_code == 401
        r = client.post("/api/live/token", json={"userId": "u"}, headers={"authorization": "Bearer key-two"})
        assert r.status_code == 200 and r.json()["sessionId"] and r.json()["token"]


def test_without_minting_the_legacy_token_route_says_so_rather_than_answer_a_token_of_another_kind() -> None:
    with TestClient(create_app(load_telemetry(env={"VTG_SIGNING_KEY": "k" * 40}))) as client:
        r = client.post("/api/live/token", json={})
        assert r.status_code == 501 and r.headers["content-type"] == "application/problem+json"
        assert "VTG_PROVIDER_TOKENS" in r.json()["detail"]
        assert "token" not in r.json() and len(client.cookies) == 0
        # Nothing was started for it.
        assert "vtg_sessions_started_total 0.0" in client.get("/metrics").text


def test_a_flood_of_legacy_token_requests_is_refused_with_retry_after() -> None:
    with make_client(VTG_SESSION_CREATE_RATE_PER_CLIENT="0.1") as client:  # a burst of one
        assert client.post("/api/live/token", json={}, headers=AUTH).status_code == 200
        flood = client.post("/api/live/token", json={}, headers=AUTH)
        assert flood.status_code == 429 and int(flood.headers["retry-after"]) >= 1
        # The same per-client budget as POST /v1/sessions: one route cannot be used to get around the other.
        assert client.post("/v1/sessions", json={}, headers=AUTH).status_code == 429


# -- event limits ----------------------------------------------------------------------------------------


def test_a_flood_of_legacy_events_is_refused_with_retry_after() -> None:
    with make_client(VTG_EVENT_RATE_PER_SESSION="0.1") as client:  # a burst of one
        legacy = Legacy(client)
        assert legacy.send("turn_start", 0, turnNumber=1, userTranscript="hi") == 204
        body = {"sessionId": legacy.sid, "type": "turn_start", "timestamp": legacy.base + 1,
                "data": {"turnNumber": 2, "userTranscript": "again"}}
        # The token is checked first: an unauthenticated flood is refused as such and spends nothing.
        client.cookies.clear()  # the token route set the session's ingest cookie
        assert client.post("/api/live/trace/event", json=body).status_code == 401
        flood = client.post("/api/live/trace/event", json=body, params={"token": legacy.token})
        assert flood.status_code == 429 and int(flood.headers["retry-after"]) >= 1
        assert legacy.end()["summary"]["totalTurns"] == 1, "the refused event was not applied"


# -- turns -----------------------------------------------------------------------------------------------


def test_each_distinct_turn_number_gets_its_own_turn_span_without_turn_complete(client: TestClient) -> None:
    legacy = Legacy(client)
    for n in range(1, 5):
        assert legacy.send("turn_start", n * 10, turnNumber=n, userTranscript=f"question {n}") == 204
    assert legacy.end()["summary"]["totalTurns"] == 4
    turns = legacy.spans("invoke_agent")
    assert [said(t, "gen_ai.input.messages") for t in turns] == [f"question {n}" for n in range(1, 5)]
    assert [t["attributes"]["gen_ai.agent.invocation.end_reason"] for t in turns] == [
        "completed", "completed", "completed", "session_closed"]
    # An unfinished turn ends where the next one begins.
    assert [duration_ms(t) for t in turns[:3]] == pytest.approx([10, 10, 10], abs=0.01)


def test_completed_and_unfinished_turns_mix_and_any_first_event_of_a_turn_starts_it(client: TestClient) -> None:
    legacy = Legacy(client)
    legacy.send("turn_start", 0, turnNumber=1, userTranscript="one")
    legacy.send("turn_complete", 20, turnNumber=1, aiTranscript="answer one", durationMs=10)
    legacy.send("turn_start", 30, turnNumber=2, userTranscript="two")  # never completed
    legacy.send("tool_call", 40, turnNumber=3, toolName="lookup", toolArgs={"q": 3})  # turn 3 has no turn_start
    legacy.send("tool_result", 50, turnNumber=3, toolName="lookup", result="found", durationMs=10)
    legacy.send("turn_complete", 70, turnNumber=3, aiTranscript="answer three", durationMs=15)
    legacy.send("turn_start", 80, turnNumber=4, userTranscript="four")
    summary = legacy.end()["summary"]
    assert summary["totalTurns"] == 4 and summary["totalToolCalls"] == 1
    turns = legacy.spans("invoke_agent")
    assert len(turns) == 4
    assert "gen_ai.input.messages" not in turns[2]["attributes"]
    assert said(turns[2], "gen_ai.output.messages") == "answer three"
    tool = legacy.spans("execute_tool")[0]
    assert tool["parent_span_id"] == turns[2]["span_id"]


def test_a_turn_start_repeated_for_the_open_turn_does_not_split_it(client: TestClient) -> None:
    legacy = Legacy(client)
    legacy.send("turn_start", 0, turnNumber=7, userTranscript="what is ")
    legacy.send("turn_start", 5, turnNumber=7, userTranscript="the time")
    legacy.send("turn_complete", 30, turnNumber=7, aiTranscript="noon", durationMs=10)
    legacy.send("turn_start", 40, turnNumber=8, userTranscript="thanks")
    assert legacy.end()["summary"]["totalTurns"] == 2
    first = legacy.spans("invoke_agent")[0]
    assert said(first, "gen_ai.input.messages") == "what is the time"
    assert first["attributes"]["gen_ai.agent.invocation.end_reason"] == "completed"


# -- tools -----------------------------------------------------------------------------------------------


def test_two_calls_of_the_same_tool_in_one_turn_get_their_own_spans_and_results(client: TestClient) -> None:
    legacy = Legacy(client)
    legacy.send("turn_start", 0, turnNumber=1, userTranscript="weather in Oslo and Paris?")
    legacy.send("tool_call", 10, turnNumber=1, toolName="get_weather", toolArgs={"city": "Oslo"})
    legacy.send("tool_call", 20, turnNumber=1, toolName="get_weather", toolArgs={"city": "Paris"})
    # Results come oldest call first: each goes to the oldest call still without one.
    legacy.send("tool_result", 40, turnNumber=1, toolName="get_weather", result="cold", durationMs=30)
    legacy.send("tool_result", 70, turnNumber=1, toolName="get_weather", result="mild", durationMs=50)
    legacy.send("turn_complete", 90, turnNumber=1, aiTranscript="Cold and mild.", durationMs=10)
    assert legacy.end()["summary"]["totalToolCalls"] == 2
    tools = legacy.spans("execute_tool")
    assert len(tools) == 2
    attrs = [t["attributes"] for t in tools]
    assert [json.loads(a["gen_ai.tool.call.arguments"])["city"] for a in attrs] == ["Oslo", "Paris"]
    assert [a["gen_ai.tool.call.result"] for a in attrs] == ["cold", "mild"]
    assert [a["voice.tool.end_reason"] for a in attrs] == ["completed", "completed"]
    assert attrs[0]["gen_ai.tool.call.id"] != attrs[1]["gen_ai.tool.call.id"]
    assert [duration_ms(t) for t in tools] == pytest.approx([30, 50], abs=0.01)


def test_parallel_calls_of_one_tool_at_the_same_instant_are_told_apart_by_their_arguments(
    client: TestClient,
) -> None:
    legacy = Legacy(client)
    legacy.send("turn_start", 0, turnNumber=1, userTranscript="two cities")
    legacy.send("tool_call", 10, turnNumber=1, toolName="get_weather", toolArgs={"city": "Oslo"})
    legacy.send("tool_call", 10, turnNumber=1, toolName="get_weather", toolArgs={"city": "Rome"})
    legacy.send("tool_result", 30, turnNumber=1, toolName="get_weather", result="cold", durationMs=20)
    legacy.send("tool_result", 30, turnNumber=1, toolName="get_weather", result="warm", durationMs=20)
    legacy.end()
    tools = legacy.spans("execute_tool")
    results = {json.loads(t["attributes"]["gen_ai.tool.call.arguments"])["city"]:
               t["attributes"]["gen_ai.tool.call.result"] for t in tools}
    assert results == {"Oslo": "cold", "Rome": "warm"}


def test_calls_of_the_same_tool_in_different_turns_pair_within_their_turn(client: TestClient) -> None:
    legacy = Legacy(client)
    legacy.send("tool_call", 10, turnNumber=1, toolName="search", toolArgs={"q": "a"})
    legacy.send("tool_call", 20, turnNumber=2, toolName="search", toolArgs={"q": "b"})  # turn 1 left open
    legacy.send("tool_result", 40, turnNumber=2, toolName="search", result="B", durationMs=20)
    legacy.send("tool_result", 50, turnNumber=1, toolName="search", result="A", durationMs=40)  # after its turn
    legacy.end()
    results = {json.loads(a["gen_ai.tool.call.arguments"])["q"]: a["gen_ai.tool.call.result"]
               for a in (t["attributes"] for t in legacy.spans("execute_tool"))}
    assert results == {"a": "A", "b": "B"}


def test_a_result_this_process_has_no_call_for_is_paired_by_its_duration(client: TestClient) -> None:
    legacy = Legacy(client)
    legacy.send("turn_start", 0, turnNumber=1, userTranscript="x")
    legacy.send("tool_call", 10, turnNumber=1, toolName="slow", toolArgs={})
    client.app.state.legacy_tool_calls.forget(legacy.sid)  # type: ignore[attr-defined]  # e.g. another replica
    legacy.send("tool_result", 110, turnNumber=1, toolName="slow", result="done", durationMs=100)
    legacy.end()
    tool = legacy.spans("execute_tool")[0]
    assert tool["attributes"]["voice.tool.end_reason"] == "completed"
    assert duration_ms(tool) == pytest.approx(100, abs=0.01)


def duplicates(client: TestClient) -> float:
    metrics = client.get("/metrics").text
    line = next(x for x in metrics.splitlines() if x.startswith("vtg_events_duplicate_total"))
    return float(line.split()[-1])


# -- replays ---------------------------------------------------------------------------------------------


def test_a_replayed_legacy_event_is_deduplicated(client: TestClient) -> None:
    legacy = Legacy(client)
    script: list[tuple[str, float, dict[str, Any]]] = [
        ("turn_start", 0, {"turnNumber": 1, "userTranscript": "hi"}),
        ("tool_call", 10, {"turnNumber": 1, "toolName": "t", "toolArgs": {"n": 1}}),
        ("tool_call", 20, {"turnNumber": 1, "toolName": "t", "toolArgs": {"n": 2}}),
        ("tool_result", 30, {"turnNumber": 1, "toolName": "t", "result": "r1", "durationMs": 20}),
        ("tool_result", 40, {"turnNumber": 1, "toolName": "t", "result": "r2", "durationMs": 20}),
        ("turn_complete", 60, {"turnNumber": 1, "aiTranscript": "ok", "durationMs": 10}),
        ("turn_start", 70, {"turnNumber": 2, "userTranscript": "bye"}),
    ]
    # Every canonical event a legacy event maps to comes back as a duplicate when it is sent again.
    mapped = {"turn_start": 2, "tool_call": 2, "tool_result": 1, "turn_complete": 4}
    for kind, offset, data in script:
        assert legacy.send(kind, offset, **data) == 204
        before = duplicates(client)
        assert legacy.send(kind, offset, **data) == 204  # a retry: accepted, and changes nothing
        assert duplicates(client) - before == mapped[kind], kind
    summary = legacy.end()["summary"]
    assert summary["totalTurns"] == 2 and summary["totalToolCalls"] == 2
    assert len(legacy.spans("invoke_agent")) == 2
    tools = legacy.spans("execute_tool")
    # The replayed first result did not take the second call's place.
    assert [t["attributes"]["gen_ai.tool.call.result"] for t in tools] == ["r1", "r2"]


def test_legacy_event_ids_depend_only_on_the_legacy_fields() -> None:
    body = {"sessionId": "s", "type": "tool_call", "timestamp": 1_700_000_000_000,
            "data": {"turnNumber": 3, "toolName": "t", "toolArgs": {"a": [1, 2]}}}
    first = legacy_to_events(body, "s", LegacyToolCalls())
    again = legacy_to_events(dict(body), "s", LegacyToolCalls())  # another process
    assert first == again
    assert [e["type"] for e in first] == ["model.turn_complete", "tool.call"]
    assert all(len(e["id"]) <= 128 for e in first)
    iso = legacy_to_events({**body, "timestamp": "2023-11-14T22:13:20Z"}, "s", LegacyToolCalls())
    assert iso == first, "the same instant written as a date is the same event"


def test_pairing_state_is_bounded_and_forgotten_at_the_end(client: TestClient) -> None:
    calls = LegacyToolCalls(max_sessions=2)
    for sid in ("a", "b", "c"):
        calls.call(sid, f"{sid}-key", ("1", "t"), "call")
    assert len(calls) == 2
    assert calls.result("a", "a-result", ("1", "t"), "fallback") == "fallback", "the oldest session was evicted"
    assert calls.result("c", "c-result", ("1", "t"), "fallback") == "call"
    legacy = Legacy(client)
    legacy.send("tool_call", 10, turnNumber=1, toolName="t")
    pairing = client.app.state.legacy_tool_calls  # type: ignore[attr-defined]
    assert len(pairing) == 1
    legacy.end()
    assert len(pairing) == 0


def test_bad_legacy_fields_are_refused_with_their_path(client: TestClient) -> None:
    legacy = Legacy(client)
    headers = {"authorization": f"Bearer {legacy.token}"}
    cases = [
        ({"type": "tool_call", "data": {"turnNumber": 1, "toolName": "x" * 257}}, "data.toolName"),
        ({"type": "turn_start", "data": {"turnNumber": True}}, "data.turnNumber"),
        ({"type": "turn_start", "data": {"turnNumber": [1]}}, "data.turnNumber"),
        ({"type": "nope", "data": {}}, "type"),
    ]
    for body, path in cases:
        r = client.post("/api/live/trace/event", json={"sessionId": legacy.sid, **body}, headers=headers)
        assert r.status_code == 422, r.text
        assert [e["path"] for e in r.json()["errors"]] == [path]


def test_a_legacy_event_that_cannot_be_mapped_is_refused_whole_naming_the_legacy_field(client: TestClient) -> None:
    legacy = Legacy(client)
    headers = {"authorization": f"Bearer {legacy.token}"}
    assert legacy.send("turn_start", 0, turnNumber=1, userTranscript="hi") == 204
    # The duration puts the turn's start before the epoch: nothing of it may be applied.
    bad = {"sessionId": legacy.sid, "type": "turn_complete", "timestamp": 1000,
           "data": {"turnNumber": 1, "aiTranscript": "hello", "durationMs": 5000}}
    r = client.post("/api/live/trace/event", json=bad, headers=headers)
    assert r.status_code == 422 and [e["path"] for e in r.json()["errors"]] == ["data.durationMs"]
    far = {"sessionId": legacy.sid, "type": "turn_start", "timestamp": 1e300, "data": {"turnNumber": 2}}
    r = client.post("/api/live/trace/event", json=far, headers=headers)
    assert r.status_code == 422 and [e["path"] for e in r.json()["errors"]] == ["timestamp"]
    state = client.get(f"/v1/sessions/{legacy.sid}", headers=headers).json()
    # Turn 1 still open and nothing more: the refused events left no trace.
    assert state["open_turn"] == 1 and state["summary"]["turns"] == 1


def test_legacy_token_errors_name_the_legacy_fields(client: TestClient) -> None:
    r = client.post("/api/live/token", json={"sessionId": "bad id/with slash", "userId": "x" * 300}, headers=AUTH)
    assert r.status_code == 422
    assert sorted(e["path"] for e in r.json()["errors"]) == ["sessionId", "userId"]
