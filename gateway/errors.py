"""The gateway's errors, one tree.

    GatewayError
    ├── ConfigError            bad configuration; names the key path (startup, check-config)
    └── RequestError           a client's request cannot be served; becomes problem+json
        ├── BadRequest         400: the body is not JSON, or not the shape we take
        │   └── ValidationFailed   400/422: schema violations, each with the path of the bad field
        ├── Unauthorized       401: no ingest token, or one that does not verify
        ├── Forbidden          403: a valid token for another session
        ├── NotFound           404: no such session
        ├── Conflict           409: a client-chosen session id already in use, or a session that ended
        ├── PayloadTooLarge    413: body or batch over the configured limit
        ├── TooManyRequests    429: a rate limit; carries Retry-After
        └── Overloaded         503: the process holds as many sessions as it may; carries Retry-After

Every RequestError renders as RFC 9457 problem+json through ``problem()``; an
exporter never raises, so there is no export branch here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar


class GatewayError(Exception):
    """Base of everything the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A configuration value is missing or wrong; ``key`` is its path, e.g.
    ``distribution.voice_gateway.session_idle_timeout_s`` or ``LANGFUSE_PUBLIC_KEY``."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class RequestError(GatewayError):
    status: ClassVar[int] = 400
    title: ClassVar[str] = "Bad request"
    slug: ClassVar[str] = "bad-request"

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        self.detail = detail
        self.errors = errors or []
        super().__init__(detail)

    @property
    def headers(self) -> dict[str, str]:
        return {}

    @property
    def reason(self) -> str:
        """Label for the rejected-requests metric."""
        return self.slug

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://voice-trace-gateway.dev/problems/{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = [e.to_json() for e in self.errors]
        return body


class BadRequest(RequestError):
    pass


class ValidationFailed(BadRequest):
    status = 422
    title = "Validation failed"
    slug = "validation-failed"


class Unauthorized(RequestError):
    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class Forbidden(RequestError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(RequestError):
    status = 404
    title = "Not found"
    slug = "not-found"


class Conflict(RequestError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class PayloadTooLarge(RequestError):
    status = 413
    title = "Payload too large"
    slug = "payload-too-large"


class _Retryable(RequestError):
    def __init__(self, detail: str, retry_after_s: float) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


class TooManyRequests(_Retryable):
    status = 429
    title = "Too many requests"
    slug = "rate-limited"


class Overloaded(_Retryable):
    status = 503
    title = "Service unavailable"
    slug = "overloaded"
