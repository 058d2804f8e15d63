"""The OpenAPI document covers every route the app serves, and the answers those routes give.

tests/test_fuzz.py fuzzes whatever the document lists; the tests here keep a new route from going undocumented
(and so unfuzzed), and check the answers the fuzzer seldom reaches (a finished trace, the 401/403/404/429/503
refusals) against the documented statuses and schemas.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from fake_providers import serve_fake_providers
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.testclient import TestClient

from gateway.api.openapi import openapi_document
from gateway.app import create_app
from gateway.otel_config import load_telemetry

ENV = {"VTG_SIGNING_KEY": "o" * 40}
# Pages for people, not an API: nothing to fuzz. test_left_out_pages_are_html_pages keeps this honest.
LOOPBACK = ("127.0.0.1", 50000)  # the viewer admits loopback clients without a key
HTML_PAGES = {"/ui", "/demo"}
DOCUMENT = "/openapi.json"  # the document itself

DOC = openapi_document()
SCHEMA = schemathesis.openapi.from_dict(DOC)


def openapi_path(path: str) -> str:
    # Starlette spells a typed parameter {name:converter}; OpenAPI spells it {name}.
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)


def served(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of every route, mounted ones included; static files are files, not operations."""
    for route in routes:
        if isinstance(route, Mount):
            if isinstance(route.app, StaticFiles):
                continue
            yield from served(list(route.routes), prefix + route.path)
        elif isinstance(route, Route):
            yield openapi_path(prefix + route.path), {m.lower() for m in route.methods or ()} - {"head"}
        else:
            raise AssertionError(f"a route of a kind this test does not know: {route!r}; document it and teach me")


def make_app(**env: str) -> Starlette:
    return create_app(load_telemetry(env={**ENV, **env}))


def answered_as_documented(response: httpx.Response, path: str, method: str = "POST") -> httpx.Response:
    """The status is one the document lists for the operation, and the body matches its schema."""
    documented = DOC["paths"][path][method.lower()]["responses"]
    assert str(response.status_code) in documented, f"{method} {path} answered an undocumented {response.status_code}"
    answer = documented[str(response.status_code)]
    assert response.headers.get("content-type") in set(answer.get("content", {})) or not answer.get("content")
    if "Retry-After" in answer.get("headers", {}):
        assert response.headers["retry-after"].isdigit()
    SCHEMA[path][method].validate_response(response)
    return response


def test_every_route_the_app_serves_is_documented() -> None:
    app = make_app()
    undocumented, documented = [], set()
    for path, methods in served(list(app.routes)):
        if path in HTML_PAGES or path == DOCUMENT:
            continue
        for method in sorted(methods):
            if method not in DOC["paths"].get(path, {}):
                undocumented.append(f"{method.upper()} {path}")
            documented.add((path, method))
    assert not undocumented, f"served but not in /openapi.json (so never fuzzed): {undocumented}"
    # And the other way round: nothing documented that the app does not serve.
    listed = {(path, method) for path, item in DOC["paths"].items() for method in item}
    assert listed == documented, f"documented but not served: {sorted(listed - documented)}"


def test_left_out_pages_are_html_pages() -> None:
    client = TestClient(make_app(), client=LOOPBACK)
    for path in HTML_PAGES:
        response = client.get(path)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html"), path
    assert client.get(DOCUMENT).json() == DOC


def test_every_reference_in_the_document_resolves() -> None:
    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                yield ref
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    for ref in walk(DOC):
        assert ref.startswith("#/"), ref
        target: Any = DOC
        for part in ref[2:].split("/"):
            assert isinstance(target, dict) and part in target, f"{ref} does not resolve"
            target = target[part]
    # Every security requirement names a declared scheme.
    schemes = DOC["components"]["securitySchemes"]
    for item in DOC["paths"].values():
        for operation in item.values():
            for requirement in operation.get("security", []):
                assert set(requirement) <= set(schemes), requirement


@pytest.fixture
def client() -> Iterator[TestClient]:
    # With its lifespan, as when served.
    with TestClient(make_app(VTG_CAPTURE_CONTENT="all"), client=LOOPBACK) as c:
        yield c


