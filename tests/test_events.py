import pytest

from gateway.errors import ValidationFailed
from gateway.events import EVENT_TYPES, SessionCreate, parse_event, parse_model


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
