"""Gemini Live ephemeral tokens through ``google-genai``'s ``auth_tokens.create`` (Gemini API, v1alpha).

The request is ``POST {base}/v1alpha/auth_tokens`` with the key in ``x-goog-api-key`` and a body of ``uses``,
``expireTime``, ``newSessionExpireTime`` and, when the operator locks the token to a model,
``bidiGenerateContentSetup``; the answer's ``name`` (``auth_tokens/...``) is the token the browser's SDK uses as
its API key.
"""

from __future__ import annotations

import asyncio
import datetime
import warnings
from collections.abc import Mapping
from typing import Any

from google import genai
from google.genai import _common as genai_common
from google.genai import errors as genai_errors
from google.genai import types

from gateway.providers.errors import ProviderCallFailed
from gateway.providers.token import MintedToken

NAME = "gemini"
KEY_VARIABLES = ("GOOGLE_API_KEY", "GEMINI_API_KEY")  # the SDK's own order: GOOGLE_API_KEY wins when both are set
BASE_URL_VARIABLE = "GOOGLE_GEMINI_BASE_URL"


def live_constraints(model: str, config: Mapping[str, Any]) -> types.LiveConnectConstraints | None:
    """The operator's lock on the token (raises pydantic's ValidationError for a config the SDK does not take)."""
    if not model:
        return None
    return types.LiveConnectConstraints(model=model, config=types.LiveConnectConfig(**config) if config else None)


async def mint(
    api_key: str,
    base_url: str | None,
    *,
    ttl_s: float,
    new_session_ttl_s: float,
    uses: int,
    constraints: types.LiveConnectConstraints | None,
    timeout_s: float,
    now: float,
) -> MintedToken:
    expires = now + ttl_s
    at = datetime.datetime.fromtimestamp
    config = types.CreateAuthTokenConfig(
        uses=uses,
        expire_time=at(expires, datetime.UTC),
        new_session_expire_time=at(now + new_session_ttl_s, datetime.UTC),
        live_connect_constraints=constraints,
    )
    # The base URL is passed rather than left to the SDK's own reading of the variable, so the gateway's settings
    # stay the one place the environment is read. One attempt: the browser retries, and a slow provider must not
    # hold the request for the SDK's backoff.
    http_options = types.HttpOptions(
        api_version="v1alpha", base_url=base_url or None, timeout=max(1, int(timeout_s * 1000)),
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    client = genai.Client(api_key=api_key, vertexai=False, http_options=http_options)
    try:
        async with client.aio as aio:
            with warnings.catch_warnings():
                # The SDK calls the method experimental (it is v1alpha); that is known, not news for the log.
                warnings.simplefilter("ignore", genai_common.ExperimentalWarning)
                call = aio.auth_tokens.create(config=config)
            token = await asyncio.wait_for(call, timeout_s)
    except genai_errors.APIError as exc:
        raise ProviderCallFailed(NAME, "http_error", exc.code) from None
    except TimeoutError:
        raise ProviderCallFailed(NAME, "timeout") from None
    except Exception as exc:
        # Transport failures arrive as the SDK's HTTP library's own exceptions (named here by type only: the key
        # is in no exception message, but nothing is risked).
        kind = "timeout" if "timeout" in type(exc).__name__.lower() else "unreachable"
        raise ProviderCallFailed(NAME, kind, cause=type(exc).__name__) from None
    if not isinstance(token.name, str) or not token.name:
        raise ProviderCallFailed(NAME, "bad_response", 200)
    return MintedToken(NAME, token.name, expires)
