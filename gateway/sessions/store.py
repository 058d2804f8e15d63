"""Where session state lives, behind one interface.

A store's one promise beyond get/put is ``mutate``: the function runs against
the current state of one session with no other update of that session in
between. In memory that is free (the event loop runs one handler at a time
and ``mutate`` does not await inside); a shared store implements it with its
own optimistic or locked transaction and may call the function more than once,
so the function must only change the state it is given.

The durable and shared stores also hold an outbox: ``mutate``'s ``outbox``
function turns the mutation's result into the encoded spans it finished, and
the store writes them in the same atomic step as the state, so a span of an
accepted event is never only in a process's memory (gateway/delivery/drain.py
delivers them). The memory store has none: its spans go straight to the
in-memory export queues.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from gateway.sessions.outbox import OutboxOf
from gateway.sessions.state import SessionState

T = TypeVar("T")

class SessionStore(Protocol):
    # A durable store keeps sessions across restarts (or for other replicas): shutdown leaves them open.
    durable: bool
    # Whether mutations commit their spans to this store's outbox (set when a drain delivers from it).
    outbox: bool

    async def create(self, state: SessionState) -> bool:
        """Store a new session; False if the id is taken."""
        ...

    async def get(self, session_id: str) -> SessionState | None: ...

    async def mutate(self, session_id: str, fn: Callable[[SessionState], T],
                     outbox: OutboxOf[T] | None = None) -> T | None:
        """Apply ``fn`` atomically to the session; None (fn not called) if there is no such session. With
        ``outbox`` (and the store's outbox on), the entry it makes of fn's result is committed with the state,
        or ``OutboxFull`` is raised and nothing is."""
        ...

    async def remove(self, session_id: str) -> None: ...

    async def ids(self) -> list[str]: ...

    async def count_active(self) -> int: ...

    async def expired(self, idle_before_ns: int, started_before_ns: int, ended_before_ns: int) -> list[str]:
        """Sessions idle since before the first bound, started before the second, or ended before the third."""
        ...

    async def close(self) -> None: ...


class MemoryStore:
    """Process-local store: fastest, lost on restart, not shared between replicas."""

    durable = False
    outbox = False

    def __init__(self) -> None:
        self._sessions: dict[str, SessionState] = {}
        self._active = 0

    async def create(self, state: SessionState) -> bool:
        if state.session_id in self._sessions:
            return False
        self._sessions[state.session_id] = state
        self._active += not state.ended
        return True

    async def get(self, session_id: str) -> SessionState | None:
        return self._sessions.get(session_id)

    def peek(self, session_id: str) -> SessionState | None:
        """``get`` without a wait: the state itself, changed in place by whoever holds it."""
        return self._sessions.get(session_id)

    async def mutate(self, session_id: str, fn: Callable[[SessionState], T],
                     outbox: OutboxOf[T] | None = None) -> T | None:
        state = self._sessions.get(session_id)
        if state is None:
            return None
        was_ended = state.ended
        result = fn(state)
        self._active -= state.ended and not was_ended
        return result

    async def remove(self, session_id: str) -> None:
        state = self._sessions.pop(session_id, None)
        if state is not None and not state.ended:
            self._active -= 1

    async def ids(self) -> list[str]:
        return list(self._sessions)

    async def count_active(self) -> int:
        return self._active

    async def expired(self, idle_before_ns: int, started_before_ns: int, ended_before_ns: int) -> list[str]:
        out = []
        for sid, s in self._sessions.items():
            if s.ended:
                if s.ended_at_ns is not None and s.ended_at_ns < ended_before_ns:
                    out.append(sid)
            elif s.last_activity_ns < idle_before_ns or s.start_ns < started_before_ns:
                out.append(sid)
        return out

    async def close(self) -> None:
        self._sessions.clear()
        self._active = 0


def open_store(url: str, outbox_max_entries: int = 100_000, outbox_max_bytes: int = 256 * 1024 * 1024) -> SessionStore:
    """``memory``, ``sqlite:///path/to/file.db`` or ``redis://host:port/db``."""
    from gateway.errors import ConfigError

    if url in ("", "memory"):
        return MemoryStore()
    if url.startswith("sqlite://"):
        from gateway.sessions.sqlite_store import SqliteStore

        path = url.removeprefix("sqlite://")
        if not path:
            raise ConfigError("session_store", "sqlite needs a path: sqlite:///var/lib/vtg/sessions.db")
        return SqliteStore(path, outbox_max_entries, outbox_max_bytes)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from gateway.sessions.redis_store import RedisStore

        return RedisStore(url, outbox_max_entries=outbox_max_entries, outbox_max_bytes=outbox_max_bytes)
    raise ConfigError("session_store", f"unknown store {url!r}: expected memory, sqlite:///path or redis://host/db")
