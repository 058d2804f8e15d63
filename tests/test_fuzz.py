"""Property-based and schema-based fuzzing: no input crashes the gateway or breaks a trace."""

from __future__ import annotations

import contextlib
from typing import Any

import schemathesis
from conftest import Recorder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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


_telemetry = load_telemetry(env={"VTG_SIGNING_KEY": "f" * 40, "VTG_MAX_OPEN_SESSIONS": "50",
                                 "VTG_RECENT_SESSIONS": "20"})
app = create_app(_telemetry)
_client = TestClient(app)
_session = _client.post("/v1/sessions", json={}).json()
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_route_answers_5xx_to_schema_generated_requests(case: Any) -> None:
    if case.path_parameters and "session_id" in case.path_parameters:
        # Aim at a real session with its real token, so bodies get past authentication and are validated.
        case.path_parameters["session_id"] = _session["session_id"]
        case.headers = {**(case.headers or {}), "authorization": f"Bearer {_session['token']}"}
    response = case.call()
    # 503 is an answer, not a failure, from readiness (starting or draining) and when the process is full.
    documented_503 = response.status_code == 503 and (case.path == "/readyz" or "retry-after" in response.headers)
    assert response.status_code < 500 or documented_503, response.text
    if response.status_code >= 400:
        content_type = response.headers.get("content-type")
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        assert content_type == "application/problem+json", f"{response.status_code}: {content_type}"


def test_the_process_stays_healthy_and_bounded_after_fuzzing() -> None:
    assert _client.get("/healthz").status_code == 200
    import asyncio

    service = app.state.service
    assert asyncio.run(service.store.count_active()) <= 50
    assert len(app.state.recent.trace_ids()) <= 20
