"""The backlog on its own: slices, order, failures, settling, and a loop that went away."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from gateway.sessions.backlog import Backlog


def steps(log: list[str], name: str, n: int) -> Iterator[None]:
    for i in range(n):
        log.append(f"{name}{i}")
        yield


def test_work_is_done_in_order_a_slice_at_a_time_with_other_tasks_between_slices() -> None:
    log: list[str] = []

    async def other() -> None:
        for _ in range(3):
            log.append("other")
            await asyncio.sleep(0)

    async def main() -> None:
        backlog = Backlog(budget_s=0.0)  # every step past the budget: a slice per step
        first = backlog.submit(steps(log, "a", 3), 3)
        second = backlog.submit(steps(log, "b", 2), 2)
        assert backlog.pending_events == 5
        await asyncio.gather(other(), first, second)
        assert backlog.pending_events == 0 and not backlog

    asyncio.run(main())
    assert [x for x in log if x != "other"] == ["a0", "a1", "a2", "b0", "b1"]
    assert log.index("other") < log.index("a2")  # the other task ran between the slices of one piece of work


def test_a_failing_piece_of_work_fails_its_own_future_and_the_next_one_still_runs() -> None:
    log: list[str] = []

    def broken() -> Iterator[None]:
        yield
        raise ValueError("the machine broke")

    async def main() -> None:
        backlog = Backlog()
        bad = backlog.submit(broken(), 1)
        good = backlog.submit(steps(log, "g", 2), 2)
        with pytest.raises(ValueError, match="the machine broke"):
            await bad
        await good

    asyncio.run(main())
    assert log == ["g0", "g1"]


def test_settling_waits_for_everything_queued_even_when_some_of_it_failed() -> None:
    log: list[str] = []

    def broken() -> Iterator[None]:
        raise ValueError("no")
        yield

    async def main() -> None:
        backlog = Backlog(budget_s=0.0)
        backlog.submit(steps(log, "a", 2), 2)
        failed = backlog.submit(broken(), 1)
        backlog.submit(steps(log, "c", 2), 2)
        await backlog.settle()
        assert log == ["a0", "a1", "c0", "c1"] and not backlog
        assert isinstance(failed.exception(), ValueError)

    asyncio.run(main())


def test_work_left_by_a_loop_that_ended_is_finished_before_work_queued_on_the_next() -> None:
    log: list[str] = []
    backlog = Backlog(budget_s=0.0)

    async def leave_unfinished() -> None:
        backlog.submit(steps(log, "a", 3), 3)
        await asyncio.sleep(0)  # the worker takes a slice, then this loop ends under it

    asyncio.run(leave_unfinished())
    assert log and log != ["a0", "a1", "a2"]

    async def next_loop() -> None:
        await backlog.submit(steps(log, "b", 1), 1)

    asyncio.run(next_loop())
    assert log == ["a0", "a1", "a2", "b0"] and backlog.pending_events == 0
