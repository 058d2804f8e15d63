"""OpenAI Realtime client secrets through the ``openai`` SDK's ``realtime.client_secrets.create``.

The request is ``POST {base}/realtime/client_secrets`` (``{base}`` ends in ``/v1``) with ``Authorization: Bearer
<key>`` and a body of ``expires_after: {anchor: "created_at", seconds}`` and, when the operator sets one, the
``session`` config the secret carries; the answer's ``value`` (``ek_...``) and ``expires_at`` (epoch seconds) are
what the browser gets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

import openai
from openai.types.realtime import client_secret_create_params

from gateway.providers.errors import ProviderCallFailed
from gateway.providers.token import MintedToken

NAME = "openai"
KEY_VARIABLES = ("OPENAI_API_KEY",)
BASE_URL_VARIABLE = "OPENAI_BASE_URL"


async def mint(
    api_key: str,
    base_url: str | None,
    *,
    ttl_s: float,
    session: Mapping[str, Any],
    timeout_s: float,
) -> MintedToken:
    # One attempt, bounded: the browser retries, and a slow provider must not hold the request for the SDK's backoff.
    client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url or None, max_retries=0, timeout=timeout_s)
    expires_after: client_secret_create_params.ExpiresAfter = {"anchor": "created_at", "seconds": int(ttl_s)}
    try:
        async with client:
            create = client.realtime.client_secrets.create
            call = (create(expires_after=expires_after,
                           session=cast(client_secret_create_params.Session, dict(session)))
                    if session else create(expires_after=expires_after))
            secret = await asyncio.wait_for(call, timeout_s + 1)
    except openai.APIStatusError as exc:
        raise ProviderCallFailed(NAME, "http_error", exc.status_code) from None
    except (openai.APITimeoutError, TimeoutError):
        raise ProviderCallFailed(NAME, "timeout") from None
    except openai.APIConnectionError:
        raise ProviderCallFailed(NAME, "unreachable") from None
    except openai.OpenAIError as exc:
        raise ProviderCallFailed(NAME, "bad_response", 200, cause=type(exc).__name__) from None
    value, expires_at = getattr(secret, "value", None), getattr(secret, "expires_at", None)
    if not isinstance(value, str) or not value or not isinstance(expires_at, int | float):
        raise ProviderCallFailed(NAME, "bad_response", 200)
    return MintedToken(NAME, value, float(expires_at))
