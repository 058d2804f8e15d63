"""The SQLite store's outbox: a table read through one cursor per exporter.

One process owns the file (see the store), so nothing is ever claimed from
another reader: a restarted gateway finds each exporter's cursor where it was
and delivers what lies beyond it. The drain has its own connection; WAL lets
it read while the event loop writes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from gateway.delivery.outbox import Entry, OutboxStats
from gateway.sessions.sqlite_store import SqliteStore, connect


class SqliteOutbox:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._db = connect(store.path)
        self._lock = threading.Lock()

    def register(self, consumers: Sequence[str]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for name in consumers:
                    self._db.execute("INSERT OR IGNORE INTO outbox_cursors (consumer, acked) VALUES (?, 0)", (name,))
                # An exporter no longer configured would hold every entry forever.
                marks = ",".join("?" for _ in consumers) or "''"
                self._db.execute(f"DELETE FROM outbox_cursors WHERE consumer NOT IN ({marks})", tuple(consumers))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def read(self, consumer: str, max_spans: int, wait_s: float) -> list[Entry]:
        deadline = time.monotonic() + wait_s
        while True:
            self._store.outbox_written.clear()
            entries = self._read(consumer, max_spans)
            left = deadline - time.monotonic()
            if entries or left <= 0:
                return entries
            self._store.outbox_written.wait(left)

    def _read(self, consumer: str, max_spans: int) -> list[Entry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, spans, data FROM outbox WHERE id > (SELECT acked FROM outbox_cursors WHERE consumer = ?) "
                "ORDER BY id LIMIT 1000", (consumer,)).fetchall()
        out: list[Entry] = []
        total = 0
        for row_id, spans, data in rows:
            if out and total + spans > max_spans:
                break
            out.append(Entry(str(row_id), bytes(data), int(spans)))
            total += spans
        return out

    def ack(self, consumer: str, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        last = max(int(e.id) for e in entries)
        with self._lock:
            self._db.execute("UPDATE outbox_cursors SET acked = MAX(acked, ?) WHERE consumer = ?", (last, consumer))

    def keep(self, consumer: str, entries: Sequence[Entry]) -> None:
        pass  # nobody else reads this file

    def trim(self) -> OutboxStats:
        with self._lock:
            self._db.execute(
                "DELETE FROM outbox WHERE id <= (SELECT MIN(acked) FROM outbox_cursors) "
                "AND EXISTS (SELECT 1 FROM outbox_cursors)")
            entries, size, oldest = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0), MIN(at_ns) FROM outbox").fetchone()
        self._store.outbox_entries, self._store.outbox_bytes = int(entries), int(size)
        age = max(0.0, (time.time_ns() - oldest) / 1e9) if oldest is not None else 0.0
        return OutboxStats(int(entries), int(size), age)

    def close(self) -> None:
        with self._lock:
            self._db.close()
