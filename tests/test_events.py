import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec import Raw

from gateway.errors import RequestError, ValidationFailed
from gateway.events import (
    EVENT_TYPES,
    BaseEvent,
    EndBody,
    Mark,
    SessionCreate,
    ToolCall,
    decode_envelope,
    decode_model,
    end_events,
    parse_event,
    parse_model,
)


def test_every_catalogue_type_is_known() -> None:
    assert len(EVENT_TYPES) == 23
    assert {"model.usage", "tool.cancel", "connection.go_away", "session.update", "mark"} <= EVENT_TYPES


def test_unknown_type_is_rejected_by_name_with_its_path() -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_event({"type": "model.dance", "id": "1"}, "events[4]")
    assert [(e.path, e.message) for e in info.value.errors] == [
        ("events[4].type", "unknown event type 'model.dance'")]


def test_missing_and_wrong_fields_name_their_paths() -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_event({"type": "tool.call", "id": "1", "name": 3}, "events[0]")
    assert {e.path for e in info.value.errors} == {"events[0].call_id", "events[0].name"}


def test_single_event_paths_start_at_the_field() -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_event({"type": "user.transcript"}, "")
    assert {e.path for e in info.value.errors} == {"id", "text"}


def test_ts_accepts_ms_epoch_and_rfc3339() -> None:
    a = parse_event({"type": "mark", "id": "1", "name": "x", "ts": 1_700_000_000_123}, "")
    b = parse_event({"type": "mark", "id": "1", "name": "x", "ts": "2023-11-14T22:13:20.123Z"}, "")
    assert a.ts == 1_700_000_000_123
    assert b.ts is not None and not isinstance(b.ts, float) and b.ts.timestamp() == pytest.approx(1_700_000_000.123)


def test_session_id_must_be_safe_characters() -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_model(SessionCreate, {"session_id": "a b/c"})
    assert info.value.errors[0].path == "session_id"


@pytest.mark.parametrize("ts", [float("inf"), float("nan"), 1e308, -1.0])
def test_timestamps_that_cannot_be_a_time_are_rejected_at_ts(ts: float) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_event({"type": "mark", "id": "1", "name": "x", "ts": ts}, "events[2]")
    assert [e.path for e in info.value.errors] == ["events[2].ts"]


def test_seq_beyond_int64_is_rejected_at_seq() -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_event({"type": "mark", "id": "1", "name": "x", "seq": 2**64}, "")
    assert [e.path for e in info.value.errors] == ["seq"]


# -- from the body's bytes ----------------------------------------------------------------------------


def refusal(fn: Any, *args: Any) -> tuple[int, list[tuple[str, str]]]:
    with pytest.raises(RequestError) as info:
        fn(*args)
    return info.value.status, [(e.path, e.message) for e in info.value.errors]


def test_a_valid_batch_is_decoded_whole_into_events() -> None:
    body = json.dumps({"sent_at": 5, "events": [
        {"type": "mark", "id": "1", "name": "x", "seq": 1},
        {"id": "2", "type": "tool.call", "call_id": "c", "name": "t", "arguments": {"a": [1, 2.5, None]}},
    ]}).encode()
    events, sent_at, batched = decode_envelope(body)
    assert batched and sent_at == 5
    assert [type(e) for e in events] == [Mark, ToolCall]
    assert isinstance(events[1], ToolCall) and events[1].arguments == {"a": [1, 2.5, None]}
    assert [e.type for e in events if isinstance(e, BaseEvent)] == ["mark", "tool.call"]


def test_a_batch_with_a_bad_event_is_left_raw_and_each_event_decoded_on_its_own() -> None:
    good = {"type": "mark", "id": "1", "name": "x"}
    body = json.dumps({"events": [good, {"type": "tool.call", "id": "2", "name": 3}, good]}).encode()
    events, _, batched = decode_envelope(body)
    assert batched and all(isinstance(e, Raw) for e in events)
    assert parse_event(events[0], "events[0]") == parse_event(events[2], "events[2]") == Mark(id="1", name="x")
    assert refusal(parse_event, events[1], "events[1]")[1] == [
        ("events[1].call_id", "field required"), ("events[1].name", "Expected `str`, got `int`")]


