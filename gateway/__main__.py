"""Command line: ``voice-trace-gateway serve | check-config | simulate``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
import time

from gateway.errors import ConfigError


class _RedactTokens(logging.Filter):
    """Access-log lines carry the URL, and sendBeacon puts the ingest token in it: never write it down."""

    _token = re.compile(r"(token=)[^&\s]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._token.sub(r"\1[redacted]", a) if isinstance(a, str) else a for a in record.args)
        return True


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
        proxy_headers=False, server_header=False,
    )
    server = uvicorn.Server(config)  # configures uvicorn's loggers, so the filter goes on after it
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
