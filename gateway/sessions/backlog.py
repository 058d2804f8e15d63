"""Batches of events applied after their answer, between requests.

A 50-event post costs the state machine and the span encoder about a millisecond, four times what the HTTP
exchange around it costs. Done before the 202, that millisecond is added to the answer of every request queued
behind it; a burst of batched posts then waits out each other's work. Nothing in the 202 depends on it (what
was accepted, duplicated or refused is settled first, from the events and the session's counters), so the
work is queued here instead and done a slice at a time: each slice ends at the first event past
``budget_s``, then the loop takes the requests that arrived meanwhile before the next slice. The answer waits
for the HTTP exchange and its own checks only.

One queue for the whole process, worked in order, so a session's batches are applied in the order they were
accepted. The request that queued a batch still awaits it after its answer is sent: errors reach the server's
log as before, and a test client, which returns once the application does, sees every span of the batch. Past
``max_pending_events`` a request waits for its batch before answering, so a gateway that cannot keep up slows
its clients down instead of queueing without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterator

log = logging.getLogger("gateway.sessions")

# Slices about as long as the bare HTTP exchange of a single-event post: a request that arrives during one waits
# at most that long more.
BUDGET_S = 0.0002
MAX_PENDING_EVENTS = 2_000  # some 40 ms of work at 20 µs an event

Work = Iterator[None]  # applies one event per step; the last step hands on the spans


class Backlog:
    def __init__(self, budget_s: float = BUDGET_S, max_pending_events: int = MAX_PENDING_EVENTS) -> None:
        self.budget_s = budget_s
        self.max_pending_events = max_pending_events
        self.pending_events = 0
        self._items: deque[tuple[Work, asyncio.Future[None], int]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._idle: asyncio.Future[None] | None = None

    def __bool__(self) -> bool:
        return bool(self._items)

    @property
    def full(self) -> bool:
        return self.pending_events >= self.max_pending_events

    def submit(self, work: Work, events: int) -> asyncio.Future[None]:
        """Queue ``work`` (``events`` events); the future is done once it has run to its end."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._task is None or self._task.done():
            self._start(loop)
        done: asyncio.Future[None] = loop.create_future()
        self._items.append((work, done, events))
        self.pending_events += events
        idle = self._idle
        if idle is not None and not idle.done():
            idle.set_result(None)
        return done

    async def settle(self) -> None:
        """Until everything queued so far has been applied (whether or not it failed)."""
        if self._items:
            await self.wait(self._items[-1][1])

    async def wait(self, done: asyncio.Future[None]) -> None:
        """Until ``done`` (from ``submit``) is, whether or not its work failed."""
        if done.done():
            return
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._task is None or self._task.done():
            self._start(loop)  # applies what is left here and now
        if not done.done():
            await asyncio.wait([done])

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        # A new event loop (a test client runs one per request unless kept open): whatever the last one left
        # unfinished is applied now, in order, before anything queued on this one.
        self._drain_here()
        self._loop = loop
        self._idle = None
        self._task = loop.create_task(self._run(), name="vtg-backlog")

    def _drain_here(self) -> None:
        while self._items:
            work, done, events = self._items.popleft()
            self.pending_events -= events
            try:
                for _ in work:
                    pass
            except Exception:
                log.exception("applying a batch of events failed")
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits for it
                if not done.done():
                    done.set_result(None)

    async def _run(self) -> None:
        items = self._items
        clock = time.perf_counter
        loop = asyncio.get_running_loop()
        started = clock()
        while True:
            if not items:
                self._idle = loop.create_future()
                await self._idle
                self._idle = None
                started = clock()
                continue
            work, done, events = items[0]
            budget = self.budget_s
            try:
                for _ in work:
                    if clock() - started > budget:
                        await asyncio.sleep(0)
                        started = clock()
            except Exception as exc:
                if not done.done():
                    done.set_exception(exc)
            else:
                if not done.done():
                    done.set_result(None)
            items.popleft()
            self.pending_events -= events