@pytest.mark.parametrize("body", [
    b'{"type": "mark", "id": "1", "name": "x"}',
    b' \n{ "type" :"mark","id":"1","name":"x","events":"not a batch: an unknown field"}',
    b'{"id": "1", "name": "x", "type": "mark", "sent_at": 3}',
    b'{"id": "1", "name": "x", "events": 7, "type": "mark"}',
])
def test_a_body_with_a_type_is_one_event_wherever_the_type_is(body: bytes) -> None:
    events, sent_at, batched = decode_envelope(body)
    assert not batched and sent_at is None and len(events) == 1
    assert parse_event(events[0], "") == Mark(id="1", name="x")


@pytest.mark.parametrize(("body", "status", "errors"), [
    (b"", 422, [("", "expected an object")]),
    (b"  \n", 422, [("", "expected an object")]),
    (b"[1, 2]", 422, [("", "expected an object")]),
    (b'"x"', 422, [("", "expected an object")]),
    (b'{"events": "x"}', 422, [("events", "must be a list")]),
    (b'{"events": null}', 422, [("events", "must be a list")]),
    (b'{"events": [1,}', 400, [("", "invalid JSON")]),
    (b'{"type": "mark", "id": "1"', 400, [("", "invalid JSON")]),
    # Malformed past the point where the first, typed pass stopped at a bad value.
    (b'{"events": [1], "sent_at": }', 400, [("", "invalid JSON")]),
    (b'{"type": "mark", "id": 1, "name": }', 400, [("", "invalid JSON")]),
    (b'{"events": "x", "sent_at": }', 400, [("", "invalid JSON")]),
    # A number past any float's range is no JSON the gateway reads (a bad event's own is reported at its index).
    (b'{"events": [1], "sent_at": 1e400}', 400, [("", "invalid JSON")]),
    (b'{"events": [], "sent_at": [-1e400]}', 400, [("", "invalid JSON")]),
])
def test_bodies_that_are_no_events_are_refused_whole(body: bytes, status: int, errors: list[tuple[str, str]]) -> None:
    assert refusal(decode_envelope, body) == (status, errors)


def test_raw_json_that_is_malformed_is_an_invalid_event_not_a_crash() -> None:
    for raw in (Raw(b'{"type": "mark", "id": 1, "name": '), Raw(b"{nope")):
        assert refusal(parse_event, raw, "events[0]") == (422, [("events[0]", "invalid JSON")])
    events, _, _ = decode_envelope(b'{"events": [{"type": "mark", "id": "1", "name": "x", "ts": 1e400}, 1]}')
    assert refusal(parse_event, events[0], "events[0]") == (422, [("events[0]", "invalid JSON")])


def test_request_bodies_report_every_bad_field_from_bytes() -> None:
    body = b'{"session_id": "a b", "user_id": 5, "tags": ["ok", 3], "client": {"sdk": 1}, "unknown": true}'
    status, errors = refusal(decode_model, SessionCreate, body)
    assert status == 422 and [path for path, _ in errors] == ["session_id", "user_id", "tags[1]", "client.sdk"]
    assert decode_model(SessionCreate, b"") == SessionCreate()
    assert refusal(decode_model, SessionCreate, b"[]") == (422, [("", "expected an object")])
    assert refusal(decode_model, SessionCreate, b'{"user_id": 5, "model": }') == (400, [("", "invalid JSON")])


def test_end_events_are_a_list_or_nothing() -> None:
    assert end_events(decode_model(EndBody, b'{"reason": "done"}')) == []
    for nothing in (b"null", b"0", b"false", b'""', b"[]"):
        assert end_events(decode_model(EndBody, b'{"events": ' + nothing + b"}")) == []
    raws = end_events(decode_model(EndBody, b'{"events": [{"type": "mark"}, 1]}'))
    assert [bytes(r) for r in raws if isinstance(r, Raw)] == [b'{"type": "mark"}', b"1"]
    valid = end_events(decode_model(EndBody, b'{"events": [{"type": "mark", "id": "1", "name": "x"}]}'))
    assert valid == [Mark(id="1", name="x")]
    for not_a_list in (b'"x"', b"1e400", b'{"a": 1}'):
        body = decode_model(EndBody, b'{"events": ' + not_a_list + b"}")
        assert refusal(end_events, body) == (422, [("events", "must be a list")])


