"""The application factory and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from gateway import semconv as sc
from gateway.analytics.voice_metrics import VoiceMetrics
from gateway.api import compat, routes, ui
from gateway.api import recordings as recording_routes
from gateway.api.cors import cors_middleware
from gateway.api.fast_path import GatewayApp
from gateway.api.http import JSONResponse
from gateway.delivery.drain import OutboxDrain
from gateway.delivery.export_queue import RetryingBatchProcessor
from gateway.delivery.outbox import OutboxSource
from gateway.delivery.outbox_redis import RedisOutbox
from gateway.delivery.outbox_sqlite import SqliteOutbox
from gateway.delivery.recent import RecentTraces
from gateway.errors import ConfigError, RequestError
from gateway.limits import IngestGuard
from gateway.metrics import GatewayMetrics, watch_loop_lag
from gateway.otel_config import Telemetry, load_telemetry
from gateway.providers.forward_auth import ForwardAuth
from gateway.providers.minting import TokenMinter
from gateway.recordings.langfuse_media import LangfuseTarget, target_from_env
from gateway.recordings.service import Recordings, publish_forever
from gateway.service import SessionService
from gateway.sessions.redis_store import RedisStore
from gateway.sessions.sqlite_store import SqliteStore
from gateway.sessions.store import SessionStore, open_store
from gateway.spans import SpanEmitter

log = logging.getLogger("gateway")
STATIC_DIR = Path(__file__).parent / "static"
PROBLEM_JSON = "application/problem+json"


def problem_response(exc: RequestError, request: Request) -> Response:
    return JSONResponse(exc.problem(request.url.path), status_code=exc.status, media_type=PROBLEM_JSON,
                        headers=exc.headers)


async def sweep_forever(service: SessionService, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await service.sweep()
        except Exception:
            log.exception("idle sweep failed; retrying next interval")


RECORDING_SWEEP_INTERVAL_S = 3600.0


async def sweep_recordings_forever(recordings: Recordings) -> None:
    while True:
        try:
            await recordings.sweep()
        except Exception:
            log.exception("recording retention sweep failed; retrying next interval")
        await asyncio.sleep(RECORDING_SWEEP_INTERVAL_S)


def create_app(
    telemetry: Telemetry | None = None,
    store: SessionStore | None = None,
    metrics: GatewayMetrics | None = None,
    clock: Callable[[], int] | None = None,
) -> Starlette:
    metrics = metrics or GatewayMetrics()
    telemetry = telemetry or load_telemetry(metrics=metrics)
    settings = telemetry.settings
    recent = RecentTraces(settings.recent_sessions)
    for info in telemetry.exporters:
        if isinstance(info.processor, RetryingBatchProcessor):
            metrics.queue_depth.labels(info.name).set_function(info.processor.queue_depth)
            metrics.spooled_batches.labels(info.name).set_function(info.processor.spooled_batches)
    store = store or open_store(settings.session_store, settings.outbox_max_entries, settings.outbox_max_bytes)
    drain = outbox_drain(store, telemetry, metrics)
    # The exporters' processors stay registered on the provider too, which flushes and shuts them down. With an
    # outbox they get their spans from it (the drain), not from the request.
    processors = [] if drain is not None else [info.processor for info in telemetry.exporters]
    processors.append(recent)
    sampler = ALWAYS_OFF if telemetry.disabled else telemetry.provider.sampler
    # The SDK keeps a provider's resolved limits private; they are the ones its own Tracers apply.
    emitter = SpanEmitter(sampler, telemetry.provider.resource, processors, telemetry.provider._span_limits)
    meters = telemetry.meter_provider
    voice = VoiceMetrics(meters.get_meter("voice-trace-gateway")) if meters is not None else None
    service = SessionService(settings, store, emitter, metrics,
                             clock=clock or time.time_ns,
                             voice_metrics=voice)
    recordings = Recordings(settings, service.store, metrics.registry, clock=clock,
                            langfuse=_langfuse_media(telemetry) if settings.captures("audio") else None)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Everything alive now (modules, the price tables, the pipeline) lives as long as the process: keep it out
        # of the collector's scans, and collect less often, so full collections stop pausing the event loop.
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 20, 20)
        interval = min(settings.sweep_interval_s, max(settings.session_idle_timeout_s / 4, 0.05))
        if drain is not None:
            drain.start()
        sweeper = asyncio.create_task(sweep_forever(service, interval))
        recording_sweeper = asyncio.create_task(sweep_recordings_forever(recordings)) if recordings.enabled else None
        publisher = asyncio.create_task(publish_forever(recordings)) if recordings.publisher else None
        loop_lag = asyncio.create_task(watch_loop_lag(metrics.loop_lag))
        app.state.ready, app.state.draining = True, False
        log.info("voice trace gateway ready: %s", telemetry.describe()["exporters"])
        if settings.provider_tokens:
            log.info("minting provider tokens: %s", app.state.minter.describe())  # whether keys are set, never them
        try:
            yield
        finally:
            # Under `python -m gateway serve` a stop signal has set this already, a drain period before now
            # (gateway/__main__.py), while the listener still took probes. Under plain `uvicorn
            # gateway.app:create_app --factory` there is no drain period: uvicorn has closed its sockets by now.
            app.state.draining = True
            # One deadline for the whole shutdown: set when the exit began under `serve` (the wait for in-flight
            # requests came out of it), else from now.
            deadline = getattr(app.state, "shutdown_deadline", None) or time.monotonic() + settings.shutdown_grace_s
            for task in (sweeper, recording_sweeper, publisher, loop_lag):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if service.store.durable:
                # Sessions outlive this process: a restart, or another replica, carries them on.
                log.info("shutdown: open sessions stay in the %s store; flushing exporters", settings.session_store)
            else:
                ended = await service.end_all(sc.END_GATEWAY_SHUTDOWN)
                log.info("shutdown: ended %d open sessions; flushing exporters", ended)
            # Flushing blocks on network I/O; keep it off the event loop.
            await asyncio.to_thread(_flush_and_close, telemetry, deadline, drain)
            await service.store.close()

    async def request_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestError)
        metrics.events_rejected.labels(exc.reason).inc()
        return problem_response(exc, request)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        body = {"type": "about:blank", "title": exc.detail, "status": exc.status_code, "detail": exc.detail}
        return JSONResponse(body, status_code=exc.status_code, media_type=PROBLEM_JSON, headers=exc.headers)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        metrics.events_rejected.labels("internal_error").inc()
        body = {"type": "about:blank", "title": "Internal error", "status": 500,
                "detail": "the gateway failed to handle this request; it has been logged"}
        return JSONResponse(body, status_code=500, media_type=PROBLEM_JSON)

    # Credentials only on the compatibility routes, whose frontend posts with its cookies; v1 never takes them.
    middleware = cors_middleware(settings)
    # Starlette, with a direct way to the events route (gateway/api/fast_path.py).
    app = GatewayApp(
        routes=[*routes.routes, *recording_routes.routes, *compat.routes, *ui.routes,
                Mount("/static", app=StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")],
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={RequestError: request_error, HTTPException: http_error, Exception: unexpected},
    )
    pricer = service.machine.options.pricer
    if pricer is not None:
        metrics.unpriced_turns.set_function(lambda: sum(pricer.unknown_models.values()))
    metrics.backlog_events.set_function(lambda: service.backlog.pending_events)
    app.state.service = service
    app.state.recordings = recordings
    app.state.guard = IngestGuard(settings)
    app.state.minter = TokenMinter(settings, metrics)
    app.state.forward_auth = None if not settings.forward_auth_url else ForwardAuth(
        settings.forward_auth_url, settings.forward_auth_user_header, settings.forward_auth_timeout_s, metrics)
    app.state.telemetry = telemetry
    app.state.recent = recent
    app.state.ready = False
    app.state.draining = False
    app.state.shutdown_deadline = None
    return app


def outbox_drain(store: SessionStore, telemetry: Telemetry, metrics: GatewayMetrics) -> OutboxDrain | None:
    """The drain of a durable or shared store's outbox, which is then on; None for the memory store, or with
    no exporter to deliver to."""
    if not telemetry.exporters or telemetry.disabled:
        return None
    settings = telemetry.settings
    source: OutboxSource
    if isinstance(store, SqliteStore):
        source = SqliteOutbox(store)
    elif isinstance(store, RedisStore):
        source = RedisOutbox(store, settings.outbox_claim_idle_s)
    else:
        return None
    delays = [info.processor.delay_s for info in telemetry.exporters
              if isinstance(info.processor, RetryingBatchProcessor)]
    drain = OutboxDrain(source, telemetry.exporters, metrics, poll_s=min(delays, default=1.0),
                        retry_max_elapsed_s=settings.export_retry_max_elapsed_s,
                        retry_max_s=settings.export_retry_max_backoff_s,
                        keep_every_s=max(0.1, settings.outbox_claim_idle_s / 3))
    if not drain.consumers:
        source.close()
        return None
    store.outbox = True
    return drain


def _langfuse_media(telemetry: Telemetry) -> LangfuseTarget | None:
    """Where recordings go as Langfuse media: the Langfuse exporter's host and keys, when it is configured."""
    if not any(info.kind == "langfuse" for info in telemetry.exporters):
        return None
    try:
        return target_from_env()
    except ConfigError as exc:
        log.warning("recordings are not published to Langfuse as media: %s (its keys must come from the env)", exc)
        return None


