"""The whole call as Langfuse media on its trace: a local stand-in checks the three requests Langfuse documents for
media uploads (create with the hash, PUT to the presigned URL, PATCH the upload's outcome)."""

from __future__ import annotations

import array
import base64
import hashlib
import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from recording_app import LOOPBACK, Clock, make_app, metric, start
from starlette.testclient import TestClient

AUTH = "Basic " + base64.b64encode(b"pk-lf-test:sk-lf-test").decode()


class MediaStandIn:
    """Langfuse's media endpoints as documented, and the object storage behind its presigned upload URLs."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.uploaded: dict[str, bytes] = {}
        self.upload_status = 200
        self.media: list[dict[str, Any]] = []  # each create request's body, in order: media-1, media-2, ...
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> dict[str, Any]:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = {"method": self.command, "path": self.path, "headers": headers, "body": body}
                stand_in.requests.append(request)
                return request

            def _answer(self, status: int, payload: object = None) -> None:
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                request = self._record()
                if self.path in ("/api/public/otel/v1/traces", "/api/public/scores"):  # not under test here
                    return self._answer(200, {})
                if request["headers"].get("authorization") != AUTH:
                    return self._answer(401, {"message": "no"})
                if self.path == "/api/public/ingestion":  # a batch: 207, each event's outcome
                    batch = json.loads(request["body"])["batch"]
                    return self._answer(207, {"successes": [{"id": e["id"], "status": 201} for e in batch],
                                              "errors": []})
                if self.path != "/api/public/media":
                    return self._answer(404, {"message": "no"})
                body = json.loads(request["body"])
                missing = {"traceId", "contentType", "contentLength", "sha256Hash", "field"} - set(body)
                if missing or body["field"] not in ("input", "output", "metadata"):
                    return self._answer(400, {"message": f"invalid: {sorted(missing)}"})
                stand_in.media.append(body)
                media_id = f"media-{len(stand_in.media)}"
                port = stand_in.server.server_address[1]
                self._answer(200, {"mediaId": media_id,
                                   "uploadUrl": f"http://127.0.0.1:{port}/storage/{media_id}?X-Amz-Signature=s"})

            def do_PUT(self) -> None:
                request = self._record()
                stand_in.uploaded[self.path.split("?")[0]] = request["body"]
                self._answer(stand_in.upload_status)

            def do_PATCH(self) -> None:
                request = self._record()
                self._answer(204 if request["headers"].get("authorization") == AUTH else 401)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def langfuse(monkeypatch: pytest.MonkeyPatch) -> Iterator[MediaStandIn]:
    stand_in = MediaStandIn()
    for name, value in {"LANGFUSE_BASE_URL": stand_in.url, "LANGFUSE_PUBLIC_KEY": "pk-lf-test",
                        "LANGFUSE_SECRET_KEY": "sk-lf-test"}.items():
        monkeypatch.setenv(name, value)
    yield stand_in
    stand_in.close()


def test_a_finished_recording_is_uploaded_to_its_trace_once_the_grace_window_passed(
        tmp_path: Path, langfuse: MediaStandIn) -> None:
    clock = Clock()
    app = make_app((tmp_path / "rec").as_uri(), clock, OTEL_TRACES_EXPORTER="langfuse",
                   LANGFUSE_BASE_URL=langfuse.url, LANGFUSE_PUBLIC_KEY="pk-lf-test", LANGFUSE_SECRET_KEY="sk-lf-test")
    with TestClient(app, client=LOOPBACK) as c:
        publisher = app.state.recordings.publisher
        assert publisher is not None
        s = start(c)
        parts = [b"\x1aE\xdf\xa3" + b"a" * 3000, b"b" * 2000]
        for n, data in enumerate(parts):
            assert s.upload(n, data).status_code == 201
        assert c.portal.call(publisher.publish_due) == 0  # type: ignore[union-attr]  # still open
        assert s.end().status_code == 200
        clock.advance(10)
        assert c.portal.call(publisher.publish_due) == 0  # type: ignore[union-attr]  # late chunks may come
        assert s.upload(2, b"c" * 100).status_code == 201
        parts.append(b"c" * 100)
        clock.advance(30)
        assert c.portal.call(publisher.publish_due) == 1  # type: ignore[union-attr]
        assert c.portal.call(publisher.publish_due) == 0  # type: ignore[union-attr]  # once
        assert metric(c, 'vtg_recording_langfuse_media_total{outcome="published"}') == 1

    whole = b"".join(parts)
    sha256 = base64.b64encode(hashlib.sha256(whole).digest()).decode()
    create, put, patch = [r for r in langfuse.requests if r["path"].startswith(("/api/public/media", "/storage"))]
    assert create["method"] == "POST" and create["path"] == "/api/public/media"
    assert create["headers"]["authorization"] == AUTH
    assert json.loads(create["body"]) == {"traceId": s.trace_id, "contentType": "audio/webm",
                                          "contentLength": len(whole), "sha256Hash": sha256, "field": "metadata"}
    assert put["method"] == "PUT" and put["path"] == "/storage/media-1?X-Amz-Signature=s"
    assert "authorization" not in put["headers"]  # a presigned URL carries its own authority
    assert put["headers"]["content-type"] == "audio/webm"
    assert put["headers"]["x-amz-checksum-sha256"] == sha256
    assert put["headers"]["content-length"] == str(len(whole)) and "transfer-encoding" not in put["headers"]
    assert put["body"] == whole
    assert patch["method"] == "PATCH" and patch["path"] == "/api/public/media/media-1"
    patched = json.loads(patch["body"])
    assert patched["uploadHttpStatus"] == 200 and patched["uploadHttpError"] is None
    assert patched["uploadedAt"].endswith("Z") and isinstance(patched["uploadTimeMs"], int)


def test_a_failed_upload_is_reported_to_langfuse_and_counted(tmp_path: Path, langfuse: MediaStandIn) -> None:
    langfuse.upload_status = 403
    clock = Clock()
    app = make_app((tmp_path / "rec").as_uri(), clock, OTEL_TRACES_EXPORTER="langfuse",
                   LANGFUSE_BASE_URL=langfuse.url, LANGFUSE_PUBLIC_KEY="pk-lf-test", LANGFUSE_SECRET_KEY="sk-lf-test")
    with TestClient(app, client=LOOPBACK) as c:
        s = start(c)
        assert s.upload(0, b"a" * 100).status_code == 201
        s.end()
        clock.advance(60)
        assert c.portal.call(app.state.recordings.publisher.publish_due) == 0  # type: ignore[union-attr]
        assert metric(c, 'vtg_recording_langfuse_media_total{outcome="failed"}') == 1
    patch = next(r for r in langfuse.requests if r["method"] == "PATCH")
    assert json.loads(patch["body"])["uploadHttpStatus"] == 403


def test_without_the_langfuse_exporter_nothing_is_published(tmp_path: Path, langfuse: MediaStandIn) -> None:
    app = make_app((tmp_path / "rec").as_uri())
    assert app.state.recordings.publisher is None


def stereo_call(tmp_path: Path) -> Path:
    """12 s of a call: the user speaks (left) at 0.5 s and 6.5 s, the model answers (right) at 3.5 s and 9.5 s."""
    user, model = tmp_path / "user.wav", tmp_path / "model.wav"
    subprocess.run(["espeak-ng", "-w", str(user), "Hello, can you book a table"], check=True)
    subprocess.run(["espeak-ng", "-w", str(model), "Of course, what time"], check=True)
    call = tmp_path / "call.webm"
    graph = ("[0]aresample=48000,asplit[u1][u2];[1]aresample=48000,asplit[m1][m2];"
             "[u1]adelay=500,apad=whole_dur=6[ua];[u2]apad=whole_dur=6[ub];[ua][ub]concat=n=2:v=0:a=1[l];"
             "[m1]adelay=3500,apad=whole_dur=6[ma];[m2]adelay=3500,apad=whole_dur=6[mb];[ma][mb]concat=n=2:v=0:a=1[r];"
             "[l][r]join=inputs=2:channel_layout=stereo[a]")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(user), "-i", str(model), "-filter_complex", graph,
                    "-map", "[a]", "-c:a", "libopus", "-b:a", "64k", str(call)], check=True)
    return call


def levels(clip: bytes, window_s: float = 0.1) -> list[float]:
    """RMS per window of a mono clip, 0..1."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", "-", "-f", "s16le", "-ac", "1", "-ar", "16000", "-"],
                         input=clip, check=True, capture_output=True).stdout
    samples = array.array("h", raw)
    per = int(16000 * window_s)
    return [(sum(x * x for x in samples[i:i + per]) / per) ** 0.5 / 32768
            for i in range(0, len(samples) - per + 1, per)]