@pytest.mark.parametrize(("field", "value", "path"), [
    ("session_id", "abc\n", "session_id"),  # $ alone would let a trailing newline through
    ("attributes", {"k": 2**63}, "attributes.k"),
    ("attributes", {"k": float("inf")}, "attributes.k"),
    ("attributes", {"k": float("nan")}, "attributes.k"),
    ("attributes", {"": 1}, "attributes."),
])
def test_session_limits(field: str, value: Any, path: str) -> None:
    assert [p for p, _ in refusal(parse_model, SessionCreate, {field: value})[1]] == [path]


@pytest.mark.parametrize(("event", "path"), [
    ({"type": "connection.close", "code": 2**63}, "code"),
    ({"type": "connection.go_away", "time_left_ms": float("inf")}, "time_left_ms"),
    ({"type": "model.interrupted", "played_ms": -1}, "played_ms"),
    ({"type": "mark", "name": "x", "ts": "yesterday"}, "ts"),
    ({"type": "mark", "name": "x", "ts": True}, "ts"),
    ({"type": "user.speech_end", "source": "psychic"}, "source"),
    ({"type": "tool.cancel", "call_ids": []}, "call_ids"),
])
def test_event_limits(event: dict[str, Any], path: str) -> None:
    assert [p for p, _ in refusal(parse_event, {"id": "1", **event}, "events[0]")[1]] == [f"events[0].{path}"]


event_like = st.fixed_dictionaries({"type": st.sampled_from([*sorted(EVENT_TYPES), "nope"])}, optional={
    key: st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=3) | st.lists(st.text(max_size=3), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers() | st.text(max_size=3), max_size=2)
    for key in ("id", "seq", "ts", "text", "call_id", "name", "call_ids", "usage", "attributes", "tags", "source")})


@settings(max_examples=300, deadline=None)
@given(st.one_of(event_like, st.lists(st.integers(), max_size=2), st.text(max_size=3)))
def test_an_event_from_bytes_and_from_values_is_decoded_or_refused_alike(value: Any) -> None:
    """The request path (bytes) and events built in code (values) share one schema and one error report."""
    outcomes = []
    for raw in (Raw(json.dumps(value).encode()), value):
        try:
            outcomes.append(parse_event(raw, "events[1]"))
        except ValidationFailed as exc:
            outcomes.append([(e.path, e.message) for e in exc.errors])
    assert outcomes[0] == outcomes[1]
    if isinstance(outcomes[0], list):
        assert outcomes[0] and all(path.startswith("events[1]") for path, _ in outcomes[0])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5) | st.sampled_from(sorted(EVENT_TYPES)),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["type", "id", "events", "sent_at", "ts", "name", "call_ids", "reason"]),
                      inner, max_size=5),
    max_leaves=15,
)
# JSON text, cut or spliced with what JSON parsers trip on (out-of-range numbers, NaN, stray bytes).
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.tuples(json_values.map(lambda v: json.dumps(v).encode()), st.integers(0, 200),
              st.sampled_from([b"", b"1e400", b"-1e999", b"NaN", b"\xff", b"}", b",", b'"\\ud800"', b" "]))
    .map(lambda t: t[0][:t[1]] + t[2] + t[0][t[1]:]),
)


@settings(max_examples=500, deadline=None)
@given(bodies)
def test_any_body_is_events_or_a_request_error_never_anything_else(body: bytes) -> None:
    try:
        events, _, _ = decode_envelope(body)
    except RequestError:
        pass
    else:
        for i, raw in enumerate(events):
            with contextlib.suppress(ValidationFailed):
                parse_event(raw, f"events[{i}]")
    try:
        end = decode_model(EndBody, body)
    except RequestError:
        return
    with contextlib.suppress(ValidationFailed):
        for raw in end_events(end):
            with contextlib.suppress(ValidationFailed):
                parse_event(raw, "events[0]")
