from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.otel_config import load_telemetry
from gateway.simulate import three_turn_session

ENV = {"VTG_SIGNING_KEY": "k" * 40}


def make_client(**env: str) -> TestClient:
    telemetry = load_telemetry(env={**ENV, **env})
    return TestClient(create_app(telemetry))


@pytest.fixture
def client() -> Iterator[TestClient]:
    with make_client() as c:
        yield c


def start(client: TestClient, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/sessions", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def auth(session: dict[str, Any]) -> dict[str, str]:
    return {"authorization": f"Bearer {session['token']}"}


def spans_of(client: TestClient, trace_id: str) -> list[dict[str, Any]]:
    return client.app.state.recent.get(trace_id) or []  # type: ignore[attr-defined,no-any-return]


def test_session_start_announces_ids_token_and_traceparent(client: TestClient) -> None:
    s = start(client, user_id="u1", model="gemini-live", agent="helper", tags=["a"])
    assert len(s["trace_id"]) == 32 and len(s["root_span_id"]) == 16
    assert s["traceparent"] == f"00-{s['trace_id']}-{s['root_span_id']}-01"
    assert s["sampled"] is True and s["token"] and s["expires_at"] > time.time()
    assert s["idle_timeout_s"] == 300


def test_traceparent_header_joins_the_callers_trace(client: TestClient) -> None:
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    r = client.post("/v1/sessions", json={}, headers={"traceparent": tp})
    s = r.json()
    assert s["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    client.post(f"/v1/sessions/{s['session_id']}/end", json={}, headers=auth(s))
    root = next(x for x in spans_of(client, s["trace_id"]) if x["name"] == "voice_session")
    assert root["parent_span_id"] == "00f067aa0ba902b7"
    assert root["span_id"] == s["root_span_id"]


def test_client_chosen_session_id_is_kept_and_cannot_be_taken_twice(client: TestClient) -> None:
    assert start(client, session_id="call-42")["session_id"] == "call-42"
    r = client.post("/v1/sessions", json={"session_id": "call-42"})
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"


def test_bad_event_in_a_batch_is_listed_while_good_ones_are_kept(client: TestClient) -> None:
    s = start(client)
    r = client.post(f"/v1/sessions/{s['session_id']}/events", headers=auth(s), json={"events": [
        {"type": "user.transcript", "id": "1", "text": "hi"},
        {"type": "tool.call", "id": "2", "name": "x"},
        {"type": "no.such", "id": "3"},
        {"type": "model.response_start", "id": "4"},
    ]})
    assert r.status_code == 202
    body = r.json()
    assert body["accepted"] == 2 and body["duplicates"] == 0
    assert [(x["index"], x["errors"][0]["path"]) for x in body["rejected"]] == [
        (1, "events[1].call_id"), (2, "events[2].type")]
    assert "no.such" in body["rejected"][1]["errors"][0]["message"]
    state = client.get(f"/v1/sessions/{s['session_id']}", headers=auth(s)).json()
    assert state["open_turn"] == 1 and state["summary"]["turns"] == 1
    metrics = client.get("/metrics").text
    assert 'vtg_events_rejected_total{reason="invalid_event"} 2.0' in metrics


def test_text_plain_body_with_token_in_query_is_accepted(client: TestClient) -> None:
    s = start(client)
    body = json.dumps({"type": "mark", "id": "m1", "name": "beacon"})
    r = client.post(f"/v1/sessions/{s['session_id']}/events", params={"token": s["token"]}, content=body,
                    headers={"content-type": "text/plain;charset=UTF-8"})
    assert r.status_code == 202 and r.json()["accepted"] == 1


def test_events_need_the_token_of_that_very_session(client: TestClient) -> None:
    a, b = start(client), start(client)
    url = f"/v1/sessions/{a['session_id']}/events"
    event = {"type": "mark", "id": "1", "name": "x"}
    missing = client.post(url, json=event)
    assert missing.status_code == 401 and missing.headers["content-type"] == "application/problem+json"
    assert client.post(url, json=event, headers=auth(b)).status_code == 403
    assert client.post(url, json=event, headers={"authorization": "Bearer nonsense"}).status_code == 401
    assert client.post(f"/v1/sessions/{a['session_id']}/end", json={}, headers=auth(b)).status_code == 403
    assert client.post(url, json=event, headers=auth(a)).status_code == 202


def test_replayed_batch_is_deduplicated_and_exports_no_span_twice(client: TestClient) -> None:
    s = start(client)
    batch = {"events": [
        {"type": "user.transcript", "id": "1", "seq": 1, "text": "x"},
        {"type": "model.response_start", "id": "2", "seq": 2},
        {"type": "model.turn_complete", "id": "3", "seq": 3},
    ]}
    url = f"/v1/sessions/{s['session_id']}/events"
    assert client.post(url, json=batch, headers=auth(s)).json()["accepted"] == 3
    assert client.post(url, json=batch, headers=auth(s)).json() == {"accepted": 0, "duplicates": 3, "rejected": []}
    client.post(f"/v1/sessions/{s['session_id']}/end", json={}, headers=auth(s))
    names = Counter(x["name"] for x in spans_of(client, s["trace_id"]))
    assert names == {"voice_session": 1, "invoke_agent": 1, "realtime_inference": 1}
    span_ids = [x["span_id"] for x in spans_of(client, s["trace_id"])]
    assert len(span_ids) == len(set(span_ids))


def test_batch_is_applied_in_seq_order(client: TestClient) -> None:
    s = start(client)
    client.post(f"/v1/sessions/{s['session_id']}/events", headers=auth(s), json={"events": [
        {"type": "model.turn_complete", "id": "c", "seq": 3},
        {"type": "model.response_start", "id": "b", "seq": 2},
        {"type": "user.transcript", "id": "a", "seq": 1, "text": "x"},
    ]})
    state = client.get(f"/v1/sessions/{s['session_id']}", headers=auth(s)).json()
    assert state["open_turn"] is None and state["summary"]["turns"] == 1


def test_end_returns_the_summary_and_ending_twice_returns_the_same(client: TestClient) -> None:
    s = start(client)
    script = three_turn_session(time.time() * 1000 - 60_000, scale=0.001)
    for sent_at, events in script.batches[:-1]:
        client.post(f"/v1/sessions/{s['session_id']}/events", headers=auth(s),
                    json={"events": events, "sent_at": sent_at})
    last_at, last = script.batches[-1]
    r = client.post(f"/v1/sessions/{s['session_id']}/end", params={"token": s["token"]},
                    content=json.dumps({"reason": "user_disconnect", "events": last, "sent_at": last_at}),
                    headers={"content-type": "text/plain"})
    assert r.status_code == 200, r.text
    summary = r.json()
    assert summary["end_reason"] == "user_disconnect"
    assert (summary["turns"], summary["interruptions"], summary["tool_calls"], summary["connections"]) == (3, 1, 1, 2)
    assert summary["usage"]["input_tokens"] == sum(
        e["usage"]["promptTokenCount"] for e in script.all_events() if e["type"] == "model.usage")
    assert summary["events"]["accepted"] == len(last)
    again = client.post(f"/v1/sessions/{s['session_id']}/end", json={"reason": "completed"}, headers=auth(s)).json()
    assert again == {k: v for k, v in summary.items() if k != "events"}
    late = client.post(f"/v1/sessions/{s['session_id']}/events", headers=auth(s),
                       json={"type": "mark", "id": "late", "name": "x"})
    assert late.status_code == 409
    assert Counter(x["name"] for x in spans_of(client, s["trace_id"]))["voice_session"] == 1


def test_malformed_and_oversized_bodies_get_precise_problems(client: TestClient) -> None:
    s = start(client)
    url = f"/v1/sessions/{s['session_id']}/events"
    bad = client.post(url, content=b"{not json", headers=auth(s))
    assert bad.status_code == 400 and bad.json()["title"] == "Bad request"
    huge = client.post(url, content=b"[" + b"1," * 40_000 + b"1]", headers=auth(s))
    assert huge.status_code == 413
    wrong_shape = client.post(url, json=[1, 2], headers=auth(s))
    assert wrong_shape.status_code == 422 and wrong_shape.json()["errors"][0]["message"] == "expected an object"
    assert client.post(url, json={"events": "x"}, headers=auth(s)).json()["errors"][0]["path"] == "events"
    assert client.get("/healthz").status_code == 200


def test_a_body_malformed_past_a_bad_event_is_a_bad_request_and_the_session_keeps_working(client: TestClient) -> None:
    s = start(client)
    url = f"/v1/sessions/{s['session_id']}/events"
    for body in (b'{"events": [{"type": "mark", "id": 1}], "sent_at": }', b'{"type": "mark", "id": 1, "name": }'):
        r = client.post(url, content=body, headers=auth(s))
        assert r.status_code == 400 and r.json()["errors"] == [{"path": "", "message": "invalid JSON"}], r.text
    r = client.post(f"/v1/sessions/{s['session_id']}/end", content=b'{"reason": 5, "ts": }', headers=auth(s))
    assert r.status_code == 400
    assert client.post(url, json={"type": "mark", "id": "m", "name": "x"}, headers=auth(s)).json()["accepted"] == 1


def test_end_takes_its_final_events_as_a_list_or_nothing(client: TestClient) -> None:
    s = start(client)
    end = f"/v1/sessions/{s['session_id']}/end"
    r = client.post(end, json={"reason": "x" * 300, "ts": "soon", "events": []}, headers=auth(s))
    assert r.status_code == 422 and {e["path"] for e in r.json()["errors"]} == {"reason", "ts"}
    r = client.post(end, json={"events": "x"}, headers=auth(s))
    assert r.status_code == 422 and r.json()["errors"] == [{"path": "events", "message": "must be a list"}]
    r = client.post(end, json={"events": 0, "reason": "completed"}, headers=auth(s))
    assert r.status_code == 200 and "events" not in r.json()


def test_sent_at_out_of_any_clock_range_is_a_problem_and_the_session_keeps_working(client: TestClient) -> None:
    s = start(client)
    url = f"/v1/sessions/{s['session_id']}/events"
    far = client.post(url, json={"events": [{"type": "mark", "id": "m1", "name": "x"}], "sent_at": 1e308},
                      headers=auth(s))
    assert far.status_code == 422 and far.json()["errors"][0]["path"] == "sent_at"
    ok = client.post(url, json={"events": [{"type": "mark", "id": "m1", "name": "x"}]}, headers=auth(s))
    assert ok.json()["accepted"] == 1
    end = f"/v1/sessions/{s['session_id']}/end"
    far_end = client.post(end, json={"reason": "completed", "sent_at": 1e308,
                                     "events": [{"type": "mark", "id": "m2", "name": "y"}]}, headers=auth(s))
    assert far_end.status_code == 422 and far_end.json()["errors"][0]["path"] == "sent_at"
    assert client.post(end, json={"reason": "completed"}, headers=auth(s)).status_code == 200


def test_unknown_session_is_404(client: TestClient) -> None:
    s = start(client, session_id="real")
    # A token is scoped to its session, so probing another id is refused before any lookup.
    assert client.post("/v1/sessions/other/events", json={}, headers=auth(s)).status_code == 403


def test_operations_endpoints(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    start(client)
    metrics = client.get("/metrics").text
    assert "vtg_sessions_started_total 1.0" in metrics and "vtg_sessions_active 1.0" in metrics
    doc = client.get("/openapi.json").json()
    assert {"/v1/sessions", "/v1/sessions/{session_id}/events", "/v1/sessions/{session_id}/end"} <= set(doc["paths"])
    assert "ToolCall" in doc["components"]["schemas"]


def test_idle_session_ends_open_turn_with_timeout() -> None:
    with make_client(VTG_SESSION_IDLE_TIMEOUT_S="0.3", VTG_SWEEP_INTERVAL_S="0.05") as client:
        s = start(client)
        client.post(f"/v1/sessions/{s['session_id']}/events", headers=auth(s), json={"events": [
            {"type": "user.speech_start", "id": "1"}, {"type": "tool.call", "id": "2", "call_id": "c", "name": "t"}]})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            state = client.get(f"/v1/sessions/{s['session_id']}", headers=auth(s)).json()
            if state["ended"]:
                break
            time.sleep(0.05)
        assert state["ended"] and state["summary"]["end_reason"] == "timeout"
        spans = {x["name"]: x for x in spans_of(client, s["trace_id"])}
        assert spans["voice_session"]["attributes"]["voice.session.timeout_kind"] == "idle"
        assert spans["invoke_agent"]["attributes"]["gen_ai.agent.invocation.end_reason"] == "session_closed"
        assert spans["execute_tool t"]["attributes"]["voice.tool.end_reason"] == "session_closed"
        # The root ends where the last event was, not when the sweeper noticed.
        assert spans["voice_session"]["end_time_unix_nano"] == spans["invoke_agent"]["end_time_unix_nano"]


def test_a_busy_session_still_ends_at_its_maximum_duration() -> None:
    with make_client(VTG_SESSION_MAX_DURATION_S="0.5", VTG_SWEEP_INTERVAL_S="0.05") as client:
        s = start(client)
        url = f"/v1/sessions/{s['session_id']}/events"
        deadline, n, state = time.monotonic() + 10, 0, {}
        while time.monotonic() < deadline:
            n += 1
            r = client.post(url, headers=auth(s), json={"events": [{"type": "mark", "id": f"m{n}", "name": "tick"}]})
            state = client.get(f"/v1/sessions/{s['session_id']}", headers=auth(s)).json()
            if r.status_code != 202 or state["ended"]:
                break
            time.sleep(0.05)
        assert state["ended"] and state["summary"]["end_reason"] == "timeout"
        root = next(x for x in spans_of(client, s["trace_id"]) if x["name"] == "voice_session")
        assert root["attributes"]["voice.session.timeout_kind"] == "max_duration"


def test_activity_keeps_a_session_alive_past_the_idle_timeout() -> None:
    with make_client(VTG_SESSION_IDLE_TIMEOUT_S="0.4", VTG_SWEEP_INTERVAL_S="0.05") as client:
        s = start(client)
        for i in range(8):
            time.sleep(0.1)
            r = client.post(f"/v1/sessions/{s['session_id']}/events", headers=auth(s),
                            json={"type": "mark", "id": str(i), "name": "tick"})
            assert r.status_code == 202, "a session with recent events was ended"


def test_shutdown_ends_open_sessions_with_gateway_shutdown() -> None:
    client = make_client()
    with client:
        s = start(client)
        client.post(f"/v1/sessions/{s['session_id']}/events", headers=auth(s),
                    json={"type": "user.transcript", "id": "1", "text": "x"})
    spans = {x["name"]: x for x in spans_of(client, s["trace_id"])}
    assert spans["voice_session"]["attributes"]["voice.session.end_reason"] == "gateway_shutdown"
    assert spans["invoke_agent"]["attributes"]["gen_ai.agent.invocation.end_reason"] == "session_closed"


def test_a_ten_percent_sample_keeps_about_ten_percent_of_sessions_whole_and_none_partially() -> None:
    with make_client(OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="0.1",
                     VTG_SESSION_CREATE_RATE_PER_CLIENT="0") as client:
        sessions = []
        for _ in range(300):
            s = start(client)
            client.post(f"/v1/sessions/{s['session_id']}/events", headers=auth(s), json={"events": [
                {"type": "user.transcript", "id": "1", "text": "x"}, {"type": "model.response_start", "id": "2"},
                {"type": "model.turn_complete", "id": "3"}]})
            client.post(f"/v1/sessions/{s['session_id']}/end", json={}, headers=auth(s))
            sessions.append(s)
        kept = [s for s in sessions if s["sampled"]]
        assert 10 <= len(kept) <= 55, f"{len(kept)} of 300 sampled at 10%"
        for s in sessions:
            names = sorted(x["name"] for x in spans_of(client, s["trace_id"]))
            expected = ["invoke_agent", "realtime_inference", "voice_session"] if s["sampled"] else []
            assert names == expected, "a session is traced whole or not at all"
            assert s["traceparent"].endswith("-01" if s["sampled"] else "-00")


def test_free_text_end_reasons_share_one_metric_series(client: TestClient) -> None:
    for reason in ("completed", "user_disconnect", "caller said bye", "x" * 200):
        s = start(client)
        assert client.post(f"/v1/sessions/{s['session_id']}/end", json={"reason": reason},
                           headers=auth(s)).json()["end_reason"] == reason
    text = client.get("/metrics").text
    ended = {line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
             for line in text.splitlines() if line.startswith("vtg_sessions_ended_total{")}
    assert ended == {'reason="completed"': 1, 'reason="user_disconnect"': 1, 'reason="other"': 2}
