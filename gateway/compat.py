"""Routes of the system we derive from (DESIGN §3.4), mapped onto the canonical events.

Its clients send ``{sessionId, type, timestamp, data}`` with four event types;
each becomes one or more v1 events with ids derived from the legacy fields, so
a replayed legacy event is deduplicated like any other. Unlike the original,
the ingest token is required here too (header, ``?token=`` or a ``token``
field), since unauthenticated writes were one of its defects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import events as ev
from gateway.errors import FieldError, ValidationFailed
from gateway.routes import JSONResponse, bearer_token, read_json, service_of

LEGACY_TYPES = ("turn_start", "turn_complete", "tool_call", "tool_result")
_BAD_TIMESTAMP = FieldError("timestamp", "ms epoch or ISO 8601")


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object", [FieldError("", "expected an object")])
    return body


def _session_id(body: dict[str, Any]) -> str:
    sid = body.get("sessionId")
    if not isinstance(sid, str) or not sid:
        raise ValidationFailed("sessionId is required", [FieldError("sessionId", "required string")])
    return sid


def _ms(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000
        except ValueError:
            raise ValidationFailed("timestamp is not a date", [_BAD_TIMESTAMP]) from None
    raise ValidationFailed("timestamp is not a date", [_BAD_TIMESTAMP])


def legacy_to_events(body: dict[str, Any]) -> list[dict[str, Any]]:
    kind = body.get("type")
    if kind not in LEGACY_TYPES:
        raise ValidationFailed(
            f"unknown event type {kind!r}", [FieldError("type", f"expected one of {', '.join(LEGACY_TYPES)}")]
        )
    data = body.get("data") or {}
    if not isinstance(data, dict):
        raise ValidationFailed("data must be an object", [FieldError("data", "expected an object")])
    ts = _ms(body.get("timestamp"))
    turn = data.get("turnNumber")
    base = f"compat:{kind}:{turn}:{ts}"
    out: list[dict[str, Any]] = []

    def add(event_type: str, suffix: str, at: float | None = ts, **fields: Any) -> None:
        out.append({"type": event_type, "id": f"{base}:{suffix}", "ts": at, **fields})

    if kind == "turn_start":
        add("user.transcript", "transcript", text=str(data.get("userTranscript") or ""), final=True)
    elif kind == "turn_complete":
        duration = data.get("durationMs")
        started = ts - float(duration) if ts is not None and isinstance(duration, int | float) else ts
        add("model.response_start", "response", at=started)
        if data.get("aiTranscript"):
            add("model.transcript", "transcript", text=str(data["aiTranscript"]))
        add("model.turn_complete", "complete")
    else:
        name = data.get("toolName")
        if not isinstance(name, str) or not name:
            raise ValidationFailed("toolName is required", [FieldError("data.toolName", "required string")])
        call_id = f"compat:{turn}:{name}"
        if kind == "tool_call":
            add("tool.call", name, call_id=call_id, name=name, arguments=data.get("toolArgs"))
        else:
            add("tool.result", name, call_id=call_id, result=data.get("result"), error=data.get("error"))
    return out


def _token(request: Request, body: dict[str, Any]) -> str | None:
    token = bearer_token(request)
    return token or (body.get("token") if isinstance(body.get("token"), str) else None)


async def legacy_token(request: Request) -> Response:
    service = service_of(request)
    body = await read_json(request, service.settings.max_body_bytes) or {}
    body = _object(body)
    req = ev.parse_model(ev.SessionCreate, {
        "session_id": body.get("sessionId"),
        "user_id": body.get("userId"),
        "model": body.get("model"),
        "provider": body.get("provider"),
        "agent": body.get("agent"),
    })
    created = await service.start(req, request.headers.get("traceparent"))
    return JSONResponse({"sessionId": created["session_id"], **created}, status_code=201)


async def legacy_event(request: Request) -> Response:
    service = service_of(request)
    body = _object(await read_json(request, service.settings.max_body_bytes))
    session_id = _session_id(body)
    service.signer.verify(_token(request, body), session_id)
    result = await service.ingest(session_id, legacy_to_events(body), None, prefix="events")
    if result.rejected:
        errors = [FieldError(e["path"], e["message"]) for r in result.rejected for e in r["errors"]]
        raise ValidationFailed("the event could not be mapped", errors)
    return Response(status_code=204)


async def legacy_end(request: Request) -> Response:
    service = service_of(request)
    body = _object(await read_json(request, service.settings.max_body_bytes))
    session_id = _session_id(body)
    service.signer.verify(_token(request, body), session_id)
    reason = body.get("reason") if isinstance(body.get("reason"), str) and body.get("reason") else "completed"
    summary, _ = await service.end(session_id, str(reason)[:256])
    return JSONResponse({
        "traceId": summary["trace_id"],
        "summary": {
            "totalTurns": summary["turns"],
            "totalToolCalls": summary["tool_calls"],
            "durationMs": summary["duration_ms"],
        },
    })


routes = [
    Route("/api/live/token", legacy_token, methods=["POST"]),
    Route("/api/live/trace/event", legacy_event, methods=["POST"]),
    Route("/api/live/trace/end", legacy_end, methods=["POST"]),
]
