"""The live viewer (``/ui``) and the demo page (``/demo``), and the read-only API the viewer polls.

The viewer reads two things only: the recent-traces buffer (spans as the
exporters got them) and the open sessions' state (spans still open, drawn up
to now). Session data can include captured content, so these routes answer
loopback clients only, unless ``admin_key`` is set, in which case they want
it (``Authorization: Bearer`` or ``?key=``) from anywhere.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from gateway import semconv as sc
from gateway.api.http import JSONResponse, require_admin, service_of
from gateway.delivery.recent import RecentTraces
from gateway.errors import NotFound
from gateway.sessions.state import AWAIT_TURN_COMPLETE, OpenSpan, SessionState

STATIC = Path(__file__).parent.parent / "static"


def _recent(request: Request) -> RecentTraces:
    recent: RecentTraces = request.app.state.recent
    return recent


def _open_span(span: OpenSpan, trace_id: str, now_ns: int) -> dict[str, Any]:
    return {
        "name": span.name, "trace_id": trace_id, "span_id": span.span_id, "parent_span_id": span.parent_id,
        "kind": span.kind, "start_time_unix_nano": span.start_ns, "end_time_unix_nano": None, "now": now_ns,
        "attributes": dict(span.attributes),
        "events": [{"name": e.name, "time_unix_nano": e.time_ns, "attributes": e.attributes} for e in span.events],
        "status": {"code": "unset"},
    }


def open_spans(state: SessionState, now_ns: int) -> list[dict[str, Any]]:
    """What is still open in a live session, as span dicts with no end yet."""
    trace = state.trace
    root = OpenSpan(sc.SPAN_SESSION, int(trace.root_span_id, 16), trace.parent_span_id, state.root_start_ns,
                    attrs=(sc.SESSION_ID, state.session_id), events=list(state.root_events))
    spans = [root, *state.tools.values()]
    if state.connection:
        spans.append(state.connection)
    if state.turn:
        spans.extend(s for s in (state.turn.span, state.turn.speech, state.turn.inference) if s is not None)
    if state.held:  # ended, its spans not yet out (machine: waiting for a trailing turn_complete or playback)
        spans.append(state.held.span)
        if state.held.awaiting == AWAIT_TURN_COMPLETE and state.held.inference is not None:
            spans.append(state.held.inference)
    # A per-turn trace mode puts turn spans in traces of their own: each open span says which.
    return [_open_span(s, s.trace_id or trace.trace_id, now_ns) for s in spans]


def _summary(spans: list[dict[str, Any]]) -> dict[str, Any] | None:
    root = next((s for s in spans if s["name"] == sc.SPAN_SESSION and s["end_time_unix_nano"]), None)
    if root is None:
        return None
    a = root["attributes"]
    return {
        "trace_id": root["trace_id"], "session_id": a.get(sc.SESSION_ID), "user_id": a.get(sc.USER_ID),
        "agent": a.get(sc.GEN_AI_AGENT_NAME), "model": a.get(sc.GEN_AI_REQUEST_MODEL),
        "end_reason": a.get(sc.VOICE_SESSION_END_REASON), "turns": a.get(sc.VOICE_SESSION_TURN_COUNT),
        "started_unix_nano": root["start_time_unix_nano"],
        "duration_ms": (root["end_time_unix_nano"] - root["start_time_unix_nano"]) / 1e6,
        "active": False,
    }


async def sessions(request: Request) -> Response:
    require_admin(request, "the viewer", query=True)
    service = service_of(request)
    await service.settle()  # batches accepted but not yet applied show in both lists
    active: list[dict[str, Any]] = []
    for session_id in await service.store.ids():
        state = await service.store.get(session_id)
        if state is None or state.ended:
            continue
        active.append({
            "trace_id": state.trace.trace_id, "session_id": state.session_id, "user_id": state.user_id,
            "agent": state.agent, "model": state.model, "turns": state.turn_count,
            "started_unix_nano": state.start_ns, "open_turn": state.turn.number if state.turn else None,
            "active": True,
        })
    recent = _recent(request)
    finished = [s for s in (_summary(recent.get(t) or []) for t in recent.trace_ids()) if s]
    active.sort(key=lambda s: -s["started_unix_nano"])
    return JSONResponse({"active": active, "recent": finished})


async def trace(request: Request) -> Response:
    require_admin(request, "the viewer", query=True)
    trace_id = request.path_params["trace_id"]
    service = service_of(request)
    await service.settle()
    spans = list(_recent(request).get(trace_id) or [])
    now = time.time_ns()
    for session_id in await service.store.ids():
        state = await service.store.get(session_id)
        if state is not None and not state.ended:
            spans.extend(s for s in open_spans(state, now) if s["trace_id"] == trace_id)
    if not spans:
        raise NotFound(f"no recent or active trace {trace_id!r}")
    spans.sort(key=lambda s: (s["start_time_unix_nano"], s["name"] != sc.SPAN_SESSION))
    return JSONResponse({"trace_id": trace_id, "now": now, "spans": spans})


async def ui_page(request: Request) -> Response:
    require_admin(request, "the viewer", query=True)
    return FileResponse(STATIC / "ui.html")


async def demo_page(request: Request) -> Response:
    return FileResponse(STATIC / "demo.html")


routes = [
    Route("/ui", ui_page, methods=["GET"]),
    Route("/ui/api/sessions", sessions, methods=["GET"]),
    Route("/ui/api/traces/{trace_id}", trace, methods=["GET"]),
    Route("/demo", demo_page, methods=["GET"]),
]
