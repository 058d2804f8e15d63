"""Who may create a session and mint a provider token for it, and the minting itself, for the route modules.

An API key (``VTG_API_KEYS``) lets a trusted backend in; forward auth (``VTG_FORWARD_AUTH_URL``) lets in a browser
the app itself has signed in. With neither configured, session creation is open and minting is off (settings
refuse ``provider_tokens`` without one of them).
"""

from __future__ import annotations

from starlette.requests import Request

from gateway.api.http import bearer_token, client_of, guard_of, service_of
from gateway.errors import Unauthorized
from gateway.providers.forward_auth import ForwardAuth
from gateway.providers.minting import TokenMinter
from gateway.providers.token import MintedToken


def minter_of(request: Request) -> TokenMinter:
    minter: TokenMinter = request.app.state.minter
    return minter


async def authorize_creation(request: Request) -> str | None:
    """Raises unless the request may create a session; returns the user forward auth named, if any."""
    api_keys = service_of(request).api_keys
    presented = bearer_token(request, query=False)
    forward: ForwardAuth | None = getattr(request.app.state, "forward_auth", None)
    if forward is None:
        api_keys.check(presented)
        return None
    if api_keys.required and presented:
        try:
            api_keys.check(presented)
            return None
        except Unauthorized:
            pass  # not one of our keys: perhaps the app's own bearer token, which its auth endpoint knows
    return await forward.check(request.headers.get("cookie"), request.headers.get("authorization"), request.method,
                               request.url.path, client_of(request))


async def mint_for(request: Request, provider: str, user: str | None) -> MintedToken:
    guard_of(request).token_minted(client_of(request), user)
    return await minter_of(request).mint(provider)
