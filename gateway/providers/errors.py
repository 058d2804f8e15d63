"""The refusals of minting and forward auth, as problem+json like every other refusal."""

from __future__ import annotations

from typing import Any

from gateway.errors import FieldError, RequestError


class MintingDisabled(RequestError):
    status = 501
    title = "Not implemented"
    slug = "provider-tokens-disabled"


class ProviderNotConfigured(RequestError):
    """Minting is on but the provider's key is missing: the operator's mistake, not the client's."""

    status = 503
    title = "Service unavailable"
    slug = "provider-not-configured"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "60"}  # until the operator sets the key


class ProviderFailed(RequestError):
    """The provider refused, failed or did not answer in time."""

    status = 502
    title = "Bad gateway"
    slug = "provider-failed"

    def __init__(self, detail: str, provider: str, provider_status: int | None) -> None:
        answer = f"answered HTTP {provider_status}" if provider_status else "did not answer"
        super().__init__(detail, [FieldError("provider", f"{provider} {answer}")])
        self.provider, self.provider_status = provider, provider_status

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body = super().problem(instance)
        body["provider"] = self.provider
        body["provider_status"] = self.provider_status
        return body


class AuthUnavailable(RequestError):
    """The forward auth endpoint could not be asked, or failed itself: nobody can be let in, and it is not the
    client's fault either."""

    status = 503
    title = "Service unavailable"
    slug = "auth-unavailable"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class ProviderCallFailed(Exception):
    """A provider module's failure, before it becomes a ``ProviderFailed``: ``status`` is the provider's HTTP
    status, ``None`` when it never answered; ``kind`` labels the metric (http_error, timeout, unreachable,
    bad_response)."""

    def __init__(self, provider: str, kind: str, status: int | None = None, cause: str = "") -> None:
        self.provider, self.kind, self.status, self.cause = provider, kind, status, cause
        super().__init__(f"{provider}: {kind} {status or ''}".strip())
