"""Helpers for the recording tests: an app that records audio into a store the test names, and a session in it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.otel_config import load_telemetry

LOOPBACK = ("127.0.0.1", 50000)
WEBM = "audio/webm;codecs=opus"


@dataclass
class Clock:
    """The gateway's clock, moved by the test: grace windows and retention without waiting."""

    now_ns: int = field(default_factory=time.time_ns)

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, seconds: float) -> None:
        self.now_ns += int(seconds * 1e9)


def make_app(store_url: str, clock: Clock | None = None, audio: bool = True, **env: str) -> Starlette:
    settings = {"VTG_SIGNING_KEY": "r" * 40, "VTG_RECORDING_STORE": store_url, "OTEL_TRACES_EXPORTER": "none",
                "VTG_CAPTURE_CONTENT": "transcripts,audio" if audio else "transcripts", **env}
    return create_app(load_telemetry(env=settings), clock=clock)


@dataclass
class Session:
    client: TestClient
    id: str
    token: str
    trace_id: str
    answer: dict[str, Any]

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def upload(self, chunk: int, data: bytes, content_type: str = WEBM, start: float | None = None,
               **params: Any) -> Any:
        query: dict[str, Any] = {"chunk": chunk, **params}
        if chunk == 0 and start is None:
            start = time.time() * 1000
        if start is not None:
            query["start"] = start
        return self.client.post(f"/v1/sessions/{self.id}/recording", params=query, content=data,
                                headers={**self.auth, "content-type": content_type})

    def events(self, *events: dict[str, Any]) -> Any:
        return self.client.post(f"/v1/sessions/{self.id}/events", json={"events": list(events)}, headers=self.auth)

    def end(self) -> Any:
        return self.client.post(f"/v1/sessions/{self.id}/end", json={"reason": "completed"}, headers=self.auth)

    def spans(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.client.get(f"/ui/api/traces/{self.trace_id}").json()["spans"]
        return found


def start(client: TestClient, record_audio: bool = True, **body: Any) -> Session:
    r = client.post("/v1/sessions", json={"record_audio": record_audio, **body})
    assert r.status_code == 201, r.text
    answer = r.json()
    return Session(client, answer["session_id"], answer["token"], answer["trace_id"], answer)


def metric(client: TestClient, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return 0.0
