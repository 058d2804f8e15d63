"""Stand-ins for the two provider endpoints that mint client tokens, which cannot run here.

Each checks the exact request its provider documents and answers the documented response:

- Gemini API, ``POST /v1alpha/auth_tokens`` (ai.google.dev, "Ephemeral tokens"): the key in ``x-goog-api-key``, a
  JSON body of ``uses``, ``expireTime`` and ``newSessionExpireTime`` (RFC 3339) and, for a token locked to a model,
  ``bidiGenerateContentSetup``; the answer is an AuthToken whose ``name`` is the token.
- OpenAI, ``POST /v1/realtime/client_secrets`` (platform API reference, "Realtime client secrets"): ``Authorization:
  Bearer <key>``, a JSON body of ``expires_after: {anchor: "created_at", seconds}`` and an optional ``session``
  (``type`` "realtime" or "transcription"); the answer is ``{value, expires_at, session}``.

A request that does not match is answered 400 and recorded in ``mismatches``, so a test fails naming what was
wrong. ``fail_with`` makes the next answers an error status in the provider's own error shape; ``hang`` holds
requests unanswered until the server stops.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GEMINI_KEY = "test-gemini-key-0123456789"
OPENAI_KEY = "sk-test-openai-key-0123456789"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeProviders:
    requests: list[Recorded] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)  # the successful answers, in order
    mismatches: list[str] = field(default_factory=list)
    fail_with: int | None = None
    hang: bool = False
    released: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    @property
    def last_token(self) -> str:
        answer = self.answers[-1]
        return str(answer.get("name") or answer.get("value"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The SDKs' own variables, pointing them here."""
        return {"GEMINI_API_KEY": GEMINI_KEY, "GOOGLE_API_KEY": "", "GOOGLE_GEMINI_BASE_URL": self.url,
                "OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": f"{self.url}/v1"}


def _rfc3339(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _check_gemini(headers: dict[str, str], body: Any) -> list[str]:
    problems = []
    if headers.get("x-goog-api-key") != GEMINI_KEY:
        problems.append("x-goog-api-key is not the configured key")
    if "authorization" in headers:
        problems.append("an API key call carries no Authorization header")
    if not isinstance(body, dict):
        return [*problems, "the body is not a JSON object"]
    if not isinstance(body.get("uses"), int) or body["uses"] < 1:
        problems.append(f"uses must be a positive integer, got {body.get('uses')!r}")
    expire, new_session = _rfc3339(body.get("expireTime")), _rfc3339(body.get("newSessionExpireTime"))
    if expire is None or new_session is None:
        problems.append("expireTime and newSessionExpireTime must be RFC 3339 times")
    elif not new_session <= expire:
        problems.append("newSessionExpireTime is after expireTime")
    setup = body.get("bidiGenerateContentSetup")
    if setup is not None and not (isinstance(setup, dict) and str(setup.get("model", "")).startswith("models/")):
        problems.append(f"bidiGenerateContentSetup must name models/<model>, got {setup!r}")
    unknown = set(body) - {"uses", "expireTime", "newSessionExpireTime", "bidiGenerateContentSetup", "fieldMask"}
    if unknown:
        problems.append(f"unknown AuthToken fields {sorted(unknown)}")
    return problems


def _check_openai(headers: dict[str, str], body: Any) -> list[str]:
    problems = []
    if headers.get("authorization") != f"Bearer {OPENAI_KEY}":
        problems.append("Authorization is not 'Bearer <the configured key>'")
    if not isinstance(body, dict):
        return [*problems, "the body is not a JSON object"]
    after = body.get("expires_after")
    if not (isinstance(after, dict) and after.get("anchor") == "created_at"
            and isinstance(after.get("seconds"), int) and 10 <= after["seconds"] <= 7200):
        problems.append(f"expires_after must be {{anchor: created_at, seconds: 10..7200}}, got {after!r}")
    session = body.get("session")
    if session is not None and not (isinstance(session, dict) and session.get("type") in ("realtime",
                                                                                          "transcription")):
        problems.append(f"session.type must be realtime or transcription, got {session!r}")
    unknown = set(body) - {"expires_after", "session"}
    if unknown:
        problems.append(f"unknown fields {sorted(unknown)}")
    return problems


def _handler(state: FakeProviders) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, payload: Any) -> None:
            if status == 200:
                state.answers.append(payload)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            path = self.path.split("?", 1)[0]
            state.requests.append(Recorded("POST", path, headers, body))
            if state.hang:
                state.released.wait(120)
                return
            if path == "/v1alpha/auth_tokens":
                problems = _check_gemini(headers, body)
                if not problems and state.fail_with:
                    self._answer(state.fail_with, {"error": {"code": state.fail_with, "message": "refused",
                                                             "status": "PERMISSION_DENIED"}})
                elif not problems:
                    self._answer(200, {"name": f"auth_tokens/{secrets.token_hex(16)}"})
            elif path == "/v1/realtime/client_secrets":
                problems = _check_openai(headers, body)
                if not problems and state.fail_with:
                    self._answer(state.fail_with, {"error": {"message": "refused", "type": "invalid_request_error",
                                                             "param": None, "code": None}})
                elif not problems:
                    seconds = body["expires_after"]["seconds"]
                    session = body.get("session") or {"type": "realtime", "model": "gpt-realtime"}
                    self._answer(200, {"value": f"ek_{secrets.token_hex(16)}", "expires_at": int(time.time()) + seconds,
                                       "session": {"object": "realtime.session", "id": "sess_test", **session}})
            else:
                problems = [f"no such endpoint: POST {self.path}"]
            if problems:
                state.mismatches.extend(problems)
                self._answer(400, {"error": {"code": 400, "message": "; ".join(problems)}})

    return Handler


@contextlib.contextmanager
def serve_fake_providers() -> Iterator[FakeProviders]:
    state = FakeProviders()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.released.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
