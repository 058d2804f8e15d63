"""Delivers the outbox of a durable or shared store: one thread per exporter, each its own consumer.

A batch is acknowledged only once its exporter's backend took it, or the
exporter's disk spool holds it (the export queue then replays the spool), or
it is given up and counted: refused for good by the backend, or retried past
``export_retry_max_elapsed_s``. So a backend that is down holds back only its
own consumer, and a process that dies mid-batch leaves the batch to be read
again (by itself after a restart, by another replica after the claim timeout).

A maintenance thread deletes what every exporter acknowledged and publishes
the outbox's depth, size and oldest entry's age as metrics.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace.export import SpanExportResult

from gateway.delivery.export import ExporterInfo, InstrumentedExporter
from gateway.delivery.export_queue import RetryingBatchProcessor, asked_wait_s, permanent_failure
from gateway.delivery.outbox import Entry, OutboxSource
from gateway.metrics import GatewayMetrics

log = logging.getLogger("gateway.delivery.drain")


class _Consumer:
    def __init__(self, drain: OutboxDrain, name: str, exporter: InstrumentedExporter,
                 queue: RetryingBatchProcessor | None) -> None:
        self.drain = drain
        self.name = name
        self.exporter = exporter
        self.queue = queue
        self.max_spans = queue.max_batch if queue is not None else 512
        self.lock = queue.export_lock if queue is not None else threading.Lock()
        self.thread = threading.Thread(target=self.run, name=f"outbox-{name}", daemon=True)

    def run(self) -> None:
        drain = self.drain
        while not drain.stopping.is_set():
            try:
                batch = drain.source.read(self.name, self.max_spans, drain.poll_s)
            except Exception:
                log.exception("outbox: reading for exporter %s failed; retrying", self.name)
                drain.stopping.wait(1.0)
                continue
            if not batch:
                continue
            if self.deliver(batch):
                try:
                    drain.source.ack(self.name, batch)
                except Exception:
                    # Not acknowledged: delivered again later (at least once), never lost.
                    log.exception("outbox: acknowledging %d entries for exporter %s failed", len(batch), self.name)

    def deliver(self, batch: Sequence[Entry]) -> bool:
        """True once the batch is settled (delivered, spooled, or given up and counted); False on shutdown."""
        data = b"".join(e.data for e in batch)  # concatenated requests are one request
        count = sum(e.spans for e in batch)
        spool = self.queue.spool if self.queue is not None else None
        drain = self.drain
        started = time.monotonic()
        attempt = 0
        while not drain.stopping.is_set():
            if spool is not None and len(spool):
                # Batches already wait on disk: this one joins them rather than overtaking (the queue replays).
                return self._spool(data, count)
            with self.lock:
                result = self.exporter.export_encoded(data, count)
            if result == SpanExportResult.SUCCESS:
                return True
            if permanent_failure(self.exporter):
                log.error("exporter %s: backend refused %d spans for good; dropped", self.name, count)
                drain.metrics.spans_dropped.labels(self.name).inc(count)
                return True
            if spool is not None:
                return self._spool(data, count)
            elapsed = time.monotonic() - started
            if elapsed >= drain.retry_max_elapsed_s:
                log.error("exporter %s: gave up on %d spans after %.0f s of retries", self.name, count, elapsed)
                drain.metrics.spans_dropped.labels(self.name).inc(count)
                return True
            backoff = min(drain.retry_max_s, drain.retry_initial_s * 2**attempt) * random.uniform(0.5, 1.0)
            backoff = max(backoff, asked_wait_s(self.exporter))
            attempt += 1
            drain.metrics.export_retries.labels(self.name).inc()
            log.warning("exporter %s: export failed; retry %d in %.1f s (%d spans held in the outbox)",
                        self.name, attempt, backoff, count)
            # Renewed through the wait, so no other replica takes these over as abandoned meanwhile.
            end = time.monotonic() + backoff
            while not drain.stopping.is_set():
                self._keep(batch)
                left = end - time.monotonic()
                if left <= 0:
                    break
                drain.stopping.wait(min(left, drain.keep_every_s))
        return False

    def _keep(self, batch: Sequence[Entry]) -> None:
        try:
            self.drain.source.keep(self.name, batch)
        except Exception:
            log.exception("outbox: could not renew the claim on %d entries", len(batch))

    def _spool(self, data: bytes, count: int) -> bool:
        assert self.queue is not None and self.queue.spool is not None
        if not self.queue.spool.put_encoded(data):
            log.error("exporter %s: spool full; %d spans dropped", self.name, count)
            self.drain.metrics.spans_dropped.labels(self.name).inc(count)
        return True


class OutboxDrain:
    def __init__(self, source: OutboxSource, exporters: Sequence[ExporterInfo], metrics: GatewayMetrics,
                 poll_s: float = 1.0, retry_max_elapsed_s: float = 600.0, retry_max_s: float = 30.0,
                 retry_initial_s: float = 1.0, trim_every_s: float = 1.0, keep_every_s: float = 10.0) -> None:
        self.source = source
        self.metrics = metrics
        self.poll_s = poll_s
        self.retry_max_elapsed_s = retry_max_elapsed_s
        self.retry_max_s = retry_max_s
        self.retry_initial_s = retry_initial_s
        self.trim_every_s = trim_every_s
        self.keep_every_s = keep_every_s
        self.stopping = threading.Event()
        self.consumers: list[_Consumer] = []
        for info in exporters:
            processor = info.processor
            exporter = getattr(processor, "exporter", None) or getattr(processor, "span_exporter", None)
            if not isinstance(exporter, InstrumentedExporter):
                log.warning("exporter %s cannot read the outbox; it gets no spans", info.name)
                continue
            queue = processor if isinstance(processor, RetryingBatchProcessor) else None
            self.consumers.append(_Consumer(self, info.name, exporter, queue))
        self._maintenance = threading.Thread(target=self._maintain, name="outbox-trim", daemon=True)

    def start(self) -> None:
        self.source.register([c.name for c in self.consumers])
        self.trim()
        for consumer in self.consumers:
            consumer.thread.start()
        self._maintenance.start()

    def trim(self) -> None:
        stats = self.source.trim()
        self.metrics.outbox_entries.set(stats.entries)
        self.metrics.outbox_bytes.set(stats.bytes)
        self.metrics.outbox_oldest_age.set(stats.oldest_age_s)

    def _maintain(self) -> None:
        while not self.stopping.wait(self.trim_every_s):
            try:
                self.trim()
            except Exception:
                log.exception("outbox: trimming failed; retrying")

    def stop(self, deadline: float) -> None:
        """Stop reading; a batch being delivered finishes or is left, unacknowledged, for the next reader."""
        self.stopping.set()
        for thread in [c.thread for c in self.consumers] + [self._maintenance]:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        try:
            self.trim()
        except Exception:
            log.exception("outbox: trimming at shutdown failed")

    def close(self) -> None:
        self.source.close()
