"""Event times that look odd from the gateway but are right: predicted playback, events buffered before the
session existed (gateway.sessions.clock)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from starlette.testclient import TestClient
from test_routes import auth, make_client, spans_of, start

from gateway.sessions.clock import MAX_AHEAD_MS, MAX_BEFORE_START_MS


def post(client: TestClient, s: dict[str, Any], events: list[dict[str, Any]], sent_at: float) -> None:
    for i, e in enumerate(events):
        e.setdefault("id", f"{e['type']}-{i}-{e['ts']}")
    r = client.post(f"/v1/sessions/{s['session_id']}/events", json={"events": events, "sent_at": sent_at},
                    headers=auth(s))
    assert r.status_code == 202 and r.json()["accepted"] == len(events), r.text


def end(client: TestClient, s: dict[str, Any]) -> list[dict[str, Any]]:
    assert client.post(f"/v1/sessions/{s['session_id']}/end", json={}, headers=auth(s)).status_code == 200
    return spans_of(client, s["trace_id"])


def one(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [span] = [x for x in spans if x["name"].split(" ")[0] == name]
    return span


def test_a_playback_start_predicted_a_little_ahead_keeps_its_time_and_pushes_nothing() -> None:
    """The player says at the first chunk when it will sound (now + its buffer); the batch leaves before."""
    with make_client() as client:
        s = start(client)
        now = int(time.time() * 1000)
        post(client, s, [
            {"type": "user.speech_start", "ts": now - 1500},
            {"type": "user.speech_end", "ts": now - 900},
            {"type": "model.response_start", "ts": now - 400},
            {"type": "model.audio_start", "ts": now - 300},
            {"type": "model.playback_start", "ts": now + 301},  # its buffer: it sounds 301 ms after sending
            {"type": "model.generation_complete", "ts": now - 250},
        ], sent_at=now)
        later = now + 2000
        post(client, s, [{"type": "model.playback_end", "ts": later}, {"type": "model.turn_complete", "ts": later}],
             sent_at=later)
        spans = end(client, s)
    turn = one(spans, "invoke_agent")
    # ms since the epoch in a double: exact to a microsecond
    assert turn["attributes"]["voice.latency.user_to_first_playback_ms"] == pytest.approx(1201, abs=0.01)
    assert turn["attributes"]["voice.latency.user_to_first_audio_ms"] == pytest.approx(600, abs=0.01)
    inference = one(spans, "realtime_inference")
    [generated] = [e for e in inference["events"] if e["name"] == "voice.generation_complete"]
    [first_audio] = [e for e in inference["events"] if e["name"] == "voice.first_audio"]
    gap = generated["time_unix_nano"] - first_audio["time_unix_nano"]
    assert gap == pytest.approx(50_000_000, abs=10_000), "pushed by the prediction"


def test_a_time_far_ahead_is_a_wrong_clock_and_takes_the_receive_time() -> None:
    with make_client() as client:
        s = start(client)
        now = int(time.time() * 1000)
        post(client, s, [{"type": "mark", "name": "far", "ts": now + MAX_AHEAD_MS + 60_000}], sent_at=now)
        received = time.time() * 1e9
        spans = end(client, s)
    [mark] = [e for e in one(spans, "voice_session")["events"] if e["name"] == "far"]
    assert mark["time_unix_nano"] <= received


def test_events_buffered_before_the_session_existed_keep_their_times_and_the_root_starts_at_them() -> None:
    """A page connects to the model while POST /v1/sessions is in flight, then flushes what it buffered."""
    with make_client() as client:
        before = int(time.time() * 1000) - 3000
        s = start(client)
        post(client, s, [
            {"type": "connection.open", "ts": before},
            {"type": "connection.setup_complete", "ts": before + 180},
            {"type": "tool.call", "ts": before + 500, "call_id": "c1", "name": "lookup"},
            {"type": "tool.result", "ts": before + 2500, "call_id": "c1"},
        ], sent_at=time.time() * 1000)
        spans = end(client, s)
        summary = client.get(f"/v1/sessions/{s['session_id']}", headers=auth(s)).json()["summary"]
    root = one(spans, "voice_session")
    assert root["start_time_unix_nano"] == one(spans, "voice.connection")["start_time_unix_nano"]
    tool = one(spans, "execute_tool")
    assert tool["end_time_unix_nano"] - tool["start_time_unix_nano"] == pytest.approx(2e9, abs=10_000)
    assert one(spans, "voice.connection")["attributes"]["voice.connection.setup_ms"] == pytest.approx(180, abs=0.01)
    assert summary["duration_ms"] >= 3000


def test_an_event_from_long_before_the_session_is_a_wrong_clock_and_takes_the_sessions_start() -> None:
    with make_client() as client:
        s = start(client)
        created = time.time() * 1e9
        now = int(time.time() * 1000)
        post(client, s, [{"type": "mark", "name": "old", "ts": now - MAX_BEFORE_START_MS - 60_000},
                         {"type": "mark", "name": "next", "ts": now - MAX_BEFORE_START_MS - 59_000}], sent_at=now)
        spans = end(client, s)
    root = one(spans, "voice_session")
    assert root["start_time_unix_nano"] <= created
    assert created - root["start_time_unix_nano"] < 60e9
    times = {e["name"]: e["time_unix_nano"] for e in root["events"]}
    assert times["old"] == times["next"] >= root["start_time_unix_nano"]


def test_an_idle_session_of_a_client_whose_clock_is_behind_ends_at_its_last_event() -> None:
    """The sweeper ends an idle session where its last event was: a gateway time, not to be skew-corrected again."""
    with make_client(VTG_SESSION_IDLE_TIMEOUT_S="0.3", VTG_SWEEP_INTERVAL_S="0.05") as client:
        s = start(client)
        behind = int(time.time() * 1000) - 30_000  # the client's clock reads 30 s less than the gateway's
        post(client, s, [{"type": "tool.call", "ts": behind - 200, "call_id": "c", "name": "t"}], sent_at=behind)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not client.get(
                f"/v1/sessions/{s['session_id']}", headers=auth(s)).json()["ended"]:
            time.sleep(0.05)
        spans = spans_of(client, s["trace_id"])
    tool = one(spans, "execute_tool")
    assert one(spans, "voice_session")["end_time_unix_nano"] == pytest.approx(tool["start_time_unix_nano"], abs=10_000)


def test_an_answer_timed_before_the_user_finished_leaves_the_latency_out() -> None:
    """Without ``sent_at`` nothing corrects a client clock running ahead: a transcript a little ahead of its
    arrival keeps its time, the first audio further ahead takes its arrival's, so it lands before the words it
    answers. The turn carries no latency then (the time-to-first-audio histogram reads it from the turn)."""
    with make_client() as client:
        s = start(client)
        now = int(time.time() * 1000)
        for i, (kind, ahead_ms) in enumerate([("user.transcript", MAX_AHEAD_MS - 1000),
                                              ("model.response_start", MAX_AHEAD_MS + 5000),
                                              ("model.audio_start", MAX_AHEAD_MS + 5100),
                                              ("model.turn_complete", MAX_AHEAD_MS + 6000)]):
            event = {"type": kind, "id": f"e{i}", "ts": now + ahead_ms}
            if kind == "user.transcript":
                event |= {"text": "hello", "final": True}
            r = client.post(f"/v1/sessions/{s['session_id']}/events", json=event, headers=auth(s))
            assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
        spans = end(client, s)
    turn = one(spans, "invoke_agent")
    assert "voice.latency.user_to_first_audio_ms" not in turn["attributes"]
    assert "voice.latency.user_to_first_chunk_ms" not in turn["attributes"]
    assert "voice.latency.source" not in turn["attributes"]