def loudness(values: list[float], start_s: float, end_s: float, window_s: float = 0.1) -> float:
    part = values[int(start_s / window_s):int(end_s / window_s)]
    return max(part) if part else 0.0


def test_each_turn_gets_its_user_and_model_audio_as_media_on_its_observation(
        tmp_path: Path, langfuse: MediaStandIn) -> None:
    clock = Clock()
    app = make_app((tmp_path / "rec").as_uri(), clock, OTEL_TRACES_EXPORTER="langfuse",
                   LANGFUSE_BASE_URL=langfuse.url, LANGFUSE_PUBLIC_KEY="pk-lf-test", LANGFUSE_SECRET_KEY="sk-lf-test")
    recording = stereo_call(tmp_path).read_bytes()
    with TestClient(app, client=LOOPBACK) as c:
        publisher = app.state.recordings.publisher
        s = start(c)
        rec_start = clock.now_ns / 1e6
        clock.advance(12.5)
        third = len(recording) // 3
        for n, part in enumerate((recording[:third], recording[third:2 * third], recording[2 * third:])):
            assert s.upload(n, part, start=rec_start if n == 0 else None).status_code == 201
        timeline: list[dict[str, Any]] = [
            {"type": "user.speech_start", "at": 0.4}, {"type": "user.transcript", "at": 2.5, "text": "Book a table"},
            {"type": "user.speech_end", "at": 3.0}, {"type": "model.response_start", "at": 3.3},
            {"type": "model.transcript", "at": 3.5, "text": "What time?"}, {"type": "model.turn_complete", "at": 5.5},
            {"type": "user.speech_start", "at": 6.4}, {"type": "user.speech_end", "at": 9.0},
            {"type": "model.response_start", "at": 9.3}, {"type": "model.turn_complete", "at": 11.5}]
        events = [{**{k: v for k, v in e.items() if k != "at"}, "id": f"e{i}", "seq": i,
                   "ts": rec_start + e["at"] * 1000} for i, e in enumerate(timeline)]
        r = c.post(f"/v1/sessions/{s.id}/events", json={"events": events, "sent_at": clock.now_ns / 1e6},
                   headers=s.auth)
        assert r.json()["accepted"] == len(events), r.text
        assert s.end().status_code == 200
        turns = sorted((x for x in s.spans() if x["name"].startswith("invoke_agent")),
                       key=lambda x: x["start_time_unix_nano"])
        clock.advance(60)
        assert c.portal.call(publisher.publish_due) == 1  # type: ignore[union-attr]
        assert metric(c, 'vtg_recording_langfuse_media_total{outcome="turn_published"}') == 2

    # The whole call on the trace, then each turn's two clips on its observation: input the user, output the model.
    assert [(m.get("observationId"), m["field"], m["contentType"]) for m in langfuse.media] == [
        (None, "metadata", "audio/webm"),
        (turns[0]["span_id"], "input", "audio/ogg"), (turns[0]["span_id"], "output", "audio/ogg"),
        (turns[1]["span_id"], "input", "audio/ogg"), (turns[1]["span_id"], "output", "audio/ogg")]
    assert all(m["traceId"] == s.trace_id for m in langfuse.media)
    clips: dict[str, bytes] = {}
    for i, created in enumerate(langfuse.media, start=1):
        media_id = f"media-{i}"
        put = next(r for r in langfuse.requests
                   if r["method"] == "PUT" and r["path"].startswith(f"/storage/{media_id}?"))
        sha256 = base64.b64encode(hashlib.sha256(put["body"]).digest()).decode()
        assert created["sha256Hash"] == put["headers"]["x-amz-checksum-sha256"] == sha256
        assert created["contentLength"] == len(put["body"]) == int(put["headers"]["content-length"])
        assert put["headers"]["content-type"] == created["contentType"] and "authorization" not in put["headers"]
        patch = next(r for r in langfuse.requests if r["method"] == "PATCH"
                     and r["path"] == f"/api/public/media/{media_id}")
        assert json.loads(patch["body"])["uploadHttpStatus"] == 200 and patch["headers"]["authorization"] == AUTH
        clips[media_id] = put["body"]

    # The clips are the turn's range of each channel: the user's words in the user clip, the answer in the model's.
    first_user, first_model = levels(clips["media-2"]), levels(clips["media-3"])
    assert len(first_user) == len(first_model) == pytest.approx(51, abs=2)  # the turn: 0.4 s to 5.5 s
    assert loudness(first_user, 0.3, 1.5) > 0.02 and loudness(first_user, 3.3, 4.5) < 0.003
    assert loudness(first_model, 3.3, 4.5) > 0.02 and loudness(first_model, 0.3, 2.5) < 0.003

    # The observations' input and output carry the references (one span-update per turn, by the ingestion API).
    (ingestion,) = [r for r in langfuse.requests if r["path"] == "/api/public/ingestion"]
    assert ingestion["headers"]["authorization"] == AUTH
    batch = json.loads(ingestion["body"])["batch"]
    assert [e["type"] for e in batch] == ["span-update", "span-update"]
    assert all(e["id"] and e["timestamp"].endswith("Z") for e in batch)
    ref = "@@@langfuseMedia:type=audio/ogg|id={}|source=bytes@@@".format
    first, second = (e["body"] for e in batch)
    assert (first["id"], first["traceId"]) == (turns[0]["span_id"], s.trace_id)
    assert first["input"]["audio"] == ref("media-2") and first["output"]["audio"] == ref("media-3")
    assert first["input"]["messages"] == json.loads(turns[0]["attributes"]["gen_ai.input.messages"])
    assert first["output"]["messages"] == json.loads(turns[0]["attributes"]["gen_ai.output.messages"])
    assert second["id"] == turns[1]["span_id"]
    assert second["input"]["audio"] == ref("media-4") and second["output"]["audio"] == ref("media-5")