@pytest.fixture
def minting(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The SDKs pointed at the stand-in providers; the settings that mint Gemini tokens for an API key holder."""
    with serve_fake_providers() as fake:
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        yield {"VTG_PROVIDER_TOKENS": "gemini", "VTG_API_KEYS": "backend-key"}
        assert fake.mismatches == []


def test_the_legacy_routes_and_the_viewer_answer_as_documented(minting: dict[str, str]) -> None:
    with TestClient(make_app(VTG_CAPTURE_CONTENT="all", **minting), client=LOOPBACK,
                    headers={"authorization": "Bearer backend-key"}) as client:
        check_legacy_routes_and_viewer(client)


def check_legacy_routes_and_viewer(client: TestClient) -> None:
    created = answered_as_documented(client.post("/api/live/token", json={"userId": "u1", "model": "m"}),
                                     "/api/live/token").json()
    assert created["token"].startswith("auth_tokens/") and created["provider"] == "gemini"
    sid, token = created["sessionId"], created["ingestToken"]
    del client.headers["authorization"]  # the API key is for the token route; the trace routes take the ingest token
    now = time.time() * 1000 - 1000
    bodies = [
        {"type": "turn_start", "timestamp": now, "data": {"turnNumber": 1, "userTranscript": "hi"}},
        {"type": "tool_call", "timestamp": now + 10, "data": {"turnNumber": 1, "toolName": "t", "toolArgs": {"a": 1}}},
        {"type": "tool_result", "timestamp": now + 20, "data": {"turnNumber": 1, "toolName": "t", "result": "ok",
                                                                "durationMs": 10}},
    ]
    # The token three ways: header, ?token=, body field.
    event = "/api/live/trace/event"
    r = client.post(event, json={"sessionId": sid, **bodies[0]}, headers={"authorization": f"Bearer {token}"})
    assert answered_as_documented(r, event).status_code == 204
    r = client.post(event, params={"token": token}, json={"sessionId": sid, **bodies[1]})
    assert answered_as_documented(r, event).status_code == 204
    r = client.post(event, content=f'{{"sessionId": "{sid}", "token": "{token}", "type": "tool_result", '
                                   f'"timestamp": {now + 20}, "data": {{"turnNumber": 1, "toolName": "t"}}}}',
                    headers={"content-type": "text/plain"})  # sendBeacon
    assert answered_as_documented(r, event).status_code == 204

    # The viewer while the session is open: its open spans, drawn up to now.
    sessions = answered_as_documented(client.get("/ui/api/sessions"), "/ui/api/sessions", "GET").json()
    assert [s["session_id"] for s in sessions["active"]] == [sid]
    trace_path = "/ui/api/traces/{trace_id}"
    open_trace = answered_as_documented(client.get(f"/ui/api/traces/{created['traceId']}"), trace_path, "GET")
    assert any(s["end_time_unix_nano"] is None for s in open_trace.json()["spans"])

    end = "/api/live/trace/end"
    ended = answered_as_documented(client.post(end, json={"sessionId": sid, "token": token}), end).json()
    assert ended["traceId"] == created["traceId"] and ended["summary"]["totalToolCalls"] == 1
    assert answered_as_documented(client.post(end, json={"sessionId": sid, "token": token}), end).json() == ended

    # And once it has ended: a recent session, and a finished trace.
    sessions = answered_as_documented(client.get("/ui/api/sessions"), "/ui/api/sessions", "GET").json()
    assert not sessions["active"] and [s["session_id"] for s in sessions["recent"]] == [sid]
    finished = answered_as_documented(client.get(f"/ui/api/traces/{created['traceId']}"), trace_path, "GET")
    assert all(s["end_time_unix_nano"] is not None for s in finished.json()["spans"])

    # Refusals, each one a documented problem.
    key = {"authorization": "Bearer backend-key"}
    other = client.post("/api/live/token", json={}, headers=key).json()
    other["token"] = other["ingestToken"]
    client.cookies.clear()  # the token route set each session's ingest cookie: these requests carry none
    for body, params, status in [
        ({"sessionId": sid, **bodies[0]}, {}, 401),  # no token
        ({"sessionId": sid, "token": other["token"], **bodies[0]}, {}, 403),  # another session's token
        ({"sessionId": sid, "token": token, **bodies[0]}, {}, 409),  # the session has ended
        ({"sessionId": other["sessionId"], "token": other["token"], "type": "tool_call"}, {}, 422),  # no toolName
        ({"sessionId": other["sessionId"], "type": "nope"}, {"token": other["token"]}, 422),
    ]:
        r = client.post(event, params=params, json=body)
        assert answered_as_documented(r, event).status_code == status, r.text
    r = client.post(event, content=b"{not json", headers={"authorization": f"Bearer {token}"})
    assert answered_as_documented(r, event).status_code == 400
    r = answered_as_documented(client.post(end, json={"token": token}), end)
    assert r.status_code == 422 and r.json()["errors"] == [{"path": "sessionId", "message": "required string"}]
    assert answered_as_documented(client.post(end, json={"sessionId": sid}), end).status_code == 401
    r = client.post(end, json={"sessionId": sid, "pad": "x" * 70_000, "token": token})
    assert answered_as_documented(r, end).status_code == 413
    r = client.post("/api/live/token", json={"sessionId": other["sessionId"]}, headers=key)
    assert answered_as_documented(r, "/api/live/token").status_code == 409
    r = client.post("/api/live/token", json={"sessionId": "no spaces allowed"}, headers=key)
    assert answered_as_documented(r, "/api/live/token").status_code == 422
    assert answered_as_documented(client.get("/ui/api/traces/" + "0" * 32), trace_path, "GET").status_code == 404


def test_the_viewer_refuses_as_documented() -> None:
    remote = TestClient(make_app(), client=("203.0.113.7", 40000))
    trace_path = "/ui/api/traces/{trace_id}"
    assert answered_as_documented(remote.get("/ui/api/sessions"), "/ui/api/sessions", "GET").status_code == 403
    assert answered_as_documented(remote.get("/ui/api/traces/x"), trace_path, "GET").status_code == 403
    keyed = TestClient(make_app(VTG_ADMIN_KEY="admin-key"), client=("203.0.113.7", 40000))
    r = keyed.get("/ui/api/sessions", params={"key": "wrong"})
    assert answered_as_documented(r, "/ui/api/sessions", "GET").status_code == 403
    r = keyed.get("/ui/api/sessions", params={"key": "admin-key"})
    assert answered_as_documented(r, "/ui/api/sessions", "GET").status_code == 200
    r = keyed.get("/ui/api/traces/x", headers={"authorization": "Bearer admin-key"})
    assert answered_as_documented(r, trace_path, "GET").status_code == 404


@pytest.mark.parametrize("path", ["/v1/sessions", "/api/live/token"])
def test_session_creation_refuses_as_documented(path: str, minting: dict[str, str]) -> None:
    created = 201 if path == "/v1/sessions" else 200
    key = {"authorization": "Bearer backend-key"}
    keyed = TestClient(make_app(**minting))
    assert answered_as_documented(keyed.post(path, json={}), path).status_code == 401
    r = keyed.post(path, json={}, headers=key)
    assert answered_as_documented(r, path).status_code == created
    full = TestClient(make_app(VTG_MAX_OPEN_SESSIONS="1", **minting))
    assert answered_as_documented(full.post(path, headers=key), path).status_code == created
    assert answered_as_documented(full.post(path, headers=key), path).status_code == 503
    slow = TestClient(make_app(VTG_SESSION_CREATE_RATE_PER_CLIENT="0.01", **minting))
    assert answered_as_documented(slow.post(path, headers=key), path).status_code == created
    assert answered_as_documented(slow.post(path, headers=key), path).status_code == 429


def test_readiness_answers_as_documented() -> None:
    app = make_app()
    assert answered_as_documented(TestClient(app).get("/readyz"), "/readyz", "GET").status_code == 503  # starting
    with TestClient(app) as client:
        assert answered_as_documented(client.get("/readyz"), "/readyz", "GET").status_code == 200
        assert answered_as_documented(client.get("/healthz"), "/healthz", "GET").status_code == 200
