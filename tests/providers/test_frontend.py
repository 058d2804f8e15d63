"""The original's frontend, unchanged, against the gateway (DESIGN §3.4): its token route mints the provider's
token, its trace calls are authorized by the cookie that route set, and its answers have the original's shapes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.cookies import SimpleCookie
from typing import Any

import pytest
from auth_endpoint import SESSION_COOKIE, AuthEndpoint, serve_auth_endpoint
from fake_providers import GEMINI_KEY, FakeProviders, serve_fake_providers
from original_frontend import OriginalFrontend
from otlp_sink import Collector, Sink
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.otel_config import load_telemetry


@pytest.fixture
def providers() -> Iterator[FakeProviders]:
    with serve_fake_providers() as fake:
        yield fake
        assert fake.mismatches == []


@pytest.fixture
def auth() -> Iterator[AuthEndpoint]:
    with serve_auth_endpoint() as endpoint:
        yield endpoint


def ingest_cookie(set_cookie: str) -> Any:
    jar: SimpleCookie = SimpleCookie()
    jar.load(set_cookie)
    [morsel] = [m for name, m in jar.items() if name.startswith("vtg_ingest_")]
    return morsel


def test_the_original_frontend_is_traced_without_a_change(
    collector: Collector, sink: Sink, gateway_factory: Any, providers: FakeProviders, auth: AuthEndpoint
) -> None:
    gw = gateway_factory({
        "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100", "VTG_CAPTURE_CONTENT": "transcripts",
        "VTG_PROVIDER_TOKENS": "gemini", "VTG_FORWARD_AUTH_URL": auth.url, **providers.env(),
    })
    page = OriginalFrontend(gw.url, {SESSION_COOKIE: "s3cret-alice"})
    try:
        started = page.start_call()
        assert started.status_code == 200, started.text
        answer = started.json()
        # What the voice SDK gets is the provider's token, and the original's expiry, as ISO 8601.
        assert answer["token"] == providers.last_token and answer["token"].startswith("auth_tokens/")
        assert answer["expiresAt"].endswith("Z") and answer["sessionId"] == page.session_id
        cookie = ingest_cookie(started.headers["set-cookie"])
        assert cookie["httponly"] and cookie["path"] == "/api/live/trace" and cookie["samesite"].lower() == "lax"
        assert not cookie["secure"], "plain http: no Secure"
        assert 0 < int(cookie["max-age"]) <= 4 * 3600 + 600
        assert cookie.value == answer["ingestToken"], "the cookie holds the session's ingest token and nothing else"

        script: list[tuple[str, dict[str, Any]]] = [
            ("turn_start", {"turnNumber": 1, "userTranscript": "What's the weather in Oslo?"}),
            ("tool_call", {"turnNumber": 1, "toolName": "get_weather", "toolArgs": {"city": "Oslo"}}),
            ("tool_result", {"turnNumber": 1, "toolName": "get_weather", "result": "cold", "durationMs": 5}),
            ("turn_complete", {"turnNumber": 1, "aiTranscript": "It is cold.", "durationMs": 40}),
            ("turn_start", {"turnNumber": 2, "userTranscript": "Thanks"}),
            ("turn_complete", {"turnNumber": 2, "aiTranscript": "Bye.", "durationMs": 10}),
        ]
        for kind, data in script:
            r = page.trace(kind, **data)
            assert (r.status_code, r.content) == (204, b""), r.text
            assert "authorization" not in r.request.headers
        ended = page.end_call()
        assert ended.status_code == 200, ended.text
        body = ended.json()
        assert set(body) == {"traceId", "summary"}
        assert body["summary"] == {"totalTurns": 2, "totalToolCalls": 1, "durationMs": body["summary"]["durationMs"]}
        assert isinstance(body["summary"]["durationMs"], int | float) and body["summary"]["durationMs"] >= 0
        # The session is over: its cookie is cleared.
        assert int(ingest_cookie(ended.headers["set-cookie"])["max-age"]) == 0
        assert not [c for c in page.http.cookies.jar if c.name.startswith("vtg_ingest_")]
    finally:
        page.close()

    spans = sink.trace(body["traceId"])
    root = next(s for s in spans if s.name == "voice_session")
    assert root.attributes["user.id"] == "alice", "the signed-in user, from the auth endpoint"
    names = sorted(s.name.split(" ")[0] for s in spans)
    assert names.count("invoke_agent") == 2 and names.count("execute_tool") == 1
    assert GEMINI_KEY not in gw.log()


def test_two_tabs_of_one_app_each_trace_their_own_call(
    gateway_factory: Any, providers: FakeProviders, auth: AuthEndpoint
) -> None:
    gw = gateway_factory({"VTG_PROVIDER_TOKENS": "gemini", "VTG_FORWARD_AUTH_URL": auth.url, **providers.env()})
    browser = OriginalFrontend(gw.url, {SESSION_COOKIE: "s3cret-bob"})
    try:
        one = browser.start_call().json()["sessionId"]
        two = browser.start_call().json()["sessionId"]  # the second tab: one cookie jar, a second session
        for sid, turns in ((one, 2), (two, 1)):
            browser.session_id = sid
            for n in range(1, turns + 1):
                assert browser.trace("turn_start", turnNumber=n, userTranscript=f"q{n}").status_code == 204
        for sid, turns in ((two, 1), (one, 2)):
            browser.session_id = sid
            assert browser.end_call().json()["summary"]["totalTurns"] == turns
    finally:
        browser.close()


def test_without_the_cookie_or_with_another_sessions_the_trace_calls_are_refused(
    gateway_factory: Any, providers: FakeProviders, auth: AuthEndpoint
) -> None:
    gw = gateway_factory({"VTG_PROVIDER_TOKENS": "gemini", "VTG_FORWARD_AUTH_URL": auth.url, **providers.env()})
    page = OriginalFrontend(gw.url, {SESSION_COOKIE: "s3cret-alice"})
    other = OriginalFrontend(gw.url, {SESSION_COOKIE: "s3cret-bob"})
    try:
        assert page.start_call().status_code == 200 and other.start_call().status_code == 200
        other.session_id = page.session_id  # another browser naming a session it does not hold
        r = other.trace("turn_start", turnNumber=1)
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        # Signed in is not enough to write to a session: the session's own token is.
        stolen = other.http.post("/api/live/trace/end", json={"sessionId": page.session_id})
        assert stolen.status_code == 401
        assert page.trace("turn_start", turnNumber=1).status_code == 204
    finally:
        page.close()
        other.close()


# -- the cookie's attributes and CORS ---------------------------------------------------------------------


@pytest.fixture
def minting(monkeypatch: pytest.MonkeyPatch, providers: FakeProviders) -> dict[str, str]:
    for name, value in providers.env().items():
        monkeypatch.setenv(name, value)
    return {"VTG_SIGNING_KEY": "c" * 40, "VTG_PROVIDER_TOKENS": "gemini", "VTG_API_KEYS": "backend-key"}


def token_cookie(client: TestClient) -> Any:
    r = client.post("/api/live/token", json={}, headers={"authorization": "Bearer backend-key"})
    assert r.status_code == 200, r.text
    return ingest_cookie(r.headers["set-cookie"])


def test_the_cookie_is_secure_over_https_and_behind_a_trusted_tls_proxy(minting: dict[str, str]) -> None:
    app = create_app(load_telemetry(env={**minting, "VTG_TRUSTED_PROXIES": "10.0.0.0/8"}))
    assert token_cookie(TestClient(app, base_url="https://gateway.example"))["secure"]
    assert not token_cookie(TestClient(app, base_url="http://gateway.example"))["secure"]
    proxied = TestClient(app, client=("10.1.2.3", 4000), headers={"x-forwarded-proto": "https"})
    assert proxied and token_cookie(proxied)["secure"]
    spoofed = TestClient(app, client=("203.0.113.9", 4000), headers={"x-forwarded-proto": "https"})
    assert not token_cookie(spoofed)["secure"], "only our own proxies are believed"


def preflight(client: TestClient, path: str, origin: str) -> Any:
    return client.options(path, headers={"origin": origin, "access-control-request-method": "POST",
                                         "access-control-request-headers": "content-type"})


def test_with_cors_origins_the_compat_routes_take_credentials_from_exactly_those_origins(
    minting: dict[str, str]
) -> None:
    origin = "https://app.example.com"
    app = create_app(load_telemetry(env={**minting, "VTG_CORS_ORIGINS": f"{origin},https://*.example.org"}))
    client = TestClient(app, base_url="https://gateway.example.net")
    cookie = token_cookie(client)
    assert cookie["samesite"].lower() == "none" and cookie["secure"], "sent on cross-site posts, so Secure"
    for path in ("/api/live/token", "/api/live/trace/event", "/api/live/trace/end"):
        for allowed in (origin, "https://shop.example.org"):
            r = preflight(client, path, allowed)
            assert r.status_code == 200
            assert r.headers["access-control-allow-origin"] == allowed
            assert r.headers["access-control-allow-credentials"] == "true"
        refused = preflight(client, path, "https://evil.example")
        assert "access-control-allow-origin" not in refused.headers
    # The actual credentialed post: the origin echoed (never *), credentials allowed, cached per origin.
    r = client.post("/api/live/trace/end", json={"sessionId": "nope"}, headers={"origin": origin})
    assert r.headers["access-control-allow-origin"] == origin
    assert r.headers["access-control-allow-credentials"] == "true" and "origin" in r.headers["vary"].lower()
    # The v1 routes stay credential-free.
    for path in ("/v1/sessions", "/v1/sessions/s/events"):
        r = preflight(client, path, origin)
        assert r.headers["access-control-allow-origin"] == origin
        assert "access-control-allow-credentials" not in r.headers


def test_a_wildcard_origin_never_gets_credentials(minting: dict[str, str]) -> None:
    client = TestClient(create_app(load_telemetry(env={**minting, "VTG_CORS_ORIGINS": "*"})))
    r = preflight(client, "/api/live/trace/event", "https://anywhere.example")
    assert r.status_code == 200 and "access-control-allow-credentials" not in r.headers
    assert token_cookie(client)["samesite"].lower() == "lax"


def test_the_token_cookie_lasts_as_long_as_the_ingest_token(minting: dict[str, str]) -> None:
    client = TestClient(create_app(load_telemetry(env={**minting, "VTG_TOKEN_TTL_S": "900"})))
    before = time.time()
    r = client.post("/api/live/token", json={}, headers={"authorization": "Bearer backend-key"})
    after = time.time()
    expires = r.json()["ingestTokenExpiresAt"]
    assert before + 899 <= expires <= after + 900  # whole seconds, as in the token
    max_age = int(ingest_cookie(r.headers["set-cookie"])["max-age"])
    assert expires - after - 1 <= max_age <= expires - before


def test_a_provider_refusal_reaches_the_page_and_the_log_without_the_key(
    gateway_factory: Any, providers: FakeProviders, auth: AuthEndpoint
) -> None:
    providers.fail_with = 401
    gw = gateway_factory({"VTG_PROVIDER_TOKENS": "gemini", "VTG_FORWARD_AUTH_URL": auth.url, **providers.env()})
    page = OriginalFrontend(gw.url, {SESSION_COOKIE: "s3cret-alice"})
    try:
        r = page.start_call()
        assert r.status_code == 502 and r.json()["provider"] == "gemini" and r.json()["provider_status"] == 401
        assert "set-cookie" not in r.headers and page.session_id == ""
    finally:
        page.close()
    log = gw.log()
    assert "minting a gemini token failed: http_error (HTTP 401)" in log
    assert GEMINI_KEY not in log and GEMINI_KEY not in r.text
