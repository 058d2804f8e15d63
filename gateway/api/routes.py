"""HTTP handlers for the v1 API and operations (DESIGN §3). Thin: parse, authorize, call the service."""

from __future__ import annotations

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import events as ev
from gateway.api.events_endpoint import PostEvents
from gateway.api.http import JSONResponse, bearer_token, client_of, guard_of, read_body, service_of
from gateway.api.minting import authorize_creation, mint_for, minter_of
from gateway.api.openapi import openapi_document
from gateway.service import checked_sent_at


def authorize(request: Request, session_id: str) -> None:
    service_of(request).signer.verify(bearer_token(request), session_id)


async def create_session(request: Request) -> Response:
    service = service_of(request)
    user = await authorize_creation(request)
    guard_of(request).session_created(client_of(request))
    req = ev.decode_model(ev.SessionCreate, await read_body(request, service.settings.max_body_bytes))
    if user:
        req = msgspec.structs.replace(req, user_id=user)  # the signed-in user, not what the page claims
    provider = minter_of(request).provider_for(req.provider)
    # Minted before the session starts: a provider that refuses leaves no empty session behind.
    minted = await mint_for(request, provider, user or req.user_id) if provider else None
    created = await service.start(req, request.headers.get("traceparent"))
    if minted is not None:
        created["provider_token"] = minted.to_json()
    return JSONResponse(created, status_code=201)


# A plain ASGI app rather than a function endpoint: one request per event for some clients (events_endpoint.py).
post_events = PostEvents()


async def end_session(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    authorize(request, session_id)
    service = service_of(request)
    req = ev.decode_model(ev.EndBody, await read_body(request, service.settings.max_body_bytes))
    sent_at = checked_sent_at(req.sent_at)
    raw_events = ev.end_events(req)
    if raw_events:
        guard_of(request).events(client_of(request), session_id, len(raw_events))
    ts = req.ts.timestamp() * 1000 if req.ts is not None and not isinstance(req.ts, float) else req.ts
    summary, result = await service.end(session_id, req.reason, ts, raw_events, sent_at)
    payload = dict(summary)
    if raw_events:
        payload["events"] = result.to_json()
    return JSONResponse(payload)


async def get_session(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    authorize(request, session_id)
    return JSONResponse(await service_of(request).describe(session_id))


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = request.app.state
    if getattr(state, "draining", False) or not getattr(state, "ready", False):
        return JSONResponse({"status": "draining" if getattr(state, "draining", False) else "starting"},
                            status_code=503)
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    registry = service_of(request).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


routes = [
    # First: no other route matches its paths, and GatewayApp (fast_path.py) relies on the router picking it first.
    Route("/v1/sessions/{session_id}/events", post_events, methods=["POST"]),
    Route("/v1/sessions", create_session, methods=["POST"]),
    Route("/v1/sessions/{session_id}", get_session, methods=["GET"]),
    Route("/v1/sessions/{session_id}/end", end_session, methods=["POST"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
