"""Recording chunks into the local file store: opt-in twice, order, types, limits, the grace window, playback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from recording_app import LOOPBACK, WEBM, Clock, make_app, metric, start
from starlette.testclient import TestClient

from gateway.errors import ConfigError


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "recordings"


@pytest.fixture
def client(store_dir: Path, clock: Clock) -> Iterator[TestClient]:
    with TestClient(make_app(store_dir.as_uri(), clock), client=LOOPBACK) as c:
        yield c


def stored(store_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(store_dir)) for p in store_dir.rglob("*") if p.is_file())


def problem(response: object, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert body["status"] == status
    return body


def test_the_session_answer_says_audio_is_recorded_only_when_operator_and_app_both_opted_in(
        store_dir: Path) -> None:
    for audio, consent, enabled in [(True, True, True), (True, False, False), (False, True, False)]:
        with TestClient(make_app(store_dir.as_uri(), audio=audio), client=LOOPBACK) as c:
            s = start(c, record_audio=consent)
            assert s.answer["recording"]["enabled"] is enabled
            if enabled:
                assert s.answer["recording"]["channel_layout"] == "stereo: left=user, right=model"
                assert s.upload(0, b"abc").status_code == 201
            else:
                assert "reason" in s.answer["recording"]
                problem(s.upload(0, b"abc"), 403)
    assert len(stored(store_dir)) == 1


def test_audio_is_never_part_of_capture_content_all(store_dir: Path) -> None:
    with TestClient(make_app(store_dir.as_uri(), audio=False, VTG_CAPTURE_CONTENT="all"), client=LOOPBACK) as c:
        s = start(c)
        assert s.answer["recording"]["enabled"] is False
        problem(s.upload(0, b"abc"), 403)
    with TestClient(make_app(store_dir.as_uri(), audio=False, VTG_CAPTURE_CONTENT="all,audio"),
                    client=LOOPBACK) as c:
        assert start(c).answer["recording"]["enabled"] is True


def test_chunks_are_stored_in_order_and_play_back_as_one_file(client: TestClient, store_dir: Path) -> None:
    s = start(client)
    parts = [b"\x1aE\xdf\xa3header" + b"a" * 1000, b"b" * 2000, b"c" * 500]
    for n, data in enumerate(parts):
        r = s.upload(n, data)
        assert r.status_code == 201 and r.json() == {"chunk": n, "bytes": len(data), "next": n + 1}
    assert stored(store_dir) == [f"s-{s.id}/{n:08d}.webm" for n in range(3)]
    url = client.app.state.recordings.links.url(s.id)  # type: ignore[attr-defined]
    whole = client.get(url)
    assert whole.status_code == 200 and whole.content == b"".join(parts)
    assert whole.headers["content-type"] == "audio/webm" and whole.headers["accept-ranges"] == "bytes"
    # Players seek with byte ranges, across chunk boundaries.
    part = client.get(url, headers={"range": "bytes=1010-3020"})
    assert part.status_code == 206 and part.content == b"".join(parts)[1010:3021]
    assert part.headers["content-range"] == f"bytes 1010-3020/{sum(map(len, parts))}"
    assert client.get(url, headers={"range": "bytes=-100"}).content == parts[2][-100:]
    problem(client.get(url, headers={"range": "bytes=99999-"}), 416)
    assert metric(client, "vtg_recording_bytes_total") == sum(map(len, parts))


def test_a_repeated_chunk_is_answered_again_and_not_rewritten_and_a_gap_is_refused(
        client: TestClient, store_dir: Path) -> None:
    s = start(client)
    assert s.upload(0, b"first").status_code == 201
    again = s.upload(0, b"something else")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert (store_dir / f"s-{s.id}" / "00000000.webm").read_bytes() == b"first"
    ahead = problem(s.upload(2, b"x"), 409)
    assert ahead["errors"] == [{"path": "chunk", "message": "expected 1"}]
    assert s.upload(1, b"second").status_code == 201
    assert metric(client, 'vtg_recording_chunks_total{outcome="duplicate"}') == 1


def test_bad_chunks_are_refused_with_problems_and_nothing_is_stored(client: TestClient, store_dir: Path) -> None:
    s = start(client)
    problem(s.upload(0, b"x", content_type="video/webm"), 415)
    problem(s.upload(0, b"x", content_type="audio/webm;codecs=vorbis"), 415)
    problem(s.upload(0, b"x", content_type="application/json"), 415)
    problem(client.post(f"/v1/sessions/{s.id}/recording", params={"chunk": 0, "start": 1}, content=b"x",
                        headers=s.auth), 415)  # no content type at all
    assert problem(s.upload(-1, b"x"), 422)["errors"] == [{"path": "chunk",
                                                            "message": "expected an integer 0..99999999"}]
    r = client.post(f"/v1/sessions/{s.id}/recording", params={"chunk": 0}, content=b"x",
                    headers={**s.auth, "content-type": WEBM})
    assert problem(r, 422)["errors"][0]["path"] == "start"  # type: ignore[index]
    problem(s.upload(0, b"x", start="yesterday"), 422)
    problem(client.post(f"/v1/sessions/{s.id}/recording", params={"chunk": 0, "start": 1}, content=b"x",
                        headers={"content-type": WEBM}), 401)
    other = start(client)
    problem(client.post(f"/v1/sessions/{s.id}/recording", params={"chunk": 0, "start": 1}, content=b"x",
                        headers={**other.auth, "content-type": WEBM}), 403)
    assert stored(store_dir) == []
    # A recording keeps its type.
    assert s.upload(0, b"x", content_type="audio/ogg; codecs=opus").status_code == 201
    problem(s.upload(1, b"y"), 409)
    assert metric(client, 'vtg_recording_rejected_total{reason="unsupported-media-type"}') == 4


def test_oversized_chunks_are_refused_whether_declared_or_streamed(store_dir: Path) -> None:
    with TestClient(make_app(store_dir.as_uri(), VTG_RECORDING_MAX_CHUNK_BYTES="1000",
                             VTG_RECORDING_MAX_SESSION_BYTES="2500"), client=LOOPBACK) as c:
        s = start(c)
        problem(s.upload(0, b"x" * 1001), 413)  # Content-Length says so

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            for _ in range(20):
                yield b"y" * 100

        r = c.post(f"/v1/sessions/{s.id}/recording", params={"chunk": 0, "start": 1}, content=chunked(),
                   headers={**s.auth, "content-type": WEBM})
        problem(r, 413)
        assert stored(store_dir) == []
        assert s.upload(0, b"a" * 1000).status_code == 201
        assert s.upload(1, b"b" * 1000).status_code == 201
        problem(s.upload(2, b"c" * 600), 413)  # the recording's own limit
        assert s.upload(2, b"c" * 500).status_code == 201


def test_the_last_chunk_may_follow_the_end_within_the_grace_window_only(client: TestClient, clock: Clock) -> None:
    s = start(client)
    assert s.upload(0, b"a").status_code == 201
    assert s.end().status_code == 200
    clock.advance(10)
    assert s.upload(1, b"b").status_code == 201  # within the default 30 s
    clock.advance(25)
    assert "30 s ago" in str(problem(s.upload(2, b"c"), 409)["detail"])


def test_a_recording_longer_than_its_duration_limit_is_refused(store_dir: Path, clock: Clock) -> None:
    with TestClient(make_app(store_dir.as_uri(), clock, VTG_RECORDING_MAX_DURATION_S="60",
                             VTG_SESSION_IDLE_TIMEOUT_S="3600"), client=LOOPBACK) as c:
        s = start(c)
        assert s.upload(0, b"a").status_code == 201
        clock.advance(120)
        assert "60 s limit" in str(problem(s.upload(1, b"b"), 413)["detail"])


def test_links_are_signed_per_recording_and_expire(client: TestClient, clock: Clock) -> None:
    s, other = start(client), start(client)
    assert s.upload(0, b"mine").status_code == 201
    links = client.app.state.recordings.links  # type: ignore[attr-defined]
    url = links.url(s.id)
    assert client.get(url).content == b"mine"
    problem(client.get(url.replace("sig=", "sig=0")), 403)
    problem(client.get(f"/v1/recordings/{s.id}"), 403)
    problem(client.get(links.url(other.id).replace(other.id, s.id)), 403)  # another recording's signature
    problem(client.get(links.url(s.id, now=0)), 403)  # expired long ago
    problem(client.get(links.url(other.id)), 404)  # signed, but nothing recorded


def test_deleting_a_recording_needs_the_admin_key(store_dir: Path) -> None:
    app = make_app(store_dir.as_uri(), VTG_ADMIN_KEY="admin-secret")
    with TestClient(app, client=("203.0.113.9", 4000)) as c:
        s = start(c)
        assert s.upload(0, b"a").status_code == 201 and s.upload(1, b"b").status_code == 201
        problem(c.delete(f"/v1/sessions/{s.id}/recording"), 403)
        problem(c.delete(f"/v1/sessions/{s.id}/recording", headers=s.auth), 403)  # an ingest token is not enough
        r = c.delete(f"/v1/sessions/{s.id}/recording", headers={"authorization": "Bearer admin-secret"})
        assert r.status_code == 200 and r.json() == {"session_id": s.id, "deleted_chunks": 2}
        assert stored(store_dir) == []
        problem(c.get(app.state.recordings.links.url(s.id)), 404)


def test_retention_deletes_recordings_whose_last_chunk_is_older(client: TestClient, clock: Clock,
                                                                      store_dir: Path) -> None:
    old, fresh = start(client), start(client)
    assert old.upload(0, b"a").status_code == 201 and fresh.upload(0, b"b").status_code == 201
    recordings = client.app.state.recordings  # type: ignore[attr-defined]
    assert client.portal.call(recordings.sweep) == 0  # type: ignore[union-attr]
    # Files written now look 31 days old once the clock moves on; retention is 30 days by default.
    clock.advance(31 * 86400)
    fresh_file = store_dir / f"s-{fresh.id}" / "00000000.webm"
    os.utime(fresh_file, (clock.now_ns / 1e9, clock.now_ns / 1e9))
    assert client.portal.call(recordings.sweep) == 1  # type: ignore[union-attr]
    assert stored(store_dir) == [f"s-{fresh.id}/00000000.webm"]


def test_a_bad_store_url_fails_at_startup_naming_its_key() -> None:
    for url in ("ftp://host/dir", "file://relative/dir", "s3://"):
        with pytest.raises(ConfigError) as raised:
            make_app(url)
        assert raised.value.key == "distribution.voice_gateway.recording_store", url
    make_app("ftp://host/dir", audio=False)  # no audio captured: no store opened, nothing to refuse


def test_the_recording_state_lives_in_a_durable_session_store_too(tmp_path: Path, clock: Clock) -> None:
    store_dir = tmp_path / "recordings"
    env = {"VTG_SESSION_STORE": f"sqlite:///{tmp_path / 'sessions.db'}"}
    with TestClient(make_app(store_dir.as_uri(), clock, **env), client=LOOPBACK) as c:
        s = start(c)
        assert s.upload(0, b"a" * 10).status_code == 201
    # Another process (a restart) carries the recording on where the first left it.
    with TestClient(make_app(store_dir.as_uri(), clock, **env), client=LOOPBACK) as c:
        s.client = c
        assert s.upload(0, b"a" * 10).json()["duplicate"] is True
        assert s.upload(1, b"b" * 10).json() == {"chunk": 1, "bytes": 10, "next": 2}
        assert stored(store_dir) == [f"s-{s.id}/00000000.webm", f"s-{s.id}/00000001.webm"]
