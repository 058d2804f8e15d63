from __future__ import annotations

import asyncio

from starlette.testclient import TestClient
from test_routes import auth, make_client, start

LOOPBACK = ("127.0.0.1", 50000)


def test_an_open_turn_in_its_own_trace_is_shown_under_that_trace() -> None:
    with make_client(VTG_TRACE_MODE="per_turn") as client:
        viewer = TestClient(client.app, client=LOOPBACK)
        s = start(client)
        client.post(f"/v1/sessions/{s['session_id']}/events", headers=auth(s),
                    json={"events": [{"type": "user.transcript", "id": "1", "text": "hi"}]})
        state = asyncio.run(client.app.state.service.store.get(s["session_id"]))  # type: ignore[attr-defined]
        assert state is not None and state.turn is not None
        turn_trace = state.turn.span.trace_id
        assert turn_trace is not None and turn_trace != s["trace_id"]
        shown = viewer.get(f"/ui/api/traces/{turn_trace}").json()["spans"]
        assert [x["name"] for x in shown if x["name"].startswith("invoke_agent")]
        assert all(x["trace_id"] == turn_trace for x in shown)
        session = viewer.get(f"/ui/api/traces/{s['trace_id']}").json()["spans"]
        assert not [x for x in session if x["name"].startswith("invoke_agent")]


def test_the_viewer_refuses_a_remote_client_without_the_admin_key() -> None:
    with make_client() as client:
        assert TestClient(client.app, client=("203.0.113.7", 4000)).get("/ui/api/sessions").status_code == 403
        assert TestClient(client.app, client=LOOPBACK).get("/ui/api/sessions").status_code == 200
        assert client.get("/ui/api/sessions").status_code == 403  # TestClient's own "testclient" is no loopback
