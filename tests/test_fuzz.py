"""Property-based and schema-based fuzzing: no input crashes the gateway or breaks a trace."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import schemathesis
from conftest import Recorder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks
from starlette.testclient import TestClient
from test_machine import Run

from gateway.app import create_app
from gateway.errors import ValidationFailed
from gateway.events import parse_event
from gateway.otel_config import load_telemetry
from gateway.sessions.machine import MachineOptions, SessionMachine

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
TYPES = ["connection.open", "connection.setup_complete", "connection.go_away", "connection.resumed",
         "connection.close", "user.speech_start", "user.speech_end", "model.response_start", "model.audio_start",
         "model.playback_start", "model.generation_complete", "model.turn_complete", "model.interrupted"]
CALL_IDS = st.sampled_from(["a", "b", "c"])


def event_strategy() -> st.SearchStrategy[dict[str, Any]]:
    simple = st.builds(lambda t: {"type": t}, st.sampled_from(TYPES))
    rich = st.one_of(
        st.builds(lambda t: {"type": "user.transcript", "text": t}, st.text(max_size=30)),
        st.builds(lambda t: {"type": "model.transcript", "text": t}, st.text(max_size=30)),
        st.builds(lambda c, n: {"type": "tool.call", "call_id": c, "name": n}, CALL_IDS, st.sampled_from(["x", "y"])),
        st.builds(lambda c, e: {"type": "tool.result", "call_id": c, "error": e}, CALL_IDS, st.none() | st.text()),
        st.builds(lambda c: {"type": "tool.cancel", "call_ids": c}, st.lists(CALL_IDS, min_size=1, max_size=3)),
        st.builds(lambda u: {"type": "model.usage", "usage": u},
                  st.dictionaries(st.sampled_from(["promptTokenCount", "responseTokenCount", "input_tokens",
                                                   "promptTokensDetails", "output_token_details"]),
                                  json_values, max_size=4)),
        st.builds(lambda: {"type": "error", "error_type": "x"}),
        st.builds(lambda: {"type": "mark", "name": "m"}),
    )
    return st.one_of(simple, rich)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(event_strategy(), max_size=40), st.sampled_from(["completed", "timeout", "error"]))
def test_any_event_sequence_gives_a_well_formed_trace(events: list[dict[str, Any]], reason: str) -> None:
    recorder = Recorder()
    run = Run(SessionMachine(MachineOptions.capture_all()), recorder)
    for event in events:
        run.send(event.pop("type"), 5, **event)
    run.end(reason)
    spans = recorder.spans()
    ids = [s.context.span_id for s in spans]
    assert len(ids) == len(set(ids)), "no span twice"
    assert spans[-1].name == "voice_session"
    known = set(ids)
    for span in spans[:-1]:
        assert span.parent is not None and span.parent.span_id in known, f"{span.name} is an orphan"
        assert span.start_time is not None and span.end_time is not None and span.start_time <= span.end_time
    state = run.state
    assert state.turn is None and not state.tools and state.connection is None and state.pending_speech is None
    turns = [s for s in spans if s.name.startswith("invoke_agent")]
    assert len(turns) == state.turn_count


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_any_json_is_an_event_or_a_validation_error(raw: Any) -> None:
    try:
        parse_event(raw, "events[0]")
    except ValidationFailed as exc:
        assert exc.errors and all(e.path.startswith("events[0]") for e in exc.errors)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["type", "id", "seq", "ts", "text", "call_id", "name", "usage", "call_ids"]),
                       json_values, max_size=6))
def test_event_shaped_garbage_never_raises_anything_but_validation_errors(raw: dict[str, Any]) -> None:
    with contextlib.suppress(ValidationFailed):
        parse_event(raw, "")


# Event rate limits well above what the fuzzing sends, so generated events reach the session machine instead of
# a 429 (session creation keeps its default limit, and its 429).
ADMIN_KEY = "fuzz-admin-key"  # schemathesis calls from "testclient", no loopback address: the viewer wants a key
_telemetry = load_telemetry(env={"VTG_SIGNING_KEY": "f" * 40, "VTG_MAX_OPEN_SESSIONS": "50",
                                 "VTG_RECENT_SESSIONS": "20", "VTG_EVENT_RATE_PER_SESSION": "100000",
                                 "VTG_EVENT_RATE_PER_CLIENT": "100000", "VTG_ADMIN_KEY": ADMIN_KEY})
app = create_app(_telemetry)
_client = TestClient(app)
# Real sessions come from another address than the fuzzed requests (schemathesis calls from "testclient"), so the
# rate limit on session creation that the fuzzing runs into does not refuse them.
_creator = TestClient(app, client=("127.0.0.1", 50000))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
ENDING = {"/v1/sessions/{session_id}/end", "/api/live/trace/end"}


@pytest.fixture
def real() -> dict[str, dict[str, Any]]:
    """Fresh real sessions for each operation's test: schemathesis runs the app's lifespan for each test, and its
    shutdown ends and drops every session. One is for the end routes to end; the other stays open for the rest,
    so events keep reaching a live session (not a 404 or a 409) whatever the order of the operations."""
    out = {}
    for name in ("live", "ending"):
        response = _creator.post("/v1/sessions", json={})
        assert response.status_code == 201, response.text
        out[name] = response.json()
    return out


def _aim(case: Any, real: dict[str, dict[str, Any]]) -> None:
    """Aim a request at a real session with its real token, so bodies get past authentication and are validated.

    Routes name the session in the path (v1) or in the body's ``sessionId`` (legacy). The token goes where the
    generated request put one (``?token=``, or a legacy body's ``token`` field), else in the header: a generated
    ``Authorization`` header would win over both, so it goes.
    """
    session = real["ending"] if case.path in ENDING else real["live"]
    named = False
    if case.path_parameters and "session_id" in case.path_parameters:
        case.path_parameters["session_id"] = session["session_id"]
        named = True
    body = case.body if isinstance(case.body, dict) else None
    if body is not None and case.path.startswith("/api/live/trace/"):
        body["sessionId"] = session["session_id"]
        named = True
    if not named:
        return
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    if case.query and "token" in case.query:
        case.query["token"] = session["token"]
    elif body is not None and "token" in body:
        body["token"] = session["token"]
    else:
        headers["authorization"] = f"Bearer {session['token']}"
    case.headers = headers


def _aim_trace(case: Any, real: dict[str, dict[str, Any]]) -> None:
    """The viewer's trace route: an open trace, a finished one, or the generated id (most likely a 404)."""
    generated = case.path_parameters["trace_id"]
    finished = app.state.recent.trace_ids()
    choices = [real["live"]["trace_id"], *finished[:1], generated]
    case.path_parameters["trace_id"] = choices[len(generated) % len(choices)]


def _aim_viewer(case: Any) -> None:
    """The viewer's routes with the admin key where the generated request presents one (header or ``?key=``),
    so most requests get past admission; one without any key still meets the 403."""
    headers = dict(case.headers or {})
    if case.query and "key" in case.query:
        case.query["key"] = ADMIN_KEY
    elif any(k.lower() == "authorization" for k in headers) or not case.query:
        headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        headers["authorization"] = f"Bearer {ADMIN_KEY}"
    case.headers = headers


# Checked on every answer: the document is the contract, so a status, header or body it does not describe fails.
CONFORMANCE = [checks.status_code_conformance, checks.content_type_conformance,
               checks.response_headers_conformance, checks.response_schema_conformance]


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_route_answers_5xx_to_schema_generated_requests(case: Any, real: dict[str, dict[str, Any]]) -> None:
    _aim(case, real)
    if case.path_parameters and "trace_id" in case.path_parameters:
        _aim_trace(case, real)
    if case.path.startswith("/ui/api/"):
        _aim_viewer(case)
    response = case.call()
    # 503 is an answer, not a failure, where the document says so: readiness (starting or draining), and
    # session creation when the process is full (with Retry-After). So is 501 from /api/live/token, which this
    # app, minting no provider tokens, answers to every request that got past its body's validation.
    documented = case.operation.definition.raw["responses"].get(str(response.status_code))
    assert response.status_code < 500 or (response.status_code in (501, 503) and documented), response.text
    if response.status_code >= 400:
        # Refusals are problem+json, unless the document says otherwise (readiness answers its status as JSON).
        content_type = response.headers.get("content-type")
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        expected = set((documented or {}).get("content") or {"application/problem+json": None})
        assert content_type in expected, f"{response.status_code}: {content_type}"
    case.validate_response(response, checks=CONFORMANCE)


def test_the_process_still_serves_a_whole_session_after_fuzzing() -> None:
    # Runs after the schema fuzzing in this module: whatever it sent, a plain session still works end to end
    # and the buffers the fuzzing filled stay within their bounds.
    with TestClient(app, client=("127.0.0.1", 50001)) as client:
        assert client.get("/healthz").status_code == 200
        s = client.post("/v1/sessions", json={}).json()
        headers = {"authorization": f"Bearer {s['token']}"}
        events = [{"type": "user.transcript", "id": "1", "text": "hi"}, {"type": "model.response_start", "id": "2"},
                  {"type": "model.turn_complete", "id": "3"}]
        assert client.post(f"/v1/sessions/{s['session_id']}/events", json={"events": events},
                           headers=headers).json()["accepted"] == 3
        assert client.post(f"/v1/sessions/{s['session_id']}/end", json={}, headers=headers).json()["turns"] == 1
        assert {x["name"] for x in app.state.recent.get(s["trace_id"]) or []} >= {"voice_session", "invoke_agent"}
        assert len(app.state.recent.trace_ids()) <= 20
