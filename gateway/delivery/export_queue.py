"""One exporter's queue: bounded, batched, and patient with a backend that is away.

The stock batch processor hands a batch to the exporter once; the stock OTLP
exporter retries for its own timeout (about 10 s) and the batch is gone, so a
short collector outage loses spans. Here a failed batch stays at the head of
the queue and is retried with exponential backoff and jitter until
``retry_max_elapsed_s`` (default 600 s) has passed, while new spans queue up
behind it to a fixed bound. Everything dropped (queue full, retries exhausted,
a failure the backend calls permanent) is counted, never silent.

A queue in front of an exporter that posts OTLP bytes (``encoded=True``: the
OTLP/HTTP one) holds spans as their encoded bytes, as the span emitter hands
them over (``on_encoded``); a batch is those bytes joined under one resource
and scope, the very request the stock exporter would post. Any other queue
holds SDK spans (``on_end``) for its exporter.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol, TypeAlias

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from gateway.delivery.otlp_encode import OtlpEncoder, SpanFrame, span_field
from gateway.delivery.otlp_records import EncodedSpans
from gateway.delivery.spool import Spool
from gateway.metrics import GatewayMetrics

log = logging.getLogger("gateway.delivery.export")

# HTTP statuses OTLP calls transient; any other 4xx/5xx will not get better by sending the same bytes again.
RETRYABLE_HTTP = frozenset({429, 502, 503, 504})


# An encoded queue's span: its frame (resource and scope) and its ``ScopeSpans.spans`` field.
EncodedSpan: TypeAlias = tuple[SpanFrame, bytes]
Item: TypeAlias = ReadableSpan | EncodedSpan


class EncodedExporter(Protocol):
    def export_encoded(self, data: bytes, count: int) -> SpanExportResult: ...


def request_of(batch: Sequence[EncodedSpan]) -> bytes:
    """One OTLP request for encoded spans: under one resource and scope when they share them (always, from one
    emitter), as the stock encoder groups them."""
    if not batch:
        return b""
    frame = batch[0][0]
    if all(f is frame for f, _ in batch):
        return frame.request([s for _, s in batch])
    groups: dict[int, tuple[SpanFrame, list[bytes]]] = {}
    for f, span in batch:
        groups.setdefault(id(f), (f, []))[1].append(span)
    return b"".join(f.request(spans) for f, spans in groups.values())


def permanent_failure(exporter: SpanExporter) -> bool:
    """Whether the exporter's last failure was a response OTLP marks as not retryable.

    Connection errors and timeouts have no status and are always worth retrying."""
    status = getattr(exporter, "last_status", None)
    return isinstance(status, int) and status >= 400 and status not in RETRYABLE_HTTP


def asked_wait_s(exporter: SpanExporter) -> float:
    """How long the backend asked to be left alone (Retry-After) on the exporter's last failure, or 0."""
    wait = getattr(exporter, "last_retry_after_s", None)
    return float(wait) if isinstance(wait, int | float) and wait > 0 else 0.0


