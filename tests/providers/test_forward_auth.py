"""Forward auth (the pattern of nginx auth_request and oauth2-proxy): the app's own auth endpoint decides who may
mint, from the request's Cookie and Authorization; its user header becomes the session's user_id."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from auth_endpoint import BANNED, SESSION_COOKIE, AuthEndpoint, serve_auth_endpoint
from fake_providers import FakeProviders, serve_fake_providers
from otlp_sink import HungServer, free_port
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.otel_config import load_telemetry

ENV = {"VTG_SIGNING_KEY": "f" * 40, "VTG_PROVIDER_TOKENS": "gemini"}


@pytest.fixture
def providers(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProviders]:
    with serve_fake_providers() as fake:
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        yield fake
        assert fake.mismatches == []


@pytest.fixture
def auth() -> Iterator[AuthEndpoint]:
    with serve_auth_endpoint() as endpoint:
        yield endpoint


def make_client(auth_url: str, **env: str) -> TestClient:
    return TestClient(create_app(load_telemetry(env={**ENV, "VTG_FORWARD_AUTH_URL": auth_url, **env})))


def metric_line(client: TestClient, prefix: str) -> str:
    return next((x for x in client.get("/metrics").text.splitlines() if x.startswith(prefix)), "")


def test_a_signed_in_browser_mints_and_its_user_becomes_the_sessions_user(
    providers: FakeProviders, auth: AuthEndpoint
) -> None:
    with make_client(auth.url) as client:
        client.cookies.set(SESSION_COOKIE, "s3cret-alice")
        # The page claims to be someone else: the signed-in user wins.
        r = client.post("/api/live/token", json={"userId": "mallory"})
        assert r.status_code == 200, r.text
        created = r.json()
        state = client.get(f"/v1/sessions/{created['sessionId']}", params={"token": created["ingestToken"]}).json()
        assert state["user_id"] == "alice"
        # The endpoint got the browser's cookie, and where the request was going.
        [seen] = auth.seen
        assert f"{SESSION_COOKIE}=s3cret-alice" in seen["cookie"]
        assert seen["x-forwarded-method"] == "POST" and seen["x-forwarded-uri"] == "/api/live/token"
        assert 'vtg_forward_auth_checks_total{outcome="allowed"} 1.0' in client.get("/metrics").text
        # v1 too, with the token in the same answer.
        v1 = client.post("/v1/sessions", json={"provider": "gemini"})
        assert v1.status_code == 201 and v1.json()["provider_token"]["value"].startswith("auth_tokens/")


def test_the_apps_own_bearer_token_is_passed_to_the_endpoint(providers: FakeProviders, auth: AuthEndpoint) -> None:
    with make_client(auth.url, VTG_API_KEYS="backend-key") as client:
        r = client.post("/api/live/token", json={}, headers={"authorization": "Bearer app-token-carol"})
        assert r.status_code == 200, r.text
        assert auth.seen[-1]["authorization"] == "Bearer app-token-carol"
        sid, token = r.json()["sessionId"], r.json()["ingestToken"]
        assert client.get(f"/v1/sessions/{sid}", params={"token": token}).json()["user_id"] == "carol"
        # One of the gateway's API keys lets a backend in without asking the endpoint.
        asked = len(auth.seen)
        backend = client.post("/api/live/token", json={}, headers={"authorization": "Bearer backend-key"})
        assert backend.status_code == 200
        assert len(auth.seen) == asked


def test_the_endpoints_refusals_are_401_and_403_and_mint_nothing(providers: FakeProviders, auth: AuthEndpoint) -> None:
    with make_client(auth.url) as client:
        anonymous = client.post("/api/live/token", json={})
        assert anonymous.status_code == 401 and anonymous.headers["content-type"] == "application/problem+json"
        client.cookies.set(SESSION_COOKIE, BANNED)
        banned = client.post("/api/live/token", json={})
        assert banned.status_code == 403 and banned.headers["content-type"] == "application/problem+json"
        assert client.post("/v1/sessions", json={"provider": "gemini"}).status_code == 403
        assert providers.requests == []
        assert metric_line(client, 'vtg_forward_auth_checks_total{outcome="refused"}').endswith(" 3.0")
        assert metric_line(client, 'vtg_events_rejected_total{reason="forbidden"}').endswith(" 2.0")


def test_an_auth_endpoint_that_is_down_failing_or_silent_is_a_503(providers: FakeProviders, auth: AuthEndpoint) -> None:
    hung = HungServer()
    try:
        down = f"http://127.0.0.1:{free_port()}/auth/check"  # nothing listens there
        silent = f"{hung.url}/auth/check"  # holds the connection, never answers
        auth.broken = True
        for url, detail in ((down, "could not be reached"), (auth.url, "answered HTTP 500"),
                            (silent, "did not answer within 0.5 s")):
            with make_client(url, VTG_FORWARD_AUTH_TIMEOUT_S="0.5") as client:
                client.cookies.set(SESSION_COOKIE, "s3cret-alice")
                r = client.post("/api/live/token", json={})
                assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json", r.text
                assert detail in r.json()["detail"] and r.headers["retry-after"].isdigit()
                assert metric_line(client, 'vtg_forward_auth_checks_total{outcome="unavailable"}').endswith(" 1.0")
                assert metric_line(client, 'vtg_events_rejected_total{reason="auth-unavailable"}').endswith(" 1.0")
        assert providers.requests == []
    finally:
        hung.close()


def test_a_rate_limit_per_user_holds_whatever_address_the_user_comes_from(
    providers: FakeProviders, auth: AuthEndpoint
) -> None:
    env = {"VTG_PROVIDER_TOKEN_RATE_PER_USER": "0.1"}  # a burst of one per user
    app = create_app(load_telemetry(env={**ENV, "VTG_FORWARD_AUTH_URL": auth.url, **env}))
    with TestClient(app, client=("198.51.100.1", 1000)) as one, TestClient(app, client=("198.51.100.2", 1000)) as two:
        one.cookies.set(SESSION_COOKIE, "s3cret-alice")
        two.cookies.set(SESSION_COOKIE, "s3cret-alice")
        assert one.post("/api/live/token", json={}).status_code == 200
        flood = two.post("/api/live/token", json={})
        assert flood.status_code == 429 and int(flood.headers["retry-after"]) >= 1
        two.cookies.set(SESSION_COOKIE, "s3cret-bob")
        assert two.post("/api/live/token", json={}).status_code == 200
    assert len(providers.requests) == 2
