"""A durable single-node store: SQLite in WAL mode.

Each mutation is one transaction, committed before the request is answered,
so a ``kill -9`` loses no event that was answered 202 (WAL with
``synchronous=NORMAL`` is durable across a process crash; only a power loss
can cost the last transactions). One process per database file: SQLite here
is for a single gateway that must survive restarts, not for replicas (use
the Redis store for those).

Calls run on the event loop thread: each is a few indexed row reads or writes
with no fsync, cheaper than a hop to a worker thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from gateway.sessions.codec import decode, encode
from gateway.sessions.state import SessionState

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    state BLOB NOT NULL,
    start_ns INTEGER NOT NULL,
    last_activity_ns INTEGER NOT NULL,
    ended_at_ns INTEGER
);
CREATE INDEX IF NOT EXISTS sessions_open_activity ON sessions(last_activity_ns) WHERE ended_at_ns IS NULL;
CREATE INDEX IF NOT EXISTS sessions_open_start ON sessions(start_ns) WHERE ended_at_ns IS NULL;
CREATE INDEX IF NOT EXISTS sessions_ended ON sessions(ended_at_ns) WHERE ended_at_ns IS NOT NULL;
"""


class SqliteStore:
    durable = True

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def _row(self, session_id: str) -> SessionState | None:
        row = self._db.execute("SELECT state FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return decode(row[0]) if row else None

    def _write(self, state: SessionState) -> None:
        self._db.execute(
            "UPDATE sessions SET state = ?, last_activity_ns = ?, ended_at_ns = ? WHERE id = ?",
            (encode(state), state.last_activity_ns, state.ended_at_ns if state.ended else None, state.session_id),
        )

    async def create(self, state: SessionState) -> bool:
        try:
            self._db.execute(
                "INSERT INTO sessions (id, state, start_ns, last_activity_ns, ended_at_ns) VALUES (?, ?, ?, ?, NULL)",
                (state.session_id, encode(state), state.start_ns, state.last_activity_ns),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    async def get(self, session_id: str) -> SessionState | None:
        return self._row(session_id)

    async def mutate(self, session_id: str, fn: Callable[[SessionState], T]) -> T | None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            state = self._row(session_id)
            if state is None:
                self._db.execute("ROLLBACK")
                return None
            result = fn(state)
            self._write(state)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return result

    async def remove(self, session_id: str) -> None:
        self._db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    async def ids(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT id FROM sessions")]

    async def count_active(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM sessions WHERE ended_at_ns IS NULL").fetchone()[0])

    async def expired(self, idle_before_ns: int, started_before_ns: int, ended_before_ns: int) -> list[str]:
        rows = self._db.execute(
            "SELECT id FROM sessions WHERE ended_at_ns IS NULL AND (last_activity_ns < ? OR start_ns < ?) "
            "UNION SELECT id FROM sessions WHERE ended_at_ns IS NOT NULL AND ended_at_ns < ?",
            (idle_before_ns, started_before_ns, ended_before_ns),
        )
        return [r[0] for r in rows]

    async def close(self) -> None:
        self._db.close()
