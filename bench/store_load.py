"""CPU and latency per event with the durable (sqlite) and shared (redis) stores and their outbox, as ratios
against the memory store in the same run.

    python bench/store_load.py --duration 15 --out bench/STORE_LOAD.md

The same real gateway (`serve`, OTLP/HTTP export to rotel) and load generator as ``bench/run.py``, one worker,
pinned as there; for each load mode (one event per request, 50 per request) each store at its maximum rate,
then each store at half of the memory store's maximum, so the half-load p99s compare equal work. The stores run
interleaved within each step, so a neighbour's noise falls on all three alike.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness  # the server, load generator, collector and measurement that bench/run.py uses

STORES = ("memory", "sqlite", "redis")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is installed by scripts/setup.sh --with-test-system-packages"
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    harness.wait_port(port)
    return proc, f"redis://127.0.0.1:{port}/0"


def _store_env(store: str, workdir: Path, redis_url: str, step: str) -> dict[str, str]:
    if store == "sqlite":
        return {"VTG_SESSION_STORE": f"sqlite:///{workdir / f'sessions-{step}.db'}"}
    if store == "redis":
        return {"VTG_SESSION_STORE": redis_url}
    return {}


def _measure(store: str, env: dict[str, str], mode: str, args: argparse.Namespace, collector: Any, workdir: Path,
             rate: float = 0.0) -> dict[str, Any]:
    saved = dict(harness.GATEWAY_ENV)
    harness.GATEWAY_ENV.update(env)
    try:
        res = harness.measure_load("gateway", 1, mode, args, collector, workdir, rate)
    finally:
        harness.GATEWAY_ENV.clear()
        harness.GATEWAY_ENV.update(saved)
    res["store"] = store
    return res


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}×" if base else "n/a"


def report(results: dict[str, dict[str, dict[str, Any]]], args: argparse.Namespace, started: str) -> str:
    lines = [
        "# Stores under load: CPU and p99 per event, as ratios against the memory store",
        "",
        f"Run {started} UTC, `python bench/store_load.py --duration {args.duration:g}` "
        f"({args.concurrency} connections, batches of {args.batch}), one worker, OTLP/HTTP export to rotel; "
        f"load average before: {results['meta']['loadavg_before']}, after: {results['meta']['loadavg_after']}. "
        "sqlite and redis run with their outbox on (an exporter is configured): every finished span is committed "
        "with the session state and drained from there.",
        "",
        "| mode | store | events/s at max | server CPU µs/event | CPU ratio | events/s at half load "
        "| p99 at half load (ms) | p99 ratio | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in ("single", "batched"):
        base_max = results[mode]["memory-max"]
        base_half = results[mode]["memory-half"]
        for store in STORES:
            mx, half = results[mode][f"{store}-max"], results[mode][f"{store}-half"]
            errors = {**mx["errors"], **half["errors"]}
            lines.append(
                f"| {mode} | {store} | {mx['events_per_s']:.0f} | {mx['cpu_us_per_event']:.1f} "
                f"| {_ratio(mx['cpu_us_per_event'], base_max['cpu_us_per_event'])} | {half['events_per_s']:.0f} "
                f"| {half['p99_ms']:.2f} "
                f"| {_ratio(half['p99_ms'], base_half['p99_ms'])} | {errors or 'none'} |")
    lines += [
        "",
        "Half load is half of the memory store's maximum in that mode, for every store (the same offered work); "
        "a store whose own maximum is below that rate runs overloaded there, and its p99 is a queue's. "
        "CPU is the gateway process's own (user + system) over the measured window; redis-server's CPU is not "
        "counted in the gateway's figure.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=15, help="measured seconds per load run")
    p.add_argument("--warmup", type=float, default=3)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--gen-procs", type=int, default=1)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--session-repeats", type=int, default=25)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(harness.BENCH / "STORE_LOAD.md"))
    args = p.parse_args(argv)
    args.profile_seconds = args.duration
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    workdir = Path(tempfile.mkdtemp(prefix="vtg-store-load-"))
    results: dict[str, Any] = {"meta": {"loadavg_before": harness.loadavg()}}
    collector = harness.Collector(workdir)
    collector.start(harness.cpu_plan(1).gen)
    redis_proc, redis_url = _redis(workdir)
    try:
        for mode in ("single", "batched"):
            step: dict[str, dict[str, Any]] = {}
            for store in STORES:
                env = _store_env(store, workdir, redis_url, f"{mode}-max")
                step[f"{store}-max"] = _measure(store, env, mode, args, collector, workdir)
            rate = step["memory-max"]["events_per_s"] / 2
            for store in STORES:
                env = _store_env(store, workdir, redis_url, f"{mode}-half")
                step[f"{store}-half"] = _measure(store, env, mode, args, collector, workdir, rate)
            results[mode] = step
    finally:
        harness.stop(collector.proc)
        redis_proc.terminate()
        redis_proc.wait(10)
    results["meta"]["loadavg_after"] = harness.loadavg()
    Path(args.out).write_text(report(results, args, started))
    harness.log(f"wrote {args.out}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
