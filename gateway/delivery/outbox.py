"""The outbox: spans committed with the session state, read by each exporter as its own consumer.

A mutation's finished spans are encoded once, here, to the OTLP protobuf an
OTLP exporter posts (one ``ExportTraceServiceRequest`` per mutation), and the
store writes those bytes in the mutation's own transaction (SQLite table,
Redis Stream). Entries are read in order per exporter and acknowledged only
after that exporter's backend (or its disk spool) took them, so a process that
dies between commit and export leaves them to be read again: delivery is at
least once, and a repeated entry is byte-identical (same trace and span ids).
Several requests concatenated are one valid request (protobuf merges repeated
fields), which is how entries are batched without decoding them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.sessions.outbox import OutboxEntry
from gateway.sessions.state import FinishedSpan, TraceRef
from gateway.spans import SpanEmitter


class SpanEncoder:
    """Finished span records of one mutation → one OTLP request, encoded straight from the records with the
    emitter's resource, scope and span limits (``gateway.delivery.otlp_records``)."""

    def __init__(self, emitter: SpanEmitter) -> None:
        self._encoder = emitter.encoder

    def entry(self, trace: TraceRef, records: Sequence[FinishedSpan]) -> OutboxEntry | None:
        if not trace.sampled or not records:
            return None
        return self._encoder.request(trace, records), len(records)


def publish(emitter: SpanEmitter, trace: TraceRef, entry: OutboxEntry) -> int:
    """Spans committed to the outbox, handed as bytes to the emitter's processors that take them (the viewer's
    buffer: with an outbox it is the only one, the exporters read the outbox). Returns the span count."""
    data, count = entry
    for processor in emitter.processors:
        add = getattr(processor, "add_encoded", None)
        if add is not None:
            add(trace.trace_id, data)
    return count


@dataclass(frozen=True)
class Entry:
    id: str
    data: bytes
    spans: int


@dataclass(frozen=True)
class OutboxStats:
    entries: int
    bytes: int
    oldest_age_s: float


class OutboxSource(Protocol):
    """One store's outbox as the drain sees it; safe to call from several threads."""

    def register(self, consumers: Sequence[str]) -> None:
        """Make sure each consumer (exporter) exists; a new one starts with everything still held."""

    def read(self, consumer: str, max_spans: int, wait_s: float) -> list[Entry]:
        """The consumer's next entries (at least one entry, about ``max_spans`` spans), waiting up to ``wait_s``
        for one; entries another replica read and never acknowledged come back here after a while."""
        ...

    def ack(self, consumer: str, entries: Sequence[Entry]) -> None: ...

    def keep(self, consumer: str, entries: Sequence[Entry]) -> None:
        """Still working on these (a backend is away): no other replica should take them over."""

    def trim(self) -> OutboxStats:
        """Delete what every consumer acknowledged; the outbox's size and the age of its oldest entry."""
        ...

    def close(self) -> None: ...
