"""The gateway's own Prometheus metrics, one registry per app so tests and replicas never share state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Ten wake-ups a second cost nothing measurable, and a stall of the loop shows within 0.1 s of its start.
LOOP_LAG_INTERVAL_S = 0.1
LOOP_LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


def adder(counter: Counter) -> Callable[[float], None]:
    """``counter.inc`` for amounts known to be positive, on the hot path: what it comes down to for a counter that
    takes values (a child, or one without labels) is its value's ``inc``, under the value's own lock; the checks
    around it (observable, not negative, no exemplar) cost as much again."""
    value = getattr(counter, "_value", None)
    inc = getattr(value, "inc", None)
    return counter.inc if inc is None else cast(Callable[[float], None], inc)


class GatewayMetrics:
    def accepted(self, event_type: str) -> Counter:
        """The per-type child, looked up once: ``labels()`` takes a lock and builds a key on every call."""
        child = self._accepted.get(event_type)
        if child is None:
            child = self._accepted[event_type] = self.events_accepted.labels(event_type)
        return child

    def add_accepted(self, counts: Mapping[str, int]) -> None:
        """Events applied, by type (every count positive)."""
        adders = self._accepted_adders
        for event_type, count in counts.items():
            add = adders.get(event_type)
            if add is None:
                add = adders[event_type] = adder(self.accepted(event_type))
            add(count)

    def __init__(self) -> None:
        self._accepted: dict[str, Counter] = {}
        self._accepted_adders: dict[str, Callable[[float], None]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_accepted = Counter(
            "vtg_events_accepted", "Events applied to a session", ["type"], registry=r
        )
        self.events_duplicate = Counter("vtg_events_duplicate", "Events ignored as replays of a seen id", registry=r)
        self.events_rejected = Counter(
            "vtg_events_rejected", "Events or requests refused, by reason", ["reason"], registry=r
        )
        self.sessions_active = Gauge(
            "vtg_sessions_active", "Open sessions in the session store (every replica's, when shared)", registry=r
        )
        self.sessions_started = Counter("vtg_sessions_started", "Sessions started", registry=r)
        self.sessions_ended = Counter("vtg_sessions_ended", "Sessions ended, by reason", ["reason"], registry=r)
        self.sessions_unsampled = Counter(
            "vtg_sessions_unsampled", "Sessions started but not sampled", registry=r
        )
        self.sessions_kept_for_error = Counter(
            "vtg_sessions_kept_for_error", "Unsampled sessions traced after all because they ended in error",
            registry=r,
        )
        self.unpriced_turns = Gauge(
            "vtg_cost_unpriced_turns", "Turns left unpriced: model unknown to the price tables and overrides",
            registry=r,
        )
        self.spans_emitted = Counter("vtg_spans_emitted", "Spans handed to the export pipeline", registry=r)
        self.add_spans_emitted = adder(self.spans_emitted)  # once per request that finished spans
        self.spans_exported = Counter(
            "vtg_spans_exported", "Spans an exporter delivered", ["exporter"], registry=r
        )
        self.spans_failed = Counter(
            "vtg_spans_failed", "Spans in export calls that failed", ["exporter"], registry=r
        )
        self.spans_dropped = Counter(
            "vtg_spans_dropped", "Spans dropped: queue full, retries exhausted, or refused for good", ["exporter"],
            registry=r,
        )
        self.export_retries = Counter(
            "vtg_export_retries", "Export attempts repeated after a failure", ["exporter"], registry=r
        )
        self.export_latency = Histogram(
            "vtg_export_duration_seconds", "Duration of one export call", ["exporter"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.spooled_batches = Gauge("vtg_export_spooled_batches", "Batches waiting in an exporter's disk spool",
                                     ["exporter"], registry=r)
        self.provider_tokens_minted = Counter(
            "vtg_provider_tokens_minted", "Provider ephemeral tokens minted", ["provider"], registry=r
        )
        self.provider_token_failures = Counter(
            "vtg_provider_token_failures",
            "Provider tokens not minted: no_key, http_error, timeout, unreachable, bad_response",
            ["provider", "reason"], registry=r,
        )
        self.forward_auth_checks = Counter(
            "vtg_forward_auth_checks", "Answers of the forward auth endpoint: allowed, refused, unavailable",
            ["outcome"], registry=r,
        )
        self.queue_depth = Gauge("vtg_export_queue_depth", "Spans waiting in an exporter's queue", ["exporter"],
                                 registry=r)
        self.outbox_entries = Gauge("vtg_outbox_entries", "Entries (one per mutation that finished spans) in the "
                                    "durable or shared store's outbox, not yet acknowledged by every exporter",
                                    registry=r)
        self.outbox_bytes = Gauge("vtg_outbox_bytes", "Bytes of encoded spans held in the outbox", registry=r)
        self.loop_lag = Histogram(
            "vtg_event_loop_lag_seconds", "How late the event loop woke a task that slept "
            f"{LOOP_LAG_INTERVAL_S} s: time every request in flight waited too", registry=r, buckets=LOOP_LAG_BUCKETS,
        )
        self.outbox_oldest_age = Gauge("vtg_outbox_oldest_age_seconds", "Age of the outbox's oldest entry (0: empty)",
                                       registry=r)
        self.backlog_events = Gauge("vtg_ingest_backlog_events", "Events accepted (answered 202) and not yet "
                                    "applied: batches the memory store applies after their answer", registry=r)


async def watch_loop_lag(histogram: Histogram, interval_s: float = LOOP_LAG_INTERVAL_S) -> None:
    """Record, every ``interval_s``, how much later than asked the loop woke this task: anything that held the
    loop (a long request, a garbage collection, a thread holding the GIL) delays it by as much as it delays
    requests. Runs until cancelled."""
    loop = asyncio.get_running_loop()
    observe = histogram.observe
    while True:
        due = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        observe(max(0.0, loop.time() - due))