class RetryingBatchProcessor(SpanProcessor):
    def __init__(
        self,
        exporter: SpanExporter,
        name: str,
        metrics: GatewayMetrics,
        max_queue_size: int | None = None,
        max_export_batch_size: int | None = None,
        schedule_delay_millis: float | None = None,
        export_timeout_millis: float | None = None,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 30.0,
        retry_max_elapsed_s: float = 600.0,
        spool: Spool | None = None,
        clock: Callable[[], float] = time.monotonic,
        encoded: bool = False,
    ) -> None:
        self.exporter = exporter
        # Spans held as OTLP bytes, for an exporter that posts them as they are (``export_encoded``).
        self.encoded = encoded
        self._encoder = OtlpEncoder() if encoded else None
        self.name = name
        self._metrics = metrics
        self.max_queue_size = max_queue_size or 50_000
        self.max_batch = max(1, min(max_export_batch_size or 512, self.max_queue_size))
        self.delay_s = (schedule_delay_millis if schedule_delay_millis is not None else 1000) / 1000
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.retry_max_elapsed_s = retry_max_elapsed_s
        self._clock = clock
        self._spool = spool
        self._spool_attempt = 0
        self._queue: deque[Item] = deque()
        self._in_flight: list[Item] = []
        self._cond = threading.Condition()
        self._flush_requested = 0
        self._flushed = 0
        self._shutdown = False
        self._closed = False
        # The one deadline of the whole gateway shutdown (``stop_by``), on this processor's clock.
        self._stop_by: float | None = None
        # A batch whose retries a shutdown cut short: counted or spooled by ``shutdown``, never silently lost.
        self._unsent: list[Item] = []
        self._export_lock = threading.Lock()
        self._worker = threading.Thread(target=self._run, name=f"export-{name}", daemon=True)
        self._worker.start()

    # -- SpanProcessor ------------------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        item: Item = span
        if self._encoder is not None:  # an SDK span given to an encoded queue (not the emitter's way)
            item = (self._encoder.frame(span.resource, span.instrumentation_scope),
                    span_field(self._encoder.span(span)))
        self._add([item])

    @property
    def takes_encoded(self) -> bool:
        """Whether the span emitter should hand this queue encoded spans (``on_encoded``) rather than SDK ones."""
        return self.encoded

    def on_encoded(self, spans: EncodedSpans) -> None:
        frame = spans.frame
        self._add([(frame, span) for _, span in spans.spans])

    def _add(self, items: Sequence[Item]) -> None:
        with self._cond:
            room = 0 if self._shutdown else max(0, self.max_queue_size - len(self._queue))
            if room < len(items):
                self._metrics.spans_dropped.labels(self.name).inc(len(items) - room)
                items = items[:room]
            self._queue.extend(items)
            if len(self._queue) >= self.max_batch:
                self._cond.notify_all()

    def queue_depth(self) -> int:
        return len(self._queue) + len(self._in_flight)

    @property
    def spool(self) -> Spool | None:
        return self._spool

    @property
    def export_lock(self) -> threading.Lock:
        """Held around each export call: the outbox drain shares the exporter with this queue's spool replay."""
        return self._export_lock

    def spooled_batches(self) -> int:
        return len(self._spool) if self._spool is not None else 0

    _spooled = spooled_batches

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export what is queued now; False if the backend did not take it all in time."""
        deadline = self._clock() + timeout_millis / 1000
        if self._stop_by is not None:
            deadline = min(deadline, self._stop_by)
        with self._cond:
            self._flush_requested += 1
            ticket = self._flush_requested
            self._cond.notify_all()
            while self._flushed < ticket:
                left = deadline - self._clock()
                if left <= 0 or not self._worker.is_alive():
                    return False
                self._cond.wait(min(left, 0.1))
        return self.queue_depth() == 0 and not self._spooled()

    def stop_by(self, deadline: float) -> None:
        """Bound every later flush and shutdown wait by ``deadline`` (this processor's clock): the gateway's
        shutdown has one deadline that all its waits share."""
        self._stop_by = deadline

    def shutdown(self, timeout_millis: int = 10000) -> None:
        """Flush until the deadline, then stop; every span the backend did not take by then is written to the
        spool, or counted as dropped (``vtg_spans_dropped``) and logged. A second call does nothing."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
        deadline = self._clock() + timeout_millis / 1000
        if self._stop_by is not None:
            deadline = min(deadline, self._stop_by)
        flushed = self.force_flush(max(0, int((deadline - self._clock()) * 1000)))
        with self._cond:
            self._shutdown = True
            left = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        # The exporter's shutdown cuts its own retries short, so a batch being sent returns now as failed.
        self.exporter.shutdown()
        self._worker.join(timeout=max(1.0, deadline - self._clock()))
        with self._cond:
            left = [*self._unsent, *left]
            self._unsent = []
            if self._worker.is_alive():  # still inside an export call: the process ends before it can succeed
                left = [*self._in_flight, *left]
        if flushed and not left:
            return
        kept = 0
        for start in range(0, len(left) if self._spool is not None else 0, self.max_batch):
            chunk = left[start:start + self.max_batch]
            if self._put_spool(chunk):
                kept += len(chunk)
        if kept:
            log.warning("exporter %s: %d spans spooled to disk at shutdown", self.name, kept)
        if len(left) - kept:
            log.warning("exporter %s: %d spans could not be delivered before shutdown; counted as dropped",
                        self.name, len(left) - kept)
            self._metrics.spans_dropped.labels(self.name).inc(len(left) - kept)

    # -- worker -------------------------------------------------------------------------------------

    def _take(self) -> tuple[list[Item], int]:
        """Wait for a full batch, the schedule delay, a flush or shutdown; return a batch and the flush ticket
        it serves (0 when no flush is waiting)."""
        with self._cond:
            deadline = self._clock() + self.delay_s
            while not self._shutdown:
                flush = self._flush_requested > self._flushed
                if len(self._queue) >= self.max_batch or flush:
                    break
                left = deadline - self._clock()
                if left <= 0:
                    break
                self._cond.wait(left)
            ticket = self._flush_requested
            count = min(len(self._queue), self.max_batch)
            batch = [self._queue.popleft() for _ in range(count)]
            self._in_flight = batch
            return batch, ticket

    def _done_flush(self, ticket: int) -> None:
        with self._cond:
            if not self._queue and not self._spooled() and ticket > self._flushed:
                self._flushed = ticket
                self._cond.notify_all()

    def _run(self) -> None:
        while True:
            batch, ticket = self._take()
            if self._spool is not None:
                self._deliver_spooling(batch)
            elif batch:
                self._deliver(batch)
            with self._cond:
                self._in_flight = []
                if self._shutdown:
                    self._flushed = self._flush_requested
                    self._cond.notify_all()
                    return
            self._done_flush(ticket)

    def _wait(self, seconds: float) -> bool:
        """Sleep unless a flush or shutdown comes first; True when shutting down."""
        with self._cond:
            ticket = self._flush_requested
            end = self._clock() + seconds
            while not self._shutdown and self._flush_requested == ticket and self._clock() < end:
                self._cond.wait(end - self._clock())
            return self._shutdown

    def _deliver_spooling(self, batch: list[Item]) -> None:
        """With a spool: a batch the backend does not take goes to disk at once, and the disk is replayed
        oldest first; while anything waits there, new batches queue behind it on disk, keeping order."""
        assert self._spool is not None
        if batch and (self._spooled() or not self._export_once(batch)):
            self._to_spool(batch)
        while (item := self._spool.oldest_encoded() if self.encoded else self._spool.oldest()) is not None:
            path, spans = item
            if self._export_once(spans):
                self._spool.remove(path)
                self._spool_attempt = 0
                continue
            if permanent_failure(self.exporter):
                self._spool.remove(path)
                continue
            backoff = min(self.retry_max_s, self.retry_initial_s * 2**self._spool_attempt) * random.uniform(0.5, 1)
            backoff = max(backoff, asked_wait_s(self.exporter))
            self._spool_attempt += 1
            self._metrics.export_retries.labels(self.name).inc()
            log.warning("exporter %s: backend away; %d batches spooled, next try in %.1f s",
                        self.name, len(self._spool), backoff)
            self._wait(backoff)
            return  # back to the loop: what queued meanwhile is spooled behind, then the replay resumes

    def _send(self, batch: Sequence[Item] | tuple[bytes, int]) -> SpanExportResult:
        """Export a batch: SDK spans, encoded spans, or an encoded request and its span count (from the spool)."""
        with self._export_lock:
            if not self.encoded:
                return self.exporter.export(batch)  # type: ignore[arg-type]  # SDK spans in an SDK queue
            exporter: EncodedExporter = self.exporter  # type: ignore[assignment]  # encoded: it takes bytes
            if isinstance(batch, tuple):
                return exporter.export_encoded(*batch)
            return exporter.export_encoded(request_of(batch), len(batch))  # type: ignore[arg-type]

    def _export_once(self, batch: Sequence[Item] | tuple[bytes, int]) -> bool:
        result = self._send(batch)
        if result == SpanExportResult.SUCCESS:
            return True
        if permanent_failure(self.exporter):
            count = batch[1] if isinstance(batch, tuple) else len(batch)
            log.error("exporter %s: backend refused %d spans for good; dropped", self.name, count)
            self._metrics.spans_dropped.labels(self.name).inc(count)
        return False

    def _put_spool(self, batch: list[Item]) -> bool:
        assert self._spool is not None
        if self.encoded:
            return self._spool.put_encoded(request_of(batch))  # type: ignore[arg-type]  # encoded spans
        return self._spool.put(batch)  # type: ignore[arg-type]  # SDK spans

    def _to_spool(self, batch: list[Item]) -> None:
        assert self._spool is not None
        if permanent_failure(self.exporter):
            return  # already counted as dropped
        if not self._put_spool(batch):
            log.error("exporter %s: spool full (%d bytes); %d spans dropped", self.name, self._spool.bytes, len(batch))
            self._metrics.spans_dropped.labels(self.name).inc(len(batch))

    def _deliver(self, batch: list[Item]) -> None:
        started = self._clock()
        attempt = 0
        while True:
            result = self._send(batch)
            if result == SpanExportResult.SUCCESS:
                return
            if permanent_failure(self.exporter):
                log.error("exporter %s: backend refused %d spans for good; dropped", self.name, len(batch))
                self._metrics.spans_dropped.labels(self.name).inc(len(batch))
                return
            elapsed = self._clock() - started
            if elapsed >= self.retry_max_elapsed_s:
                log.error("exporter %s: gave up on %d spans after %.0f s of retries", self.name, len(batch), elapsed)
                self._metrics.spans_dropped.labels(self.name).inc(len(batch))
                return
            backoff = min(self.retry_max_s, self.retry_initial_s * 2**attempt) * random.uniform(0.5, 1.0)
            backoff = max(backoff, asked_wait_s(self.exporter))
            backoff = min(backoff, max(0.0, self.retry_max_elapsed_s - elapsed))
            attempt += 1
            self._metrics.export_retries.labels(self.name).inc()
            log.warning("exporter %s: export failed; retry %d in %.1f s (%d spans waiting)",
                        self.name, attempt, backoff, self.queue_depth())
            # A flush or shutdown cuts the wait short: it wants one more try now, not later. A shutdown takes no
            # more tries: the batch goes back to ``shutdown``, which spools or counts it.
            if self._wait(backoff):
                with self._cond:
                    self._unsent = batch
                return
