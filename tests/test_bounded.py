from __future__ import annotations

from gateway.bounded import BoundedMap


def test_a_bounded_map_never_holds_more_than_its_bound() -> None:
    m: BoundedMap[int, int] = BoundedMap(100)
    for i in range(10_000):
        m.put(i, i)
        assert len(m) <= 101
    assert m.get(9_999) == 9_999 and m.get(0) is None


def test_a_key_in_use_survives_any_number_of_new_keys() -> None:
    m: BoundedMap[str, int] = BoundedMap(10)
    m.put("kept", 1)
    for i in range(1_000):
        m.put(f"k{i}", i)
        assert m.get("kept") == 1


def test_a_key_unused_while_more_new_keys_than_the_bound_arrive_is_forgotten() -> None:
    m: BoundedMap[str, int] = BoundedMap(10)
    m.put("idle", 1)
    for i in range(11):
        m.put(f"k{i}", i)
    assert m.get("idle") is None
