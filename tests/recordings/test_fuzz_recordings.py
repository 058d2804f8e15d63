"""The recording routes fuzzed from /openapi.json with audio capture on, aimed at a real recorded session: whatever
arrives, the answer is one the document lists (never a 5xx but the documented 503), and refusals are problem+json."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from recording_app import make_app
from schemathesis import checks
from starlette.testclient import TestClient

ADMIN_KEY = "fuzz-admin-key"
_dir = Path(tempfile.mkdtemp(prefix="vtg-fuzz-recordings-"))
app = make_app((_dir / "rec").as_uri(), VTG_ADMIN_KEY=ADMIN_KEY, VTG_RECORDING_MAX_CHUNK_BYTES="4096",
               VTG_SESSION_CREATE_RATE_PER_CLIENT="100000")
_creator = TestClient(app, client=("127.0.0.1", 50000))
schema = schemathesis.openapi.from_asgi("/openapi.json", app).include(path_regex="recording")
CONFORMANCE = [checks.status_code_conformance, checks.content_type_conformance,
               checks.response_headers_conformance, checks.response_schema_conformance]


@pytest.fixture
def session() -> dict[str, Any]:
    created = _creator.post("/v1/sessions", json={"record_audio": True})
    assert created.status_code == 201, created.text
    answer: dict[str, Any] = created.json()
    first = _creator.post(f"/v1/sessions/{answer['session_id']}/recording", params={"chunk": 0, "start": 1},
                          content=b"\x1aE\xdf\xa3first", headers={"authorization": f"Bearer {answer['token']}",
                                                                   "content-type": "audio/webm;codecs=opus"})
    assert first.status_code == 201, first.text
    return answer


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_recording_routes_answer_only_as_documented(case: Any, session: dict[str, Any]) -> None:
    case.path_parameters["session_id"] = session["session_id"]
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    if case.method == "POST":
        headers["authorization"] = f"Bearer {session['token']}"
        if case.query and "token" in case.query:
            case.query["token"] = session["token"]
    elif case.method == "DELETE":
        headers["authorization"] = f"Bearer {ADMIN_KEY}"
    elif case.query and len(str(case.query.get("sig", ""))) % 2:  # half the plays with a real link
        url = app.state.recordings.links.url(session["session_id"])
        exp, sig = url.split("?", 1)[1].split("&")
        case.query.update({"exp": exp.split("=")[1], "sig": sig.split("=")[1]})
    case.headers = headers
    response = case.call()
    documented = case.operation.definition.raw["responses"].get(str(response.status_code))
    assert response.status_code < 500 or (response.status_code == 503 and documented), response.text
    if response.status_code >= 400:
        content_type = response.headers.get("content-type")
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        expected = set((documented or {}).get("content") or {"application/problem+json": None})
        assert content_type in expected, f"{response.status_code}: {content_type}"
    case.validate_response(response, checks=CONFORMANCE)
