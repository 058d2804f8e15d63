"""The app's own auth endpoint, as forward auth asks it (nginx ``auth_request``, oauth2-proxy): it reads the
browser's session cookie, or the app's own bearer token, and answers 2xx naming the user, 401 or 403."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SESSION_COOKIE = "app_session"
SIGNED_IN = {"s3cret-alice": "alice", "s3cret-bob": "bob"}  # the app's sessions: cookie value -> user
BANNED = "s3cret-mallory"  # signed in, and not allowed to talk to the model
APP_TOKENS = {"app-token-carol": "carol"}  # the app's own bearer tokens


@dataclass
class AuthEndpoint:
    port: int = 0
    seen: list[dict[str, str]] = field(default_factory=list)
    broken: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/auth/check"


def _cookies(header: str) -> dict[str, str]:
    pairs = (part.strip().partition("=") for part in header.split(";") if part.strip())
    return {name: value for name, _, value in pairs}


def _handler(state: AuthEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, user: str | None = None) -> None:
            self.send_response(status)
            if user:
                self.send_header("X-Auth-User", user)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            state.seen.append(headers)
            if self.path != "/auth/check":
                return self._answer(404)
            if state.broken:
                return self._answer(500)
            session = _cookies(headers.get("cookie", "")).get(SESSION_COOKIE)
            bearer = headers.get("authorization", "").removeprefix("Bearer ")
            if session == BANNED:
                return self._answer(403)
            user = SIGNED_IN.get(session or "") or APP_TOKENS.get(bearer)
            return self._answer(200, user) if user else self._answer(401)

    return Handler


@contextlib.contextmanager
def serve_auth_endpoint() -> Iterator[AuthEndpoint]:
    state = AuthEndpoint()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
