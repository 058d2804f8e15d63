"""States written by an earlier codec version go on under today's: ended, they give the spans the earlier
gateway would have ended them into (tests/sessions/data/states_v2.json: written by the version 2 gateway, with
the spans it ended each state into)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.sessions.codec import VERSION, decode, encode
from gateway.sessions.machine import MachineOptions, SessionMachine
from gateway.sessions.state import FinishedSpan

FIXTURES = json.loads((Path(__file__).parent / "data" / "states_v2.json").read_text())


def as_json(span: FinishedSpan) -> dict[str, Any]:
    # Through JSON, as the fixture was written: tuples and lists compare alike.
    spans: dict[str, Any] = json.loads(json.dumps({
        "name": span.name, "span_id": span.span_id, "parent_id": span.parent_id, "start_ns": span.start_ns,
        "end_ns": span.end_ns, "kind": span.kind, "attributes": span.attributes,
        "events": [[e.name, e.time_ns, e.attributes] for e in span.events], "error": span.error,
        "trace_id": span.trace_id, "links": [list(link) for link in span.links],
    }))
    return spans


def machine(fixture: dict[str, Any]) -> SessionMachine:
    if fixture["per_turn_traces"]:
        return SessionMachine(MachineOptions(per_turn_traces=True))
    return SessionMachine(MachineOptions.capture_all())


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f["name"] for f in FIXTURES])
def test_a_version_2_state_ends_into_the_spans_the_version_2_gateway_gave(fixture: dict[str, Any]) -> None:
    data = base64.b64decode(fixture["state"])
    assert data[:2] == b"\xc1\x02"
    state = decode(data)
    end_ns = fixture["ended"][-1]["end_ns"]
    assert [as_json(s) for s in machine(fixture).end(state, "completed", end_ns)] == fixture["ended"]


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f["name"] for f in FIXTURES])
def test_a_version_2_state_written_again_is_today_s_version_and_ends_the_same(fixture: dict[str, Any]) -> None:
    again = encode(decode(base64.b64decode(fixture["state"])))
    assert again[:2] == bytes([0xC1, VERSION])
    state = decode(again)
    assert state.has_seen("e1") and not state.has_seen("never-sent")
    end_ns = fixture["ended"][-1]["end_ns"]
    assert [as_json(s) for s in machine(fixture).end(state, "completed", end_ns)] == fixture["ended"]


def test_a_state_of_a_version_this_gateway_does_not_know_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="codec version 9"):
        decode(b"\xc1\x09\x80")
