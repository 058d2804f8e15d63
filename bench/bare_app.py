"""The bare endpoint the gateway is measured against: same routes and shapes, no work.

Each POST reads the whole body and parses it as JSON (as the gateway does, whatever the
content type), then answers with a tiny JSON body of the gateway's shape and status. No
state, no auth, no validation, no spans: whatever the gateway costs beyond this is the
gateway's own cost. Served by uvicorn with the same settings as the gateway (bench/run.py).
"""

from __future__ import annotations

import json
import uuid

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def _json(request: Request) -> object:
    body = await request.body()
    return json.loads(body) if body.strip() else None


async def create_session(request: Request) -> Response:
    await _json(request)
    sid = str(uuid.uuid4())
    return JSONResponse({"session_id": sid, "token": sid}, status_code=201)


async def post_events(request: Request) -> Response:
    body = await _json(request)
    n = len(body["events"]) if isinstance(body, dict) and isinstance(body.get("events"), list) else 1
    return JSONResponse({"accepted": n, "duplicates": 0, "rejected": []}, status_code=202)


async def end_session(request: Request) -> Response:
    body = await _json(request)
    reason = body.get("reason") if isinstance(body, dict) else None
    return JSONResponse({"session_id": request.path_params["session_id"], "end_reason": reason})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[
    Route("/v1/sessions", create_session, methods=["POST"]),
    Route("/v1/sessions/{session_id}/events", post_events, methods=["POST"]),
    Route("/v1/sessions/{session_id}/end", end_session, methods=["POST"]),
    Route("/healthz", healthz, methods=["GET"]),
])
