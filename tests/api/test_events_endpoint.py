"""``POST /v1/sessions/{id}/events`` driven as an ASGI server drives it: raw scopes, bodies in several messages,
disconnects, forwarded addresses. The function endpoints' behaviour is the contract (test_routes.py covers the
JSON side through a client)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.otel_config import load_telemetry

ENV = {"VTG_SIGNING_KEY": "k" * 40}
MARK = b'{"type": "mark", "id": "%s", "name": "x"}'


class Sent:
    def __init__(self) -> None:
        self.messages: list[MutableMapping[str, Any]] = []

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])

    def json(self) -> Any:
        return json.loads(b"".join(m.get("body", b"") for m in self.messages[1:]))


def call(app: Starlette, path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]], query: bytes = b"",
         client: tuple[str, int] | None = ("127.0.0.1", 40000), disconnect: bool = False) -> Sent:
    """One request as uvicorn hands it over: the body in ``chunks`` (``more_body`` on all but the last), or
    cut off by a disconnect after them."""
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    if disconnect:
        messages.append({"type": "http.disconnect"})
    else:
        messages.append({"type": "http.request", "body": b"", "more_body": False})

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "server": ("127.0.0.1", 8000), "client": client, "root_path": "", "path": path,
             "raw_path": path.encode(), "query_string": query, "headers": headers}
    sent = Sent()
    asyncio.run(app(scope, receive, sent))
    return sent


@pytest.fixture
def app() -> Iterator[Starlette]:
    application = create_app(load_telemetry(env={**ENV, "VTG_MAX_BODY_BYTES": "200",
                                                 "VTG_TRUSTED_PROXIES": "10.0.0.0/8",
                                                 "VTG_EVENT_RATE_PER_CLIENT": "0.1"}))
    with TestClient(application):
        yield application


def start(app: Starlette) -> tuple[str, str]:
    r = TestClient(app).post("/v1/sessions", json={})
    assert r.status_code == 201
    return r.json()["session_id"], r.json()["token"]


def accepted(app: Starlette, sid: str) -> int:
    state = asyncio.run(app.state.service.store.get(sid))
    return int(state.event_count)


def test_a_body_in_several_messages_is_joined_and_its_answer_is_plain_json(app: Starlette) -> None:
    sid, token = start(app)
    body = MARK % b"m1"
    sent = call(app, f"/v1/sessions/{sid}/events", [body[:10], body[10:]],
                [(b"authorization", b"Bearer " + token.encode())])
    assert sent.status == 202
    assert sent.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert sent.headers == {b"content-length": str(len(json.dumps(sent.json(), separators=(",", ":")))).encode(),
                            b"content-type": b"application/json"}


def test_a_body_that_grows_past_the_limit_is_refused_and_the_session_keeps_working(app: Starlette) -> None:
    sid, token = start(app)
    auth = [(b"authorization", b"Bearer " + token.encode())]
    sent = call(app, f"/v1/sessions/{sid}/events", [b" " * 150, b" " * 150], auth)
    assert sent.status == 413
    assert sent.headers[b"content-type"] == b"application/problem+json"
    assert sent.json()["detail"] == "the body is over the 200 byte limit"
    assert sent.json()["instance"] == f"/v1/sessions/{sid}/events"
    assert call(app, f"/v1/sessions/{sid}/events", [MARK % b"m2"], auth).status == 202


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(app: Starlette) -> None:
    sid, token = start(app)
    sent = call(app, f"/v1/sessions/{sid}/events", [MARK % b"m1"],
                [(b"authorization", b"Bearer " + token.encode()), (b"content-length", b"5000")])
    assert sent.status == 413 and sent.json()["detail"] == "the body is 5000 bytes; the limit is 200"
    assert accepted(app, sid) == 0


def test_the_token_is_checked_before_the_body_and_may_come_from_the_query(app: Starlette) -> None:
    sid, token = start(app)
    url = f"/v1/sessions/{sid}/events"
    assert call(app, url, [MARK % b"m1"], [(b"content-length", b"5000")]).status == 401
    # Not a bearer header: the query's token counts, as for the function endpoints.
    basic = [(b"authorization", b"Basic dXNlcjpwdw==")]
    assert call(app, url, [MARK % b"m1"], basic, query=b"token=" + token.encode()).status == 202
    # The first Authorization header is the one read.
    two = [(b"authorization", b"Bearer not-a-token"), (b"authorization", b"Bearer " + token.encode())]
    assert call(app, url, [MARK % b"m2"], two).status == 401
    assert accepted(app, sid) == 1


def test_a_client_gone_mid_body_applies_nothing(app: Starlette) -> None:
    sid, token = start(app)
    body = MARK % b"m1"
    auth = [(b"authorization", b"Bearer " + token.encode())]
    # As from Request.stream: Starlette's error middleware answers 500 and re-raises it to the server.
    with pytest.raises(ClientDisconnect):
        call(app, f"/v1/sessions/{sid}/events", [body[:10]], auth, disconnect=True)
    assert accepted(app, sid) == 0
    assert call(app, f"/v1/sessions/{sid}/events", [body], auth).status == 202


def test_the_client_rate_limit_follows_x_forwarded_for_only_behind_a_trusted_proxy(app: Starlette) -> None:
    sid, token = start(app)
    url = f"/v1/sessions/{sid}/events"
    auth = (b"authorization", b"Bearer " + token.encode())

    def post(n: int, client: str, forwarded: bytes | None) -> int:
        headers = [auth] + ([(b"x-forwarded-for", forwarded)] if forwarded else [])
        return call(app, url, [MARK % str(n).encode()], headers, client=(client, 5000)).status

    # A burst of one event per client address (rate 0.1/s, burst 1): the second from the same address waits.
    assert post(1, "10.0.0.1", b"203.0.113.7") == 202
    assert post(2, "10.0.0.1", b"203.0.113.7") == 429
    assert post(3, "10.0.0.1", b"203.0.113.8") == 202  # another client behind our proxy
    # An untrusted peer's header is ignored: the peer itself is the client.
    assert post(4, "192.0.2.1", b"203.0.113.9") == 202
    assert post(5, "192.0.2.1", b"203.0.113.10") == 429
