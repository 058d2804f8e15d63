from gateway.events import SessionUpdate
from gateway.sessions.codec import decode, encode
from gateway.sessions.machine import MachineOptions, SessionMachine
from gateway.sessions.state import (
    SEEN_IDS_IN_A_LIST,
    SessionState,
    TraceRef,
    new_span_id,
    new_trace_id,
    shared_tags,
)


def fresh() -> SessionState:
    return SessionState("s", TraceRef(new_trace_id(), new_span_id(), None, True), 1, 1, 1)


def test_dedup_holds_across_the_move_from_list_to_set() -> None:
    state = fresh()
    ids = [f"e{i}" for i in range(SEEN_IDS_IN_A_LIST * 3)]
    for n, event_id in enumerate(ids):
        assert not state.has_seen(event_id)
        state.remember(event_id)
        assert all(state.has_seen(x) for x in ids[: n + 1])
    assert state.seen_id_set is not None and not state.seen_ids
    assert not state.has_seen("never-sent")


def test_seen_ids_survive_a_round_trip_through_the_store_codec_on_both_sides_of_the_move() -> None:
    for count in (SEEN_IDS_IN_A_LIST - 1, SEEN_IDS_IN_A_LIST + 1):
        state = fresh()
        for i in range(count):
            state.remember(f"e{i}")
        back = decode(encode(state))
        assert all(back.has_seen(f"e{i}") for i in range(count)) and not back.has_seen(f"e{count}")


def test_forgetting_seen_ids_frees_both_forms() -> None:
    state = fresh()
    for i in range(SEEN_IDS_IN_A_LIST + 5):
        state.remember(f"e{i}")
    state.forget_seen()
    assert state.seen_ids == "" and state.seen_id_set is None and not state.has_seen("e0")


def test_a_state_written_before_the_codec_had_versions_still_decodes_with_its_seen_ids() -> None:
    import msgspec

    from gateway.sessions.codec import VERSION

    state = fresh()
    state.event_count = 3
    # Version 1, as the gateway wrote it before: a bare MessagePack map, the seen ids a list of strings.
    legacy = msgspec.to_builtins(state)
    legacy["seen_ids"] = ["e0", "e1", "e2"]
    back = decode(msgspec.msgpack.encode(legacy))
    assert back.event_count == 3 and back.trace == state.trace
    assert all(back.has_seen(f"e{i}") for i in range(3)) and not back.has_seen("e3")
    assert encode(back)[:2] == bytes([0xC1, VERSION])


def test_an_id_holding_the_separator_is_deduplicated_without_matching_its_parts() -> None:
    state = fresh()
    state.remember("a\x1fb")
    assert state.has_seen("a\x1fb") and not state.has_seen("a") and not state.has_seen("b")
    state.remember("a")
    assert state.has_seen("a") and not state.has_seen("b")
    back = decode(encode(state))
    assert back.has_seen("a\x1fb") and back.has_seen("a") and not back.has_seen("b")


def test_sessions_with_the_same_tags_share_one_tuple_and_an_update_appends_new_tags_once() -> None:
    first, second = shared_tags(["a", "b", "a"]), shared_tags(["a", "b"])
    assert first == ("a", "b") and first is second
    state = fresh()
    state.tags = first
    machine = SessionMachine(MachineOptions())
    machine.apply(state, SessionUpdate(id="u", tags=["c", "a", "c"]), 2)
    assert state.tags == ("a", "b", "c")
    back = decode(encode(state))
    assert back.tags == ("a", "b", "c")