def test_the_turn_log_is_bounded_and_off_without_a_publisher() -> None:
    from gateway.recordings.turn_clips import TurnLog, TurnRange

    log = TurnLog(max_sessions=2, max_turns=2, max_chars=10)
    log.add("s1", TurnRange("a", 0, 1))
    assert log.pop("s1") == []  # nobody publishes: nothing kept
    log.enable()
    log.add("s1", TurnRange("a", 0, 1, "12345", "123"))
    log.add("s1", TurnRange("a", 0, 1, "12345", "123"))  # the same span again: once
    log.add("s1", TurnRange("b", 1, 2, "12345", None))  # past the characters' budget: kept without its words
    log.add("s1", TurnRange("c", 2, 3))  # past the turns per call
    assert [(t.span_id, t.input_messages) for t in log.pop("s1")] == [("a", "12345"), ("b", None)]
    log.add("s2", TurnRange("d", 0, 1, "1234567890", None))
    log.add("s3", TurnRange("e", 0, 1))
    log.add("s4", TurnRange("f", 0, 1))  # past the sessions: the oldest goes, and its words' budget with it
    assert log.pop("s2") == []
    log.add("s5", TurnRange("g", 0, 1, "1234567890", None))
    assert log.pop("s5")[0].input_messages == "1234567890"


