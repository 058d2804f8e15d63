"""Command line: ``voice-trace-gateway serve | check-config | simulate``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import signal
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING

from gateway.errors import ConfigError

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

log = logging.getLogger("gateway")


class _RedactTokens(logging.Filter):
    """Access-log lines carry the URL, and sendBeacon puts the ingest token in it: never write it down."""

    _token = re.compile(r"(token=)[^&\s]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._token.sub(r"\1[redacted]", a) if isinstance(a, str) else a for a in record.args)
        return True


def access_log_written(log_level: str) -> bool:
    """Whether uvicorn's access log lines (INFO) pass ``log_level``. When they do not, the access log is off:
    uvicorn would otherwise still format each line's arguments (client address, quoted path) on every request,
    only for the logger to drop the line."""
    level: int = logging.getLevelNamesMapping()[log_level.upper()]
    return level <= logging.INFO


def _draining_server(config: uvicorn.Config, app: Starlette, drain_s: float, grace_s: float) -> uvicorn.Server:
    """uvicorn's server with a drain period between the stop signal and its shutdown.

    uvicorn closes its listening sockets before the lifespan shutdown runs, so a probe never sees a flag set
    there. Here the first SIGTERM only marks the app draining (``/readyz`` answers 503) and the
    gateway keeps serving; after ``drain_s`` uvicorn's own exit runs as if the signal had come just then
    (sockets closed, in-flight requests finished, lifespan shutdown, the signal re-raised). A second signal
    during the drain ends it at once. SIGINT, ``drain_s`` 0, or a signal before startup completed: uvicorn as is.

    When the exit begins, one deadline ``grace_s`` ahead is set on the app: the wait for in-flight requests, the
    exporters' flush and the last metrics export all end by it (gateway/app.py).
    """
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def __init__(self) -> None:
            super().__init__(config)
            self.drain_signal: int | None = None
            self.drain_until: float | None = None

        def _exit(self, sig: int, frame: FrameType | None) -> None:
            if getattr(app.state, "shutdown_deadline", None) is None:
                app.state.shutdown_deadline = time.monotonic() + grace_s
            super().handle_exit(sig, frame)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # A signal handler: set flags only; the log line waits for the next tick.
            # Ctrl-C is a person at a terminal who wants it stopped; orchestrators send SIGTERM.
            if (drain_s <= 0 or sig == signal.SIGINT or not self.started or self.should_exit
                    or self.drain_signal is not None):
                self._exit(sig, frame)
                return
            self.drain_signal = sig
            app.state.draining = True

        async def on_tick(self, counter: int) -> bool:
            if self.drain_signal is not None and not self.should_exit:
                now = time.monotonic()
                if self.drain_until is None:
                    self.drain_until = now + drain_s
                    log.info("%s: draining for %g s (/readyz answers 503) before shutting down; "
                             "signal again to stop now", signal.Signals(self.drain_signal).name, drain_s)
                elif now >= self.drain_until:
                    log.info("drain period over; shutting down")
                    self._exit(self.drain_signal, None)
            return await super().on_tick(counter)

    return DrainingServer()


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.metrics import GatewayMetrics
    from gateway.otel_config import load_telemetry

    metrics = GatewayMetrics()
    telemetry = load_telemetry(args.config, metrics=metrics)
    app = create_app(telemetry, metrics=metrics)
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level=args.log_level, lifespan="on",
        timeout_graceful_shutdown=int(telemetry.settings.shutdown_grace_s) or None,
        proxy_headers=False, server_header=False, access_log=access_log_written(args.log_level),
    )
    # Building the server configures uvicorn's loggers, so the filter goes on after it.
    server = _draining_server(config, app, telemetry.settings.drain_s, telemetry.settings.shutdown_grace_s)
    logging.getLogger("uvicorn.access").addFilter(_RedactTokens())
    server.run()
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from gateway.otel_config import load_telemetry

    telemetry = load_telemetry(args.config)
    try:
        print(json.dumps(telemetry.describe(), indent=2, default=str))
    finally:
        telemetry.provider.shutdown()
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from gateway.simulate import iter_lines, simulate

    started = time.perf_counter()
    report = asyncio.run(simulate(args.url, args.sessions, args.concurrency, progress=not args.quiet,
                                  seed=args.seed, scale=args.time_scale))
    for line in iter_lines(report, time.perf_counter() - started):
        print(line)
    return 1 if report.failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voice-trace-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--config", help="OTel declarative config file (default: $OTEL_CONFIG_FILE)")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.set_defaults(run=_serve)
    check = sub.add_parser("check-config", help="print the resolved pipeline, or fail naming the bad key")
    check.add_argument("--config", help="OTel declarative config file (default: $OTEL_CONFIG_FILE)")
    check.set_defaults(run=_check_config)
    sim = sub.add_parser("simulate", help="drive synthetic voice sessions against a running gateway")
    sim.add_argument("--url", default="http://127.0.0.1:8080")
    sim.add_argument("--sessions", type=int, default=10)
    sim.add_argument("--concurrency", type=int, default=4)
    sim.add_argument("--seed", type=int)
    sim.add_argument("--time-scale", type=float, default=0.05,
                     help="scenario time per real second (1 = real time; 0.05 plays a 20 s call in 1 s)")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.set_defaults(run=_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # simulate's requests are summed up, not logged one by one
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
