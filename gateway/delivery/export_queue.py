"""One exporter's queue: bounded, batched, and patient with a backend that is away.

The stock batch processor hands a batch to the exporter once; the stock OTLP
exporter retries for its own timeout (about 10 s) and the batch is gone, so a
short collector outage loses spans. Here a failed batch stays at the head of
the queue and is retried with exponential backoff and jitter until
``retry_max_elapsed_s`` (default 600 s) has passed, while new spans queue up
behind it to a fixed bound. Everything dropped (queue full, retries exhausted,
a failure the backend calls permanent) is counted, never silent.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from gateway.delivery.spool import Spool
from gateway.metrics import GatewayMetrics

log = logging.getLogger("gateway.delivery.export")

# HTTP statuses OTLP calls transient; any other 4xx/5xx will not get better by sending the same bytes again.
RETRYABLE_HTTP = frozenset({429, 502, 503, 504})


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
    ) -> None:
        self.exporter = exporter
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
        self._queue: deque[ReadableSpan] = deque()
        self._in_flight: list[ReadableSpan] = []
        self._cond = threading.Condition()
        self._flush_requested = 0
        self._flushed = 0
        self._shutdown = False
        self._closed = False
        # The one deadline of the whole gateway shutdown (``stop_by``), on this processor's clock.
        self._stop_by: float | None = None
        # A batch whose retries a shutdown cut short: counted or spooled by ``shutdown``, never silently lost.
        self._unsent: list[ReadableSpan] = []
        self._export_lock = threading.Lock()
        self._worker = threading.Thread(target=self._run, name=f"export-{name}", daemon=True)
        self._worker.start()

    # -- SpanProcessor ------------------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        with self._cond:
            if self._shutdown or len(self._queue) >= self.max_queue_size:
                self._metrics.spans_dropped.labels(self.name).inc()
                return
            self._queue.append(span)
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
            if self._spool is not None and self._spool.put(chunk):
                kept += len(chunk)
        if kept:
            log.warning("exporter %s: %d spans spooled to disk at shutdown", self.name, kept)
        if len(left) - kept:
            log.warning("exporter %s: %d spans could not be delivered before shutdown; counted as dropped",
                        self.name, len(left) - kept)
            self._metrics.spans_dropped.labels(self.name).inc(len(left) - kept)

    # -- worker -------------------------------------------------------------------------------------

    def _take(self) -> tuple[list[ReadableSpan], int]:
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

    def _deliver_spooling(self, batch: list[ReadableSpan]) -> None:
        """With a spool: a batch the backend does not take goes to disk at once, and the disk is replayed
        oldest first; while anything waits there, new batches queue behind it on disk, keeping order."""
        assert self._spool is not None
        if batch and (self._spooled() or not self._export_once(batch)):
            self._to_spool(batch)
        while (item := self._spool.oldest()) is not None:
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

    def _export_once(self, batch: list[ReadableSpan]) -> bool:
        with self._export_lock:
            result = self.exporter.export(batch)
        if result == SpanExportResult.SUCCESS:
            return True
        if permanent_failure(self.exporter):
            log.error("exporter %s: backend refused %d spans for good; dropped", self.name, len(batch))
            self._metrics.spans_dropped.labels(self.name).inc(len(batch))
        return False

    def _to_spool(self, batch: list[ReadableSpan]) -> None:
        assert self._spool is not None
        if permanent_failure(self.exporter):
            return  # already counted as dropped
        if not self._spool.put(batch):
            log.error("exporter %s: spool full (%d bytes); %d spans dropped", self.name, self._spool.bytes, len(batch))
            self._metrics.spans_dropped.labels(self.name).inc(len(batch))

    def _deliver(self, batch: list[ReadableSpan]) -> None:
        started = self._clock()
        attempt = 0
        while True:
            with self._export_lock:
                result = self.exporter.export(batch)
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
