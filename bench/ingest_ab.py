"""In-process A/B of the ingest path: this tree's gateway against another revision's, in one run.

    .venv/bin/python bench/ingest_ab.py --base <git revision> [--mode batched|single|memory] [--rounds 7]

Two worker processes, each importing ``gateway`` from its own tree (the base revision is extracted with
``git archive`` into a temporary directory and put first on ``PYTHONPATH``), take turns: one round of
A, one of B, and so on, so both see the same machine load; the figure is the ratio of their medians.
Each worker is the gateway's own composition (``create_app``: memory store, span emitter with the
recent-traces buffer, Prometheus metrics, and the OTel voice metrics through an in-memory reader), no
HTTP, no exporter (``OTEL_TRACES_EXPORTER=none``):

- ``batched`` / ``single``: CPU time (``time.process_time_ns``) per event of whole sessions as the load
  generator plays them (``bench/loadgen.long_session``: the simulated three-turn call chained
  ``--repeats`` times), in posts of 50 events with ``sent_at``, or one event per call; start and end
  included.
- ``memory``: bytes per open idle session, as ``bench/run.py`` measures it (sessions opened mid-turn
  with ``bench/loadgen.open_turn_events``, after a warm-up of the same sessions ended): traced
  allocations (``tracemalloc``) and the RSS delta, each divided by the number of sessions; the objects the
  garbage collector tracks per session, and the pause of a full collection with those sessions open
  (the best of five).
- ``profile``: one round of the chosen mode under ``cProfile`` in this tree only; prints the top functions.

Each worker applies the garbage-collector settings of the gateway's lifespan (``gc.freeze()`` after startup,
``gc.set_threshold(10_000, 20, 20)``; ``--gc-threshold`` overrides them in the new tree's worker only) and
reports, per round, the collections and their pauses (``gc.callbacks``), as ``bench/gc_trace.py`` logs them.

Not a benchmark of record (bench/run.py is): a quick, noise-tolerant guide for one change at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import math
import os
import pstats
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
KEY = "bench-signing-key-0123456789abcdef"
CREATE: dict[str, Any] = {"user_id": "user-1", "provider": "gcp.gemini", "agent": "weather-assistant",
          "tags": ["simulated", "bench"], "client": {"sdk": "voice-trace-gateway-bench"}}


# -- the worker: runs inside one tree --------------------------------------------------------------


def _service() -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from gateway.app import create_app
    from gateway.otel_config import load_telemetry

    telemetry = load_telemetry(env={"OTEL_TRACES_EXPORTER": "none", "VTG_SIGNING_KEY": KEY,
                                    "VTG_MAX_OPEN_SESSIONS": "10000000", "VTG_MAX_EVENTS_PER_SESSION": "100000"})
    # As with OTLP metrics on: the voice metrics are recorded; the reader collects when asked only.
    telemetry.meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return create_app(telemetry).state.service


def _create(model: str) -> Any:
    from gateway import events as ev

    return ev.parse_model(ev.SessionCreate, {**CREATE, "model": model})


class GcPauses:
    """Collections and their pauses since the last ``take()``, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self.young = 0
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._started)
            self.young += info["generation"] == 0

    def take(self) -> dict[str, float]:
        pauses, self.pauses, young, self.young = self.pauses, [], self.young, 0
        return {"gc_collections": len(pauses), "gc_gen0_collections": young,
                "gc_pause_total_ms": sum(pauses) * 1000, "gc_pause_max_ms": max(pauses, default=0.0) * 1000}


