"""Value records (``gateway.frozen``): equal ones hash alike and compare equal, changed copies leave the original."""

from __future__ import annotations

from dataclasses import replace

from gateway.analytics.usage import Usage
from gateway.sessions.state import TraceRef


def test_equal_records_are_equal_and_hash_alike_and_a_changed_copy_leaves_the_original() -> None:
    trace = TraceRef("a" * 32, "b" * 16, None, False)
    assert trace == TraceRef("a" * 32, "b" * 16, None, False)
    assert {trace, TraceRef("a" * 32, "b" * 16, None, False)} == {trace}
    sampled = replace(trace, sampled=True)
    assert sampled.sampled and not trace.sampled
    assert hash(Usage(1, 2)) == hash(Usage(1, 2)) and Usage(1, 2) + Usage(3, 4) == Usage(4, 6)
    assert not hasattr(trace, "__dict__")  # slotted: no per-instance dict
