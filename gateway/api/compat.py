"""Routes of the system we derive from (DESIGN §3.4), mapped onto the canonical events.

The translation of its events lives in ``gateway.api.legacy``. ``/api/live/token`` answers the original's shape,
``{token, expiresAt, sessionId}``, where ``token`` is a provider ephemeral token (§3.5), and sets the session's
ingest token as an HttpOnly cookie scoped to ``/api/live/trace``: the original's frontend sends no token, only its
cookies. Unlike the original, trace writes need that ingest token (cookie, header, ``?token=`` or a ``token``
field), since unauthenticated writes were one of its defects; the token route needs an API key or forward auth and
is rate limited like ``POST /v1/sessions``, and events count against the same rate limits as
``POST /v1/sessions/{id}/events``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import events as ev
from gateway.api.cors import credentialed_origins
from gateway.api.http import JSONResponse, bearer_token, client_of, guard_of, read_json, service_of
from gateway.api.legacy import LegacyToolCalls, as_object, legacy_to_events, session_id_of
from gateway.api.minting import authorize_creation, mint_for, minter_of
from gateway.errors import FieldError, ValidationFailed


def tool_calls_of(request: Request) -> LegacyToolCalls:
    state = request.app.state
    calls = getattr(state, "legacy_tool_calls", None)
    if not isinstance(calls, LegacyToolCalls):
        calls = state.legacy_tool_calls = LegacyToolCalls()
    return calls


# -- routes -----------------------------------------------------------------------------------------


COOKIE_PATH = "/api/live/trace"


def cookie_name(session_id: str) -> str:
    """One cookie per session, so two tabs of one app each keep their own; named by a digest of the session id,
    which may hold characters a cookie name may not."""
    return "vtg_ingest_" + hashlib.sha256(session_id.encode()).hexdigest()[:16]


def _secure(request: Request) -> bool:
    if request.url.scheme == "https":
        return True
    peer = request.client.host if request.client else None
    proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return proto == "https" and guard_of(request).addresses.trusts(peer)


def _cookie_attributes(request: Request) -> dict[str, Any]:
    # Cross-site origins configured: the browser sends the cookie on their credentialed posts only when it is
    # SameSite=None, which it accepts only when Secure.
    cross_site = credentialed_origins(service_of(request).settings)
    return {"path": COOKIE_PATH, "httponly": True, "secure": cross_site or _secure(request),
            "samesite": "none" if cross_site else "lax"}


def _token(request: Request, body: dict[str, Any], session_id: str) -> str | None:
    token = bearer_token(request)
    token = token or (body.get("token") if isinstance(body.get("token"), str) else None)
    return token or request.cookies.get(cookie_name(session_id))


_CREATE_FIELDS = {"session_id": "sessionId", "user_id": "userId", "model": "model", "provider": "provider",
                  "agent": "agent"}
_EVENT_FIELDS = {"name": "data.toolName", "call_id": "data.toolName", "arguments": "data.toolArgs",
                 "result": "data.result", "error": "data.error"}


def _renamed(exc: ValidationFailed, path_of: Callable[[str], str], detail: str | None = None) -> ValidationFailed:
    """The same refusal, its paths naming the fields the legacy client sent rather than the canonical ones
    (several canonical events may come from one legacy field: each path is named once)."""
    errors = {(path_of(e.path), e.message): None for e in exc.errors}
    return ValidationFailed(detail or exc.detail, [FieldError(path, message) for path, message in errors])


def _legacy_path(kind: Any, data: dict[str, Any], path: str) -> str:
    head = path.split(".", 1)[0].split("[", 1)[0]
    if head == "ts":
        measured = kind == "turn_complete" and isinstance(data.get("durationMs"), int | float)
        return "data.durationMs" if measured else "timestamp"
    if head == "text":
        return "data.userTranscript" if kind == "turn_start" else "data.aiTranscript"
    return _EVENT_FIELDS.get(head, "data")


async def legacy_token(request: Request) -> Response:
    service = service_of(request)
    user = await authorize_creation(request)
    guard_of(request).session_created(client_of(request))
    body = await read_json(request, service.settings.max_body_bytes) or {}
    body = as_object(body)
    try:
        req = ev.parse_model(ev.SessionCreate, {field: body.get(legacy) for field, legacy in _CREATE_FIELDS.items()})
    except ValidationFailed as exc:
        raise _renamed(exc, lambda p: _CREATE_FIELDS.get(p.split(".", 1)[0], p)) from None
    provider = minter_of(request).legacy_provider(req.provider)
    # Minted before the session starts: a provider that refuses leaves no empty session behind.
    minted = await mint_for(request, provider, user or req.user_id)
    if user:
        req = msgspec.structs.replace(req, user_id=user)  # the signed-in user, not what the page claims
    created = await service.start(req, request.headers.get("traceparent"))
    session_id, ingest_token = created["session_id"], created["token"]
    response = JSONResponse({
        # The original's three fields, meaning what they meant there.
        "token": minted.value,
        "expiresAt": minted.expires_at_iso,
        "sessionId": session_id,
        # Ours, under names of their own: the ingest token (also in the cookie) and the trace.
        "ingestToken": ingest_token,
        "ingestTokenExpiresAt": created["expires_at"],
        "provider": minted.provider,
        "traceId": created["trace_id"],
        "traceparent": created["traceparent"],
    })
    max_age = max(1, int(created["expires_at"] - time.time()))  # the token's life
    response.set_cookie(cookie_name(session_id), ingest_token, max_age=max_age, **_cookie_attributes(request))
    return response


async def legacy_event(request: Request) -> Response:
    service = service_of(request)
    body = as_object(await read_json(request, service.settings.max_body_bytes))
    session_id = session_id_of(body)
    service.signer.verify(_token(request, body, session_id), session_id)
    # Pairing is idempotent per legacy event, so a request refused below and retried pairs the same way.
    events = legacy_to_events(body, session_id, tool_calls_of(request))
    guard_of(request).events(client_of(request), session_id, len(events))
    raw_data = body.get("data")
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    try:
        # One legacy event is one client action: refused whole, never half applied.
        result = await service.ingest(session_id, events, None, prefix="", whole=True)
    except ValidationFailed as exc:
        raise _renamed(exc, lambda p: _legacy_path(body.get("type"), data, p),
                       "the event could not be mapped") from None
    if result.rejected:
        errors = [FieldError(e["path"], e["message"]) for r in result.rejected for e in r["errors"]]
        raise ValidationFailed("the event could not be mapped", errors)
    return Response(status_code=204)


async def legacy_end(request: Request) -> Response:
    service = service_of(request)
    body = as_object(await read_json(request, service.settings.max_body_bytes))
    session_id = session_id_of(body)
    service.signer.verify(_token(request, body, session_id), session_id)
    reason = body.get("reason") if isinstance(body.get("reason"), str) and body.get("reason") else "completed"
    summary, _ = await service.end(session_id, str(reason)[:256])
    tool_calls_of(request).forget(session_id)
    response = JSONResponse({
        "traceId": summary["trace_id"],
        "summary": {
            "totalTurns": summary["turns"],
            "totalToolCalls": summary["tool_calls"],
            "durationMs": summary["duration_ms"],
        },
    })
    if cookie_name(session_id) in request.cookies:
        # The session is over: its cookie would only ride along on every later trace request.
        response.delete_cookie(cookie_name(session_id), **_cookie_attributes(request))
    return response


routes = [
    Route("/api/live/token", legacy_token, methods=["POST"]),
    Route("/api/live/trace/event", legacy_event, methods=["POST"]),
    Route("/api/live/trace/end", legacy_end, methods=["POST"]),
]
