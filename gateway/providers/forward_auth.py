"""Forward auth: the app's own auth endpoint says whether the browser behind a request is signed in.

The pattern of nginx ``auth_request`` and oauth2-proxy: the gateway sends the incoming request's ``Cookie`` and
``Authorization`` headers to ``VTG_FORWARD_AUTH_URL`` (a GET, redirects not followed). A 2xx answer lets the request
through, its user header naming the session's user; 401 is passed on as 401, any other answer below 500 as 403.
An endpoint that cannot be reached, times out or fails itself (5xx) is a 503: nobody is let in, and it is neither
the client's fault nor a refusal.
"""

from __future__ import annotations

import httpx

from gateway.errors import Forbidden, Unauthorized
from gateway.metrics import GatewayMetrics
from gateway.providers.errors import AuthUnavailable

_MAX_USER_LENGTH = 256  # a session's user_id


class ForwardAuth:
    def __init__(self, url: str, user_header: str, timeout_s: float, metrics: GatewayMetrics) -> None:
        self.url = url
        self.user_header = user_header
        self.timeout_s = timeout_s
        self._checks = metrics.forward_auth_checks

    async def check(self, cookie: str | None, authorization: str | None, method: str, uri: str,
                    client: str) -> str | None:
        """The signed-in user (None when the endpoint names nobody); raises when the request may not pass."""
        headers = {"X-Forwarded-Method": method, "X-Forwarded-Uri": uri, "X-Forwarded-For": client}
        if cookie:
            headers["Cookie"] = cookie
        if authorization:
            headers["Authorization"] = authorization
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False, trust_env=False) as http:
                answer = await http.get(self.url, headers=headers)
        except httpx.TimeoutException:
            self._checks.labels("unavailable").inc()
            raise AuthUnavailable(f"the auth endpoint did not answer within {self.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            self._checks.labels("unavailable").inc()
            raise AuthUnavailable(f"the auth endpoint could not be reached ({type(exc).__name__})") from None
        if 200 <= answer.status_code < 300:
            self._checks.labels("allowed").inc()
            user = answer.headers.get(self.user_header, "").strip()
            return user[:_MAX_USER_LENGTH] or None
        if answer.status_code >= 500:
            self._checks.labels("unavailable").inc()
            raise AuthUnavailable(f"the auth endpoint failed: it answered HTTP {answer.status_code}")
        self._checks.labels("refused").inc()
        if answer.status_code == 401:
            raise Unauthorized("the auth endpoint did not recognise this request's credentials (HTTP 401)")
        raise Forbidden(f"the auth endpoint refused this request (HTTP {answer.status_code})")
