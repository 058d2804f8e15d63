"""The whole call as Langfuse media on its trace: a local stand-in checks the three requests Langfuse documents for
media uploads (create with the hash, PUT to the presigned URL, PATCH the upload's outcome)."""

from __future__ import annotations

import base64
import hashlib
import json
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
                if self.path != "/api/public/media" or request["headers"].get("authorization") != AUTH:
                    return self._answer(401 if self.path == "/api/public/media" else 404, {"message": "no"})
                port = stand_in.server.server_address[1]
                self._answer(200, {"mediaId": "media-1", "uploadUrl": f"http://127.0.0.1:{port}/storage/media-1?X-Amz-Signature=s"})

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
