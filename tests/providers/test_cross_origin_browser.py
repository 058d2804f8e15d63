"""The original's frontend served from another origin than the gateway, in real headless Chromium: its credentialed
posts (``credentials: 'include'``) pass CORS, carry the app's sign-in cookie to forward auth, and carry the ingest
cookie the token route set back to the trace routes.

Two setups, both on loopback, where Chromium counts plain http as a secure context (it stores and sends ``Secure``
cookies there, as it would over https elsewhere):

- cross-origin, same site: page on ``http://localhost:<a>``, gateway on ``http://localhost:<b>`` (a site is scheme
  and host; ports do not count). The cookies are first-party, so this works in a browser with default settings,
  which block third-party cookies. This is the deployment the README recommends (the gateway on the app's own
  site), and the test runs it in Chromium's default (incognito-like) context.
- cross-site: page on ``http://localhost:<a>``, gateway on ``http://127.0.0.1:<b>``. The cookies are third-party
  there and travel only as ``SameSite=None; Secure``, and only in a browser that allows third-party cookies: the
  test's profile allows them (``profile.cookie_controls_mode`` 0), as a user's browser set so would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from auth_endpoint import SESSION_COOKIE, AuthEndpoint, serve_auth_endpoint
from fake_providers import FakeProviders, serve_fake_providers
from otlp_sink import Collector, Sink
from playwright.sync_api import BrowserContext, sync_playwright
from test_browser import CHROMIUM, FLAGS

PAGE = """<!doctype html>
<meta charset="utf-8"><title>the original app</title>
<script>
// The original's calls, pointed at the gateway's origin: fetch with credentials, JSON bodies, no Authorization.
window.call = async (gateway, events) => {
  const post = (path, body) => fetch(gateway + path, {method: 'POST', credentials: 'include',
    headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
  const started = await post('/api/live/token', {});
  const answer = await started.json();
  const statuses = [];
  for (const [type, data] of events) {
    const r = await post('/api/live/trace/event', {sessionId: answer.sessionId, type, timestamp: Date.now(), data});
    statuses.push(r.status);
  }
  const ended = await post('/api/live/trace/end', {sessionId: answer.sessionId, reason: 'user_ended'});
  return {tokenStatus: started.status, answer, statuses, endStatus: ended.status, end: await ended.json(),
          documentCookie: document.cookie};
};
</script>
"""


@pytest.fixture
def app_origin() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            data = PAGE.encode()
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture
def providers() -> Iterator[FakeProviders]:
    with serve_fake_providers() as fake:
        yield fake
        assert fake.mismatches == []


@pytest.fixture
def auth() -> Iterator[AuthEndpoint]:
    with serve_auth_endpoint() as endpoint:
        yield endpoint


EVENTS = [
    ["turn_start", {"turnNumber": 1, "userTranscript": "Book a table"}],
    ["tool_call", {"turnNumber": 1, "toolName": "book", "toolArgs": {"people": 2}}],
    ["tool_result", {"turnNumber": 1, "toolName": "book", "result": "ok", "durationMs": 3}],
    ["turn_complete", {"turnNumber": 1, "aiTranscript": "Booked.", "durationMs": 20}],
]


def third_party_cookies_allowed(profile: Path) -> Path:
    (profile / "Default").mkdir(parents=True)
    (profile / "Default" / "Preferences").write_text(json.dumps({"profile": {"cookie_controls_mode": 0}}))
    return profile


def signed_in(context: BrowserContext, gateway_url: str) -> None:
    """The app's sign-in cookie, as its own auth flow leaves it for the gateway's host (say, on the parent domain)."""
    context.add_cookies([{"name": SESSION_COOKIE, "value": "s3cret-alice", "domain": urlsplit(gateway_url).hostname,
                          "path": "/", "sameSite": "None", "secure": True, "httpOnly": True}])


def run_call(context: BrowserContext, app_origin: str, gateway_url: str, events: list[Any]) -> dict[str, Any]:
    page = context.new_page()
    page.goto(app_origin)
    result: dict[str, Any] = page.evaluate("([gateway, events]) => window.call(gateway, events)",
                                           [gateway_url, events])
    result["jar"] = [c["name"] for c in context.cookies(gateway_url + "/api/live/trace/event")]
    return result


def start_gateway(gateway_factory: Any, collector: Collector, app_origin: str, providers: FakeProviders,
                  auth: AuthEndpoint) -> Any:
    return gateway_factory({
        "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100", "VTG_CORS_ORIGINS": app_origin,
        "VTG_PROVIDER_TOKENS": "gemini", "VTG_FORWARD_AUTH_URL": auth.url, **providers.env(),
    })


def assert_traced(result: dict[str, Any], sink: Sink, providers: FakeProviders, auth: AuthEndpoint) -> None:
    assert result["tokenStatus"] == 200 and result["answer"]["token"] == providers.answers[0]["name"]
    # The forward auth endpoint saw the app's cookie, sent along by the browser.
    assert f"{SESSION_COOKIE}=s3cret-alice" in auth.seen[0]["cookie"]
    # Every trace post carried the ingest cookie: none was refused.
    assert result["statuses"] == [204] * len(EVENTS)
    assert result["endStatus"] == 200 and result["end"]["summary"]["totalToolCalls"] == 1
    # HttpOnly: the page's script never sees it; the session over, the browser dropped it.
    assert "vtg_ingest" not in result["documentCookie"]
    assert not [name for name in result["jar"] if name.startswith("vtg_ingest_")]
    root = next(s for s in sink.trace(result["end"]["traceId"]) if s.name == "voice_session")
    assert root.attributes["user.id"] == "alice"


def test_a_page_on_another_origin_of_the_same_site_traces_its_call_in_a_default_browser(
    app_origin: str, collector: Collector, sink: Sink, gateway_factory: Any, providers: FakeProviders,
    auth: AuthEndpoint,
) -> None:
    gw = start_gateway(gateway_factory, collector, app_origin, providers, auth)
    gateway_url = f"http://localhost:{gw.port}"
    assert urlsplit(gateway_url).port != urlsplit(app_origin).port
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            context = browser.new_context()
            signed_in(context, gateway_url)
            result = run_call(context, app_origin, gateway_url, EVENTS)
            context.close()
        finally:
            browser.close()
    assert_traced(result, sink, providers, auth)


def test_a_page_on_another_site_traces_its_call_where_third_party_cookies_are_allowed(
    app_origin: str, collector: Collector, sink: Sink, gateway_factory: Any, providers: FakeProviders,
    auth: AuthEndpoint, tmp_path: Path,
) -> None:
    gw = start_gateway(gateway_factory, collector, app_origin, providers, auth)
    assert urlsplit(gw.url).hostname == "127.0.0.1" and urlsplit(app_origin).hostname == "localhost"
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(third_party_cookies_allowed(tmp_path / "profile"),
                                                       executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            signed_in(context, gw.url)
            result = run_call(context, app_origin, gw.url, EVENTS)
        finally:
            context.close()
    assert_traced(result, sink, providers, auth)


def test_a_page_on_an_origin_not_configured_gets_nothing_through(
    app_origin: str, gateway_factory: Any, providers: FakeProviders, auth: AuthEndpoint
) -> None:
    gw = gateway_factory({"VTG_CORS_ORIGINS": "http://localhost:1", "VTG_PROVIDER_TOKENS": "gemini",
                          "VTG_FORWARD_AUTH_URL": auth.url, **providers.env()})
    gateway_url = f"http://localhost:{gw.port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            context = browser.new_context()
            signed_in(context, gateway_url)
            page = context.new_page()
            page.goto(app_origin)
            error = page.evaluate("(gateway) => window.call(gateway, []).then(() => 'passed', e => String(e))",
                                  gateway_url)
            context.close()
        finally:
            browser.close()
    assert "Failed to fetch" in error  # the preflight was refused: the post never left the browser
    assert providers.requests == [] and auth.seen == []