class Worker:
    def __init__(self, mode: str, sessions: int, repeats: int, threshold: tuple[int, ...] = (10_000, 20, 20)) -> None:
        import loadgen

        from gateway.simulate import MODEL

        self.mode, self.sessions, self.model = mode, sessions, MODEL
        self.service = _service()
        self.rng = random.Random(7)
        start = time.time() * 1000
        # Bodies as the server reads them: bytes, decoded per request (gateway.service.body_events), so every
        # string is a fresh object.
        calls = [loadgen.long_session(self.rng, repeats, start) for _ in range(4)]
        if mode == "single":
            self.calls = [[json.dumps(e).encode() for e in events] for events in calls]
        else:
            self.calls = [[json.dumps({"events": events[i:i + 50], "sent_at": events[i:i + 50][-1]["ts"]}).encode()
                           for i in range(0, len(events), 50)] for events in calls]
        self.counts = [len(events) for events in calls]
        self.open_bodies = [json.dumps({"events": events, "sent_at": events[-1]["ts"]}).encode()
                            for events in (loadgen.open_turn_events(self.rng, start) for _ in range(16))]
        # As the gateway's lifespan does once it started (gateway/app.py).
        gc.collect()
        gc.freeze()
        gc.set_threshold(*threshold)
        self.gc = GcPauses()

    async def _play(self, bodies: list[bytes]) -> None:
        from gateway.service import body_events

        service = self.service
        created = await service.start(_create(self.model), None)
        sid = created["session_id"]
        for body in bodies:
            events, sent_at, prefix = body_events(body)
            await service.ingest(sid, events, sent_at, prefix)
        await service.end(sid, "user_disconnect")

    def round(self) -> dict[str, float]:
        async def run() -> int:
            n = 0
            for i in range(self.sessions):
                await self._play(self.calls[i % len(self.calls)])
                n += self.counts[i % len(self.calls)]
            return n

        self.gc.take()
        t0 = time.process_time_ns()
        n = asyncio.run(run())
        return {"ns_per_event": (time.process_time_ns() - t0) / n, **self.gc.take()}

    async def _open(self, n: int, end: bool) -> None:
        from gateway.service import body_events

        service = self.service
        for i in range(n):
            created = await service.start(_create(self.model), None)
            events, sent_at, prefix = body_events(self.open_bodies[i % len(self.open_bodies)])
            await service.ingest(created["session_id"], events, sent_at, prefix)
            if end:
                await service.end(created["session_id"], "user_disconnect")

    def memory(self) -> dict[str, float]:
        asyncio.run(self._open(500, end=True))
        gc.collect()
        rss0 = _rss()
        tracked0 = len(gc.get_objects())
        asyncio.run(self._open(self.sessions, end=False))
        gc.collect()
        rss = (_rss() - rss0) / self.sessions
        tracked = (len(gc.get_objects()) - tracked0) / self.sessions
        # What the open sessions cost a full collection (the pause that stops the event loop the longest).
        full = []
        for _ in range(5):
            t0 = time.perf_counter()
            gc.collect()
            full.append(time.perf_counter() - t0)
        # Then as many again, traced (tracemalloc's own bookkeeping would swell the RSS figure).
        tracemalloc.start()
        traced0 = tracemalloc.get_traced_memory()[0]
        asyncio.run(self._open(self.sessions, end=False))
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - traced0
        tracemalloc.stop()
        return {"traced_bytes_per_session": traced / self.sessions, "rss_bytes_per_session": rss,
                "gc_tracked_objects_per_session": tracked, "full_collection_ms": min(full) * 1000}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker_main(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(BENCH))
    threshold = tuple(int(x) for x in args.gc_threshold.split(",")) if args.gc_threshold else (10_000, 20, 20)
    worker = Worker(args.mode, args.sessions, args.repeats, threshold)
    import gateway

    print(json.dumps({"ready": str(Path(gateway.__file__).parent)}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "round":
            result = worker.memory() if args.mode == "memory" else worker.round()
        elif command == "warm":
            result = worker.round() if args.mode != "memory" else {}
        else:
            return
        print(json.dumps(result), flush=True)


# -- the driver ------------------------------------------------------------------------------------


def extract(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", "--format=tar", rev, "gateway"], cwd=REPO, check=True,
                             capture_output=True).stdout
    tar = into / "base.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as t:
        t.extractall(into, filter="data")
    return into


def start_worker(tree: Path, args: argparse.Namespace) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--mode", args.mode,
           "--sessions", str(args.sessions), "--repeats", str(args.repeats)]
    if args.gc_threshold and tree == REPO:
        cmd += ["--gc-threshold", args.gc_threshold]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline())
    print(f"worker {tree.name or tree}: gateway from {ready['ready']}", file=sys.stderr)
    return proc


def ask(proc: subprocess.Popen[str], command: str) -> dict[str, float]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    result: dict[str, float] = json.loads(proc.stdout.readline())
    return result


def compare(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        base = extract(args.base, Path(tmp))
        # Memory wants a fresh process per measurement: one round each.
        rounds = 1 if args.mode == "memory" else args.rounds
        workers = {"base": start_worker(base, args), "new": start_worker(REPO, args)}
        results: dict[str, list[dict[str, float]]] = {"base": [], "new": []}
        try:
            for proc in workers.values():
                ask(proc, "warm")
            for r in range(rounds):
                order = list(workers) if r % 2 == 0 else list(reversed(workers))
                for name in order:
                    results[name].append(ask(workers[name], "round"))
        finally:
            for proc in workers.values():
                if proc.stdin is not None:
                    proc.stdin.close()
                proc.wait(30)
    summary: dict[str, Any] = {"base": args.base, "mode": args.mode, "rounds": rounds}
    for key in results["base"][0]:
        a = [r[key] for r in results["base"]]
        b = [r[key] for r in results["new"]]
        # Each pair of rounds ran back to back: the median of their ratios resists load that comes and goes.
        pairs = statistics.median(y / x if x else math.nan for x, y in zip(a, b, strict=True))
        summary[key] = {"base": round(statistics.median(a), 1), "new": round(statistics.median(b), 1),
                        "base_min": round(min(a), 1), "new_min": round(min(b), 1), "ratio": round(pairs, 3),
                        "ratio_of_minimums": round(min(b) / min(a), 3) if min(a) else math.nan}
    return summary


def profile_round(worker: Any, sort: str, top: int) -> None:
    """One warm-up round of ``worker``, then one under cProfile; prints the top functions."""
    worker.round()
    prof = cProfile.Profile()
    prof.enable()
    worker.round()
    prof.disable()
    pstats.Stats(prof).sort_stats(sort).print_stats(top)


def profile(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(BENCH))
    profile_round(Worker(args.mode, args.sessions, args.repeats), args.sort, args.top)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="HEAD", help="the git revision to compare this tree against")
    p.add_argument("--mode", choices=["batched", "single", "memory"], default="batched")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--sessions", type=int, default=0, help="sessions per round (default: 8, memory: 5000)")
    p.add_argument("--repeats", type=int, default=25, help="three-turn calls chained into one session")
    p.add_argument("--profile", action="store_true", help="profile one round of this tree instead")
    p.add_argument("--gc-threshold", default="", help="gc.set_threshold in the new tree's worker, e.g. 700,10,10")
    p.add_argument("--sort", default="tottime")
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.sessions = args.sessions or (5000 if args.mode == "memory" else 8)
    if args.worker:
        worker_main(args)
    elif args.profile:
        profile(args)
    else:
        print(json.dumps(compare(args), indent=1))


if __name__ == "__main__":
    main()
