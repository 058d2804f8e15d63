"""A client that does exactly what the original's frontend does (DESIGN §3.4), written from its request shapes.

It runs in the app's own origin with the app's session cookie: every call is a relative ``fetch`` with
``credentials: 'include'`` (here: one base URL and a cookie jar), JSON bodies, no ``Authorization`` header, no
token of its own. ``/api/live/token`` hands it the provider's ephemeral token for the voice SDK, its expiry and the
session id; trace events are ``{sessionId, type, timestamp, data}`` and the end is ``{sessionId, reason}``.
Like the original it keeps nothing from the answers but those three fields.
"""

from __future__ import annotations

import time
from typing import Any

import httpx


class OriginalFrontend:
    def __init__(self, origin: str, cookies: dict[str, str]) -> None:
        self.http = httpx.Client(base_url=origin, cookies=cookies, timeout=30)
        self.session_id = ""
        self.provider_token = ""

    def start_call(self) -> httpx.Response:
        r = self.http.post("/api/live/token", headers={"content-type": "application/json"})
        if r.status_code == 200:
            answer = r.json()
            self.session_id, self.provider_token = answer["sessionId"], answer["token"]
        return r

    def trace(self, kind: str, **data: Any) -> httpx.Response:
        body = {"sessionId": self.session_id, "type": kind, "timestamp": time.time() * 1000, "data": data}
        return self.http.post("/api/live/trace/event", json=body)

    def end_call(self, reason: str = "user_ended") -> httpx.Response:
        return self.http.post("/api/live/trace/end", json={"sessionId": self.session_id, "reason": reason})

    def close(self) -> None:
        self.http.close()
