"""Provider ephemeral tokens (DESIGN §3.5): each provider asked exactly as it documents, through its own SDK and the
SDK's own base-URL variable; every failure a problem+json naming the provider and its status, never the key."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import REPO
from fake_providers import GEMINI_KEY, OPENAI_KEY, FakeProviders, serve_fake_providers
from otlp_sink import free_port
from starlette.testclient import TestClient
from test_openapi import answered_as_documented

from gateway.app import create_app
from gateway.errors import ConfigError
from gateway.otel_config import load_telemetry
from gateway.settings import load_settings

API_KEY = "backend-key"
AUTH = {"authorization": f"Bearer {API_KEY}"}
ENV = {"VTG_SIGNING_KEY": "m" * 40, "VTG_API_KEYS": API_KEY}


@pytest.fixture
def providers(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProviders]:
    with serve_fake_providers() as fake:
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        yield fake
        assert fake.mismatches == [], "a request was not the one the provider documents"


def make_client(**env: str) -> TestClient:
    return TestClient(create_app(load_telemetry(env={**ENV, **env})), headers=AUTH)


def metric(client: TestClient, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} " if labels else f"{name} "):
            return float(line.split()[-1])
    return 0.0


def rfc3339(value: str) -> float:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# -- the documented requests ---------------------------------------------------------------------------


def test_a_gemini_token_is_minted_with_the_documented_request_for_both_routes(providers: FakeProviders) -> None:
    with make_client(VTG_PROVIDER_TOKENS="gemini", VTG_GEMINI_LIVE_MODEL="gemini-live-2.5-flash-preview",
                     VTG_GEMINI_LIVE_CONFIG='{"response_modalities": ["AUDIO"], "temperature": 0.5}',
                     VTG_GEMINI_TOKEN_TTL_S="900", VTG_GEMINI_NEW_SESSION_TTL_S="120") as client:
        before = time.time()
        created = client.post("/v1/sessions", json={"provider": "gcp.gemini", "model": "gemini-live"})
        assert created.status_code == 201, created.text
        token = created.json()["provider_token"]
        assert token["provider"] == "gemini" and re.fullmatch(r"auth_tokens/[0-9a-f]{32}", token["value"])
        assert before + 900 <= token["expires_at"] <= time.time() + 900
        # The ingest token is still the session's own, and a different thing.
        assert created.json()["token"] != token["value"]

        [request] = providers.requests
        assert (request.method, request.path) == ("POST", "/v1alpha/auth_tokens")
        assert request.headers["x-goog-api-key"] == GEMINI_KEY
        body = request.body
        assert body["uses"] == 1
        assert rfc3339(body["expireTime"]) - rfc3339(body["newSessionExpireTime"]) == pytest.approx(780, abs=0.01)
        assert rfc3339(body["expireTime"]) == pytest.approx(token["expires_at"], abs=0.01)
        # Locked to the operator's model and config.
        assert body["bidiGenerateContentSetup"] == {
            "model": "models/gemini-live-2.5-flash-preview",
            "generationConfig": {"responseModalities": ["AUDIO"], "temperature": 0.5},
        }

        legacy = client.post("/api/live/token", json={"userId": "u1"})
        assert legacy.status_code == 200, legacy.text
        answer = legacy.json()
        assert answer["token"].startswith("auth_tokens/") and answer["token"] == providers.last_token
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", answer["expiresAt"])
        assert rfc3339(answer["expiresAt"]) == pytest.approx(rfc3339(providers.requests[-1].body["expireTime"]),
                                                             abs=0.001)
        assert answer["sessionId"] and answer["ingestToken"] != answer["token"]
        assert metric(client, "vtg_provider_tokens_minted_total", provider="gemini") == 2


def test_sessions_of_a_provider_the_operator_does_not_mint_for_get_no_token(providers: FakeProviders) -> None:
    with make_client(VTG_PROVIDER_TOKENS="gemini") as client:
        for body in ({"provider": "openai"}, {"provider": "anthropic"}, {}):
            created = client.post("/v1/sessions", json=body)
            assert created.status_code == 201 and "provider_token" not in created.json()
        assert providers.requests == []
        refused = client.post("/api/live/token", json={"provider": "openai"})
        assert refused.status_code == 501 and refused.json()["errors"][0]["path"] == "provider"


def test_an_openai_client_secret_carries_the_operators_session_config(providers: FakeProviders) -> None:
    session = {"type": "realtime", "model": "gpt-realtime", "instructions": "Be brief.",
               "audio": {"output": {"voice": "marin"}}}
    with make_client(VTG_PROVIDER_TOKENS="openai", VTG_OPENAI_SESSION=json.dumps(session),
                     VTG_OPENAI_TOKEN_TTL_S="120") as client:
        created = client.post("/v1/sessions", json={"provider": "openai"})
        assert created.status_code == 201, created.text
        token = created.json()["provider_token"]
        assert token["provider"] == "openai" and token["value"].startswith("ek_")
        [request] = providers.requests
        assert (request.method, request.path) == ("POST", "/v1/realtime/client_secrets")
        assert request.headers["authorization"] == f"Bearer {OPENAI_KEY}"
        assert request.body == {"expires_after": {"anchor": "created_at", "seconds": 120}, "session": session}
        # The provider's own expiry, as it answered it.
        assert token["expires_at"] == providers.answers[-1]["expires_at"]
        # The legacy route, no provider named: the only one minted for.
        legacy = client.post("/api/live/token", json={}).json()
        assert legacy["token"].startswith("ek_") and legacy["provider"] == "openai"
        expires = datetime.datetime.fromtimestamp(providers.answers[-1]["expires_at"], datetime.UTC)
        assert legacy["expiresAt"] == expires.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_with_both_providers_the_legacy_route_mints_the_named_one_else_gemini(providers: FakeProviders) -> None:
    with make_client(VTG_PROVIDER_TOKENS="gemini,openai") as client:
        assert client.post("/api/live/token", json={}).json()["provider"] == "gemini"
        assert client.post("/api/live/token", json={"provider": "openai"}).json()["provider"] == "openai"
        assert client.post("/api/live/token", json={"provider": "gcp.gemini"}).json()["provider"] == "gemini"
        assert [r.path for r in providers.requests] == [
            "/v1alpha/auth_tokens", "/v1/realtime/client_secrets", "/v1alpha/auth_tokens"]


# -- failures ---------------------------------------------------------------------------------------------


def assert_provider_problem(response: httpx.Response, provider: str, status: int | None) -> dict[str, Any]:
    assert response.status_code == 502, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["provider"] == provider and problem["provider_status"] == status
    assert problem["errors"][0]["path"] == "provider"
    assert GEMINI_KEY not in response.text and OPENAI_KEY not in response.text
    return dict(problem)


@pytest.mark.parametrize("provider", ["gemini", "openai"])
@pytest.mark.parametrize("status", [400, 401, 429, 500, 503])
def test_a_provider_refusal_is_a_502_naming_the_provider_and_its_status(
    providers: FakeProviders, provider: str, status: int
) -> None:
    providers.fail_with = status
    with make_client(VTG_PROVIDER_TOKENS=provider) as client:
        for path in ("/v1/sessions", "/api/live/token"):
            problem = assert_provider_problem(client.post(path, json={"provider": provider}), provider, status)
            assert f"HTTP {status}" in problem["detail"] and provider in problem["detail"]
        assert len(providers.requests) == 2, "one attempt each: the browser retries, not the gateway"
        assert metric(client, "vtg_provider_token_failures_total", provider=provider, reason="http_error") == 2
        assert metric(client, "vtg_events_rejected_total", reason="provider-failed") == 2
        assert metric(client, "vtg_sessions_started_total") == 0, "no session is left behind without its token"


def test_a_provider_that_does_not_answer_in_time_is_a_502(providers: FakeProviders) -> None:
    providers.hang = True  # held until the test ends: only the gateway's own timeout can answer
    with make_client(VTG_PROVIDER_TOKENS="gemini,openai", VTG_PROVIDER_TOKEN_TIMEOUT_S="0.5") as client:
        for provider in ("gemini", "openai"):
            problem = assert_provider_problem(client.post("/api/live/token", json={"provider": provider}),
                                              provider, None)
            assert "did not answer within 0.5 s" in problem["detail"]
            assert metric(client, "vtg_provider_token_failures_total", provider=provider, reason="timeout") == 1


def test_a_provider_that_cannot_be_reached_is_a_502(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", closed)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{closed}/v1")
    with make_client(VTG_PROVIDER_TOKENS="gemini,openai") as client:
        for provider in ("gemini", "openai"):
            problem = assert_provider_problem(client.post("/api/live/token", json={"provider": provider}),
                                              provider, None)
            assert "could not be reached" in problem["detail"]
            assert metric(client, "vtg_provider_token_failures_total", provider=provider, reason="unreachable") == 1


def test_minting_without_the_providers_key_is_a_clear_503(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.setenv(name, "")
    with make_client(VTG_PROVIDER_TOKENS="gemini,openai") as client:
        for provider, variables in (("gemini", "GOOGLE_API_KEY or GEMINI_API_KEY"), ("openai", "OPENAI_API_KEY")):
            r = client.post("/v1/sessions", json={"provider": provider})
            assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
            assert r.json()["errors"] == [{"path": "provider", "message": f"no API key configured for {provider}"}]
            assert f"needs {variables} in the gateway's environment" in r.json()["detail"]
            assert metric(client, "vtg_provider_token_failures_total", provider=provider, reason="no_key") == 1
        assert metric(client, "vtg_events_rejected_total", reason="provider-not-configured") == 2


def test_google_api_key_is_taken_when_gemini_api_key_is_not_set(
    providers: FakeProviders, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "")
    monkeypatch.setenv("GOOGLE_API_KEY", GEMINI_KEY)
    with make_client(VTG_PROVIDER_TOKENS="gemini") as client:
        assert client.post("/api/live/token", json={}).status_code == 200
    assert providers.requests[0].headers["x-goog-api-key"] == GEMINI_KEY


# -- limits and settings ----------------------------------------------------------------------------------


def test_minting_is_rate_limited_per_client_address(providers: FakeProviders) -> None:
    with make_client(VTG_PROVIDER_TOKENS="gemini", VTG_PROVIDER_TOKEN_RATE_PER_CLIENT="0.1") as client:  # burst 1
        assert client.post("/api/live/token", json={}).status_code == 200
        flood = client.post("/api/live/token", json={})
        assert flood.status_code == 429 and int(flood.headers["retry-after"]) >= 1
        assert client.post("/v1/sessions", json={"provider": "gemini"}).status_code == 429
        # Sessions that mint nothing are not held back by it.
        assert client.post("/v1/sessions", json={"provider": "openai"}).status_code == 201
        assert len(providers.requests) == 1


def test_minting_needs_an_api_key_or_forward_auth() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(env={"VTG_PROVIDER_TOKENS": "gemini"})
    assert refused.value.key == "VTG_PROVIDER_TOKENS" and "VTG_FORWARD_AUTH_URL" in refused.value.message
    assert load_settings(env={"VTG_PROVIDER_TOKENS": "openai", "VTG_FORWARD_AUTH_URL": "http://auth/"}).provider_tokens
    with pytest.raises(ConfigError) as unknown:
        load_settings({"provider_tokens": ["gemini", "anthropic"], "api_keys": ["k"]})
    assert unknown.value.key == "distribution.voice_gateway.provider_tokens" and "anthropic" in unknown.value.message
    assert load_settings().provider_tokens == (), "off by default"


def test_a_live_config_the_sdk_does_not_take_fails_at_startup_naming_its_key(providers: FakeProviders) -> None:
    with pytest.raises(ConfigError) as bad:
        make_client(VTG_PROVIDER_TOKENS="gemini", VTG_GEMINI_LIVE_MODEL="m", VTG_GEMINI_LIVE_CONFIG='{"nope": 1}')
    assert bad.value.key == "VTG_GEMINI_LIVE_CONFIG"


def test_check_config_shows_the_minting_settings_and_never_a_key() -> None:
    env = {"PATH": "/usr/bin:/bin", "VTG_SIGNING_KEY": "s" * 40, "VTG_PROVIDER_TOKENS": "gemini,openai",
           "VTG_FORWARD_AUTH_URL": "http://127.0.0.1:9/auth", "GEMINI_API_KEY": GEMINI_KEY,
           "OPENAI_API_KEY": OPENAI_KEY, "OTEL_TRACES_EXPORTER": "none"}
    done = subprocess.run([sys.executable, "-m", "gateway", "check-config"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=True)
    described = json.loads(done.stdout)["gateway"]
    assert described["provider_tokens"] == ["gemini", "openai"]
    assert described["forward_auth_url"] == "http://127.0.0.1:9/auth"
    for key in (GEMINI_KEY, OPENAI_KEY):
        assert key not in done.stdout and key not in done.stderr


def test_minting_refusals_answer_as_documented(providers: FakeProviders, monkeypatch: pytest.MonkeyPatch) -> None:
    providers.fail_with = 500
    with make_client(VTG_PROVIDER_TOKENS="gemini") as client:
        for path in ("/v1/sessions", "/api/live/token"):
            r = client.post(path, json={"provider": "gemini"})
            assert answered_as_documented(r, path).status_code == 502
        r = client.post("/api/live/token", json={"provider": "openai"})
        assert answered_as_documented(r, "/api/live/token").status_code == 501
    monkeypatch.setenv("GEMINI_API_KEY", "")
    with make_client(VTG_PROVIDER_TOKENS="gemini") as client:
        r = client.post("/api/live/token", json={})
        assert answered_as_documented(r, "/api/live/token").status_code == 503
