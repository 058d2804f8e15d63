"""The events route answers the same whether its requests take the app's direct way or go through Starlette's
middleware and router: the reference is the same app with one more (pass-through) middleware in front, which
turns the direct way off."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.app import create_app
from gateway.otel_config import load_telemetry

ENV = {"VTG_SIGNING_KEY": "k" * 40, "VTG_MAX_BODY_BYTES": "2000", "VTG_MAX_EVENTS_PER_REQUEST": "2"}
ALLOWED = "https://app.example.com"


class PassThrough:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def make_app(cors: bool, layered: bool) -> Starlette:
    app = create_app(load_telemetry(env={**ENV, **({"VTG_CORS_ORIGINS": ALLOWED} if cors else {})}))
    if layered:
        app.add_middleware(PassThrough)
    return app


@pytest.fixture(params=[(False, False), (True, False), (False, True), (True, True)],
                ids=["direct", "direct-cors", "layered", "layered-cors"])
def either(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    with TestClient(make_app(*request.param)) as c:
        yield c


def answers(c: TestClient, origin: str | None) -> list[tuple[int, dict[str, str], Any]]:
    """A session's worth of requests to the events route, good and bad, as (status, headers, body)."""
    base = {"origin": origin} if origin else {}
    s = c.post("/v1/sessions", json={"session_id": "s1"}).json()
    auth = {**base, "authorization": f"Bearer {s['token']}"}
    url = "/v1/sessions/s1/events"
    other = c.post("/v1/sessions", json={"session_id": "s2"}).json()
    replies = [
        c.post(url, json={"type": "mark", "id": "1", "name": "x"}, headers=auth),
        c.post(url, json={"type": "mark", "id": "1", "name": "x"}, headers=auth),  # a replay
        c.post(url, json={"events": [{"type": "mark", "id": "2", "name": "x"}, {"type": "nope"}]}, headers=auth),
        c.post(url, json={"type": "mark", "id": "3", "name": "x"}, headers=base),  # no token
        c.post(url, json={"type": "mark", "id": "3", "name": "x"}, headers={**base, "authorization": "Bearer junk"}),
        c.post(url, json={"type": "mark", "id": "3", "name": "x"},
               headers={**base, "authorization": f"Bearer {other['token']}"}),  # another session's token
        c.post(url, content=b"{nope", headers=auth),
        c.post(url, content=b" " * 3000, headers=auth),
        c.post(url, json={"events": [{"type": "mark", "id": str(i), "name": "x"} for i in range(3)]}, headers=auth),
        c.post(url, json={"events": [], "sent_at": -1}, headers=auth),
        c.post(url + "?token=" + s["token"], content=b'{"type": "mark", "id": "4", "name": "x"}',
               headers={**base, "content-type": "text/plain"}),
        c.get(url, headers=auth),  # wrong method
        c.options(url, headers={**base, "access-control-request-method": "POST"}),  # a preflight
        c.post("/v1/sessions/s1/events/", json={}, headers=auth, follow_redirects=False),  # the router redirects
    ]
    c.post("/v1/sessions/s1/end", json={}, headers=auth)
    replies.append(c.post(url, json={"type": "mark", "id": "5", "name": "x"}, headers=auth))  # ended
    out = []
    for r in replies:
        body = r.json() if r.headers.get("content-type", "").endswith("json") else r.text
        out.append((r.status_code, dict(r.headers.items()), body))
    return out


@pytest.mark.parametrize("cors", [False, True], ids=["no-cors", "cors"])
@pytest.mark.parametrize("origin", [None, ALLOWED, "https://elsewhere.example"], ids=["no-origin", "allowed", "other"])
def test_the_events_route_answers_alike_directly_and_through_starlettes_layers(cors: bool, origin: str | None) -> None:
    with TestClient(make_app(cors, layered=False)) as direct, TestClient(make_app(cors, layered=True)) as layered:
        assert direct.app.direct and not layered.app.direct  # type: ignore[attr-defined]
        got, expected = answers(direct, origin), answers(layered, origin)
    assert [g[0] for g in got][:12] == [202, 202, 202, 401, 401, 403, 400, 413, 413, 422, 202, 405]
    assert got == expected
    granted = [g[1].get("access-control-allow-origin") for g in got]
    assert granted[:11] == [ALLOWED if cors and origin == ALLOWED else None] * 11


def test_a_refusal_on_the_events_route_is_counted_by_reason(either: TestClient) -> None:
    s = either.post("/v1/sessions", json={}).json()
    url = f"/v1/sessions/{s['session_id']}/events"
    assert either.post(url, json={"type": "mark", "id": "1", "name": "x"}).status_code == 401
    metrics = either.get("/metrics").text
    assert 'vtg_events_rejected_total{reason="unauthorized"} 1.0' in metrics


def test_an_unexpected_failure_on_the_events_route_is_the_500_problem_counted_and_raised_to_the_server(
        either: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    s = either.post("/v1/sessions", json={}).json()

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(either.app.state.service, "ingest", broken)  # type: ignore[attr-defined]
    url = f"/v1/sessions/{s['session_id']}/events"
    event = {"type": "mark", "id": "1", "name": "x"}
    auth = {"authorization": f"Bearer {s['token']}", "origin": ALLOWED}
    with pytest.raises(RuntimeError, match="boom"):
        either.post(url, json=event, headers=auth)
    quiet = TestClient(either.app, raise_server_exceptions=False)
    r = quiet.post(url, json=event, headers=auth)
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["title"] == "Internal error"
    assert "access-control-allow-origin" not in r.headers  # sent outside the CORS middleware, as by Starlette
    assert 'vtg_events_rejected_total{reason="internal_error"} 2.0' in either.get("/metrics").text
