"""CORS by path: the compatibility routes take credentials (the original's frontend posts with its cookies), the
v1 routes never do (their token travels in a header or the query)."""

from __future__ import annotations

import functools

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.security import cors_origin_regex
from gateway.settings import GatewaySettings

COMPAT_PREFIX = "/api/live/"
_METHODS = ["GET", "POST"]
_HEADERS = ["authorization", "content-type", "traceparent", "tracestate"]


class PathCORS:
    """Two CORS policies over one app, chosen by path: credentialed for the compatibility routes (for exactly the
    configured origins, echoed one at a time, never ``*``), credential-free for everything else."""

    def __init__(self, app: ASGIApp, origin_regex: str, credentialed_regex: str | None) -> None:
        self.plain = CORSMiddleware(app, allow_origin_regex=origin_regex, allow_methods=_METHODS,
                                    allow_headers=_HEADERS, allow_credentials=False, max_age=600)
        self.credentialed = self.plain if credentialed_regex is None else CORSMiddleware(
            app, allow_origin_regex=credentialed_regex, allow_methods=_METHODS, allow_headers=_HEADERS,
            allow_credentials=True, max_age=600)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.policy(scope)(scope, receive, send)

    def policy(self, scope: Scope) -> CORSMiddleware:
        compat = scope["type"] == "http" and str(scope.get("path", "")).startswith(COMPAT_PREFIX)
        return self.credentialed if compat else self.plain

    def simple_send(self, scope: Scope, send: Send) -> Send:
        """``send`` as this policy's middleware wraps it for a request that is not a preflight (any method but
        OPTIONS): its answer gets the CORS headers the request's Origin calls for."""
        return functools.partial(self.policy(scope).send, send=send, request_headers=Headers(scope=scope))


def credentialed_origins(settings: GatewaySettings) -> bool:
    """Whether some configured origin may send cookies: the ingest cookie is then SameSite=None (and Secure)."""
    return cors_origin_regex(settings.cors_origins, credentialed=True) is not None


def cors_middleware(settings: GatewaySettings) -> list[Middleware]:
    origin_regex = cors_origin_regex(settings.cors_origins)
    if origin_regex is None:
        return []
    return [Middleware(PathCORS, origin_regex=origin_regex,
                       credentialed_regex=cors_origin_regex(settings.cors_origins, credentialed=True))]