def test_a_recording_that_cannot_be_cut_still_publishes_the_call_and_counts_its_turns(
        tmp_path: Path, langfuse: MediaStandIn) -> None:
    clock = Clock()
    app = make_app((tmp_path / "rec").as_uri(), clock, OTEL_TRACES_EXPORTER="langfuse",
                   LANGFUSE_BASE_URL=langfuse.url, LANGFUSE_PUBLIC_KEY="pk-lf-test", LANGFUSE_SECRET_KEY="sk-lf-test")
    with TestClient(app, client=LOOPBACK) as c:
        s = start(c)
        rec_start = clock.now_ns / 1e6
        clock.advance(5)
        assert s.upload(0, b"not audio at all" * 100, start=rec_start).status_code == 201
        events = [{"type": t, "id": f"e{i}", "seq": i, "ts": rec_start + at * 1000}
                  for i, (t, at) in enumerate((("user.speech_start", 0.5), ("model.response_start", 2.0),
                                               ("model.turn_complete", 3.0)))]
        r = c.post(f"/v1/sessions/{s.id}/events", json={"events": events, "sent_at": clock.now_ns / 1e6},
                   headers=s.auth)
        assert r.json()["accepted"] == 3
        s.end()
        clock.advance(60)
        assert c.portal.call(app.state.recordings.publisher.publish_due) == 1  # type: ignore[union-attr]
        assert metric(c, 'vtg_recording_langfuse_media_total{outcome="published"}') == 1
        assert metric(c, 'vtg_recording_langfuse_media_total{outcome="turn_failed"}') == 1
    assert [m["field"] for m in langfuse.media] == ["metadata"]
    assert not any(r["path"] == "/api/public/ingestion" for r in langfuse.requests)
