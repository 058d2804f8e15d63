"""Which provider a session's token comes from, the operator's key for it, and minting with every failure made a
problem+json that names the provider and its status, never the key."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping

import pydantic

from gateway.errors import ConfigError, FieldError
from gateway.metrics import GatewayMetrics
from gateway.providers import gemini, openai
from gateway.providers.errors import (
    MintingDisabled,
    ProviderCallFailed,
    ProviderFailed,
    ProviderNotConfigured,
)
from gateway.providers.token import MintedToken
from gateway.settings import GatewaySettings

log = logging.getLogger("gateway.providers")

# A session's provider as clients name it (OTel GenAI provider names, or plainly) -> the minting provider.
_ALIASES = {"gemini": "gemini", "google": "gemini", "gcp.gemini": "gemini", "gcp.gen_ai": "gemini",
            "openai": "openai"}
_KEY_VARIABLES = {gemini.NAME: gemini.KEY_VARIABLES, openai.NAME: openai.KEY_VARIABLES}
_BASE_URL_VARIABLES = {gemini.NAME: gemini.BASE_URL_VARIABLE, openai.NAME: openai.BASE_URL_VARIABLE}


def _failure_detail(exc: ProviderCallFailed, timeout_s: float) -> str:
    if exc.kind == "http_error":
        return f"the {exc.provider} provider refused to mint a token: it answered HTTP {exc.status}"
    if exc.kind == "timeout":
        return f"the {exc.provider} provider did not answer within {timeout_s:g} s"
    if exc.kind == "unreachable":
        return f"the {exc.provider} provider could not be reached"
    return f"the {exc.provider} provider answered without a token"


class TokenMinter:
    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics, env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        env = os.environ if env is None else env
        self.settings = settings
        self.enabled = settings.provider_tokens
        self._metrics = metrics
        self._clock = clock
        # Read once: the keys live here and in the SDK clients built per call, nowhere else.
        self._keys = {name: next((env[v] for v in variables if env.get(v)), "")
                      for name, variables in _KEY_VARIABLES.items()}
        self._base_urls = {name: env.get(variable) or None for name, variable in _BASE_URL_VARIABLES.items()}
        try:
            self._gemini_constraints = gemini.live_constraints(settings.gemini_live_model,
                                                               settings.gemini_live_config)
        except pydantic.ValidationError as exc:
            raise ConfigError("VTG_GEMINI_LIVE_CONFIG", f"not a LiveConnectConfig: {exc}") from None

    def describe(self) -> dict[str, str]:
        """Whether each enabled provider has its key, for logs: never the key itself."""
        return {name: "key configured" if self._keys.get(name) else f"no key: set {' or '.join(_KEY_VARIABLES[name])}"
                for name in self.enabled}

    def provider_for(self, session_provider: str | None) -> str | None:
        """The provider whose token a session created with ``provider`` gets, if the operator mints for it."""
        name = _ALIASES.get((session_provider or "").strip().lower())
        return name if name in self.enabled else None

    def legacy_provider(self, session_provider: str | None) -> str:
        """The original's token route always minted: the named provider, else the first one enabled."""
        if not self.enabled:
            raise MintingDisabled("this gateway mints no provider tokens: set VTG_PROVIDER_TOKENS (gemini, openai) "
                                  "and the provider's API key to serve /api/live/token")
        if not session_provider:
            return self.enabled[0]
        name = self.provider_for(session_provider)
        if name is None:
            raise MintingDisabled(f"this gateway mints no tokens for provider {session_provider!r}; it mints for "
                                  f"{', '.join(self.enabled)}", [FieldError("provider", "no tokens minted for it")])
        return name

    async def mint(self, provider: str) -> MintedToken:
        failures = self._metrics.provider_token_failures
        key = self._keys.get(provider)
        if not key:
            failures.labels(provider, "no_key").inc()
            raise ProviderNotConfigured(
                f"minting {provider} tokens needs {' or '.join(_KEY_VARIABLES[provider])} in the gateway's "
                "environment", [FieldError("provider", f"no API key configured for {provider}")])
        s = self.settings
        try:
            if provider == gemini.NAME:
                token = await gemini.mint(
                    key, self._base_urls[provider], ttl_s=s.gemini_token_ttl_s,
                    new_session_ttl_s=s.gemini_new_session_ttl_s, uses=s.gemini_token_uses,
                    constraints=self._gemini_constraints, timeout_s=s.provider_token_timeout_s, now=self._clock())
            else:
                token = await openai.mint(key, self._base_urls[provider], ttl_s=s.openai_token_ttl_s,
                                          session=s.openai_session, timeout_s=s.provider_token_timeout_s)
        except ProviderCallFailed as exc:
            failures.labels(provider, exc.kind).inc()
            log.warning("minting a %s token failed: %s%s%s", provider, exc.kind,
                        f" (HTTP {exc.status})" if exc.status else "", f" ({exc.cause})" if exc.cause else "")
            raise ProviderFailed(_failure_detail(exc, s.provider_token_timeout_s), provider,
                                 exc.status) from None
        self._metrics.provider_tokens_minted.labels(provider).inc()
        return token
