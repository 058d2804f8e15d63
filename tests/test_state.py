from gateway.sessions.codec import decode, encode
from gateway.sessions.state import SEEN_IDS_IN_A_LIST, SessionState, TraceRef, new_span_id, new_trace_id


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
    assert state.seen_ids == [] and state.seen_id_set is None and not state.has_seen("e0")