def _flush_and_close(telemetry: Telemetry, deadline: float, drain: OutboxDrain | None = None) -> None:
    """Flush every exporter at once, all by ``deadline`` (time.monotonic), then the metrics. What an exporter
    could not deliver by then is spooled (spool on) or counted in ``vtg_spans_dropped`` and logged; with an
    outbox it stays there, unacknowledged, for the next start or another replica."""

    def left_ms() -> int:
        return max(0, int((deadline - time.monotonic()) * 1000))

    queues = [info.processor for info in telemetry.exporters if isinstance(info.processor, RetryingBatchProcessor)]
    if drain is not None:
        drain.stopping.set()  # no new batches; shutting the exporters down below ends the one in flight
    try:
        for queue in queues:
            queue.stop_by(deadline)
        # In parallel: one backend that is down must not use up another's share of the deadline.
        threads = [threading.Thread(target=q.shutdown, args=(left_ms(),), name=f"shutdown-{q.name}") for q in queues]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if drain is not None:
            drain.stop(deadline)
            drain.close()
    finally:
        telemetry.provider.shutdown()  # the other processors; ours are done and return at once
        if telemetry.meter_provider is not None:
            # Its shutdown collects and exports once more, so the sessions just ended are counted.
            telemetry.meter_provider.shutdown(timeout_millis=left_ms())
