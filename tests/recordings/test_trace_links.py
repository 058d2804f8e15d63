"""The recording on the trace: the root links the call, each turn its range; a failing store spares the events."""

from __future__ import annotations

from pathlib import Path

import pytest
from recording_app import LOOPBACK, Clock, make_app, metric, start
from starlette.testclient import TestClient


@pytest.fixture
def clock() -> Clock:
    return Clock()


def events_at(base_ms: float, *timeline: tuple[str, float]) -> list[dict[str, object]]:
    return [{"type": kind, "id": f"e{i}", "seq": i, "ts": base_ms + at_s * 1000}
            for i, (kind, at_s) in enumerate(timeline)]


def test_the_root_links_the_recording_and_each_turn_its_time_range(tmp_path: Path, clock: Clock) -> None:
    with TestClient(make_app((tmp_path / "rec").as_uri(), clock), client=LOOPBACK) as c:
        s = start(c)
        rec_start = clock.now_ns / 1e6 + 500  # the browser began recording half a second in (its clock agrees)
        clock.advance(10.5)
        now_ms = clock.now_ns / 1e6
        assert s.upload(0, b"a" * 100, start=rec_start).status_code == 201
        timeline = events_at(rec_start, ("user.speech_start", 1.0), ("user.speech_end", 2.0),
                             ("model.response_start", 2.5), ("model.turn_complete", 4.0),
                             ("user.speech_start", 5.0), ("model.response_start", 6.0), ("model.interrupted", 7.5))
        r = c.post(f"/v1/sessions/{s.id}/events", json={"events": timeline, "sent_at": now_ms}, headers=s.auth)
        assert r.json()["accepted"] == len(timeline)
        assert s.end().status_code == 200
        spans = s.spans()
    root = next(x for x in spans if x["name"] == "voice_session")
    attrs = root["attributes"]
    uri = attrs["voice.recording.uri"]
    assert uri.startswith(f"/v1/recordings/{s.id}?exp=") and "&sig=" in uri
    assert attrs["voice.recording.format"] == "audio/webm;codecs=opus"
    assert attrs["voice.recording.channel_layout"] == "stereo: left=user, right=model"
    assert attrs["voice.recording.duration_s"] == pytest.approx(10.0, abs=0.01)
    assert attrs["voice.recording.start_time_unix_nano"] == pytest.approx(rec_start * 1e6, abs=1000)
    turns = sorted((x for x in spans if x["name"].startswith("invoke_agent")), key=lambda x: x["start_time_unix_nano"])
    assert [t["attributes"]["voice.recording.uri"] for t in turns] == [f"{uri}#t=1.000,4.000", f"{uri}#t=5.000,7.500"]
    assert [(t["attributes"]["voice.recording.start_offset_s"], t["attributes"]["voice.recording.end_offset_s"])
            for t in turns] == [(1.0, 4.0), (5.0, 7.5)]
    # Nothing else carries recording attributes.
    others = [x for x in spans if x not in turns and x is not root]
    assert others and not any(k.startswith("voice.recording.") for x in others for k in x["attributes"])


def test_a_session_without_a_recording_carries_no_recording_attributes(tmp_path: Path) -> None:
    with TestClient(make_app((tmp_path / "rec").as_uri()), client=LOOPBACK) as c:
        s = start(c, record_audio=False)
        s.events(*events_at(0, ("user.speech_start", 0), ("model.turn_complete", 0)))
        s.end()
        assert not any(k.startswith("voice.recording.") for x in s.spans() for k in x["attributes"])


def test_with_the_store_down_uploads_fail_countably_while_events_and_the_trace_go_on(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # An S3 endpoint nobody listens on: every store call fails at connect.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with TestClient(make_app("s3://recordings/calls"), client=LOOPBACK) as c:
        s = start(c)
        r = s.upload(0, b"a" * 100)
        assert r.status_code == 503 and r.headers["retry-after"].isdigit()
        assert r.headers["content-type"] == "application/problem+json"
        r = s.events(*events_at(0, ("user.speech_start", 0), ("model.turn_complete", 0)))
        assert r.status_code == 202 and r.json()["accepted"] == 2
        assert s.end().json()["turns"] == 1
        assert metric(c, 'vtg_recording_storage_failures_total{operation="put"}') == 1
        assert metric(c, 'vtg_recording_rejected_total{reason="recording-storage-unavailable"}') == 1
        assert metric(c, 'vtg_events_accepted_total{type="user.speech_start"}') == 1
        assert any(x["name"] == "voice_session" for x in s.spans())
