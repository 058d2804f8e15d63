"""The recording store on S3-compatible object storage: moto's S3 server mode, run here, stands in for S3 (and for
Ceph RGW or MinIO, which speak the same API through AWS_ENDPOINT_URL)."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer
from otlp_sink import free_port
from recording_app import LOOPBACK, Clock, make_app, metric, start
from starlette.testclient import TestClient

BUCKET = "voice-recordings"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                        "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    try:
        yield client
    finally:
        server.stop()


def keys(s3: object) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])  # type: ignore[attr-defined]
    return sorted(o["Key"] for o in listed)


def test_chunks_stream_into_s3_play_back_and_are_deleted(s3: object) -> None:
    clock = Clock()
    app = make_app(f"s3://{BUCKET}/calls", clock)
    with TestClient(app, client=LOOPBACK) as c:
        s = start(c)
        parts = [b"\x1aE\xdf\xa3" + bytes(range(256)) * 40, b"\x00\x01" * 3000]

        def streamed(data: bytes) -> Iterator[bytes]:  # chunked transfer: the gateway never sees a length
            for i in range(0, len(data), 1000):
                yield data[i:i + 1000]

        for n, data in enumerate(parts):
            r = c.post(f"/v1/sessions/{s.id}/recording", params={"chunk": n, "start": 1}, content=streamed(data),
                       headers={**s.auth, "content-type": "audio/webm;codecs=opus"})
            assert r.status_code == 201, r.text
        assert s.upload(1, b"retry").json()["duplicate"] is True
        assert keys(s3) == [f"calls/s-{s.id}/00000000.webm", f"calls/s-{s.id}/00000001.webm"]
        stored = s3.get_object(Bucket=BUCKET, Key=f"calls/s-{s.id}/00000000.webm")["Body"].read()  # type: ignore
        assert stored == parts[0]
        url = app.state.recordings.links.url(s.id)
        assert c.get(url).content == b"".join(parts)
        assert c.get(url, headers={"range": "bytes=10000-10009"}).content == b"".join(parts)[10000:10010]

        other = start(c)
        assert other.upload(0, b"keep me").status_code == 201
        assert c.delete(f"/v1/sessions/{s.id}/recording").json()["deleted_chunks"] == 2
        assert keys(s3) == [f"calls/s-{other.id}/00000000.webm"]
        # Retention, measured against the store's own clock: far enough ahead, everything is old.
        clock.advance(40 * 86400)
        assert c.portal.call(app.state.recordings.sweep) == 1  # type: ignore[union-attr]
        assert keys(s3) == []
        assert metric(c, 'vtg_recording_deleted_total{cause="retention"}') == 1
        assert metric(c, "vtg_recording_storage_failures_total") == 0
