"""A durable single-node store: SQLite in WAL mode.

Each mutation is one transaction, committed before the request is answered,
so a ``kill -9`` loses no event that was answered 202 (WAL with
``synchronous=NORMAL`` is durable across a process crash; only a power loss
can cost the last transactions). One process per database file: SQLite here
is for a single gateway that must survive restarts, not for replicas (use
the Redis store for those).

Calls run on the event loop thread: each is a few indexed row reads or writes
with no fsync, cheaper than a hop to a worker thread.

The outbox is a table in the same file: the spans a mutation finished are
inserted in the mutation's own transaction. Each exporter reads it through
its cursor in ``outbox_cursors`` (gateway/delivery/outbox_sqlite.py), which
also deletes what every cursor has passed and reports the outbox's size back
here for the bound.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from gateway.sessions.codec import decode, encode
from gateway.sessions.outbox import OutboxOf, outbox_full
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
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ns INTEGER NOT NULL,
    spans INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_cursors (
    consumer TEXT PRIMARY KEY,
    acked INTEGER NOT NULL
);
"""


class SqliteStore:
    durable = True

    def __init__(self, path: str | Path, outbox_max_entries: int = 100_000,
                 outbox_max_bytes: int = 256 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = connect(self.path)
        self._db.executescript(_SCHEMA)
        self.outbox = False
        self.outbox_max_entries = outbox_max_entries
        self.outbox_max_bytes = outbox_max_bytes
        entries, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM outbox").fetchone()
        # Kept here for the bound without a query per mutation; the drain sets them after each trim.
        self.outbox_entries, self.outbox_bytes = int(entries), int(size)
        # Set after a commit that wrote to the outbox: wakes the drain.
        self.outbox_written = threading.Event()

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

    async def mutate(self, session_id: str, fn: Callable[[SessionState], T],
                     outbox: OutboxOf[T] | None = None) -> T | None:
        written = 0
        self._db.execute("BEGIN IMMEDIATE")
        try:
            state = self._row(session_id)
            if state is None:
                self._db.execute("ROLLBACK")
                return None
            result = fn(state)
            entry = outbox(result) if outbox is not None and self.outbox else None
            if entry is not None:
                if self.outbox_entries >= self.outbox_max_entries or self.outbox_bytes >= self.outbox_max_bytes:
                    raise outbox_full(self.outbox_entries, self.outbox_bytes)
                data, spans = entry
                self._db.execute("INSERT INTO outbox (at_ns, spans, data) VALUES (?, ?, ?)",
                                 (time.time_ns(), spans, data))
                written = len(data)
            self._write(state)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        if written:
            self.outbox_entries += 1
            self.outbox_bytes += written
            self.outbox_written.set()
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


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, waiting out another writer."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db
