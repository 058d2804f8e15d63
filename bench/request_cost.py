"""CPU per single-event request through the whole ASGI app, in-process: bare endpoint, this tree, a base revision.

    .venv/bin/python bench/request_cost.py --base <git revision> [--rounds 7] [--sessions 4]
    .venv/bin/python bench/request_cost.py --profile [--target gateway]

No socket and no uvicorn: each worker process calls its app as uvicorn would (the same scope keys and
headers the load generator sends, the body in one ``http.request`` message), so the figure is everything
above the HTTP server: Starlette's routing and middleware, the handler, the gateway's service, the
response's rendering. The HTTP server's own share (uvicorn, httptools, uvloop) is the same for every app
and is left out; ``bench/ab.py`` measures it with the rest.

Three workers, each importing its own tree (the base revision is extracted with ``git archive``, as
``ingest_ab.py`` does): the bare endpoint (``bench/bare_app.py``), the base gateway and this tree's. They
take turns round by round, so all see the same machine load; each round plays ``--sessions`` whole
sessions as the load generator does (create, one event per POST, end beacon-style) and reports CPU time
(``time.process_time_ns``) per request. Medians over rounds, and the medians of the per-round ratios.

The gateway runs as ``bench/run.py`` runs it (signing key, rate limits raised, memory store), with
``OTEL_TRACES_EXPORTER=none``: the export thread is not part of a request's cost here.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
HIGH = "1000000000"
ENV = {"OTEL_TRACES_EXPORTER": "none", "VTG_SIGNING_KEY": "bench-signing-key-0123456789abcdef0123456789",
       "VTG_EVENT_RATE_PER_SESSION": HIGH, "VTG_EVENT_RATE_PER_CLIENT": HIGH,
       "VTG_SESSION_CREATE_RATE_PER_CLIENT": HIGH, "VTG_MAX_OPEN_SESSIONS": "10000000"}


def _app(target: str) -> Any:
    if target == "bare":
        sys.path.insert(0, str(BENCH))
        from bare_app import app

        return app
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from gateway.app import create_app
    from gateway.otel_config import load_telemetry

    telemetry = load_telemetry(env=ENV)
    # As with OTLP metrics on: the voice metrics are recorded; the reader collects when asked only.
    telemetry.meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return create_app(telemetry)


def _scope(path: bytes, query: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    # What uvicorn's httptools protocol hands the app for each request.
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
            "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 40000), "scheme": "http", "method": "POST",
            "root_path": "", "path": path.decode(), "raw_path": path, "query_string": query, "headers": headers,
            "state": {}}


class Worker:
    def __init__(self, target: str, sessions: int, repeats: int) -> None:
        sys.path.insert(0, str(BENCH))
        import loadgen

        self.app = _app(target)
        self.sessions = sessions
        rng = random.Random(7)
        start = time.time() * 1000
        self.calls = [loadgen.single_bodies(loadgen.long_session(rng, repeats, start)) for _ in range(4)]
        self.create = loadgen.create_body(rng)
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 20, 20)

    async def _request(self, path: bytes, body: bytes, headers: list[tuple[bytes, bytes]],
                       query: bytes = b"") -> tuple[int, bytes]:
        sent: list[dict[str, Any]] = []
        message = {"type": "http.request", "body": body, "more_body": False}

        async def receive() -> dict[str, Any]:
            return message

        async def send(msg: dict[str, Any]) -> None:
            sent.append(msg)

        await self.app(_scope(path, query, headers), receive, send)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    async def _play(self, bodies: list[tuple[int, bytes]]) -> int:
        host = (b"host", b"127.0.0.1:8000")
        status, raw = await self._request(b"/v1/sessions", self.create, [
            host, (b"content-type", b"application/json"), (b"content-length", str(len(self.create)).encode())])
        assert status == 201, raw
        created = json.loads(raw)
        sid, token = created["session_id"].encode(), created["token"].encode()
        path = b"/v1/sessions/%s/events" % sid
        auth = (b"authorization", b"Bearer " + token)
        ctype = (b"content-type", b"application/json")
        for _, body in bodies:
            status, raw = await self._request(path, body, [host, auth, ctype,
                                                           (b"content-length", str(len(body)).encode())])
            assert status == 202 and b'"rejected":[]' in raw, raw
        end = b'{"reason":"user_disconnect"}'
        status, raw = await self._request(b"/v1/sessions/%s/end" % sid, end, [
            host, (b"content-type", b"text/plain;charset=UTF-8"), (b"content-length", str(len(end)).encode())],
            b"token=" + token)
        assert status == 200, raw
        return len(bodies) + 2

    def round(self) -> dict[str, float]:
        async def run() -> int:
            return sum([await self._play(self.calls[i % len(self.calls)]) for i in range(self.sessions)])

        loop = _loop()
        t0 = time.process_time_ns()
        n = loop.run_until_complete(run())
        return {"us_per_request": (time.process_time_ns() - t0) / n / 1000}


_LOOP: asyncio.AbstractEventLoop | None = None


def _loop() -> asyncio.AbstractEventLoop:
    global _LOOP
    if _LOOP is None:
        import uvloop

        _LOOP = uvloop.new_event_loop()
    return _LOOP


def worker_main(args: argparse.Namespace) -> None:
    os.environ.update(ENV)
    worker = Worker(args.target, args.sessions, args.repeats)
    origin = "bench/bare_app.py"
    if args.target != "bare":
        import gateway

        origin = str(Path(gateway.__file__).parent)
    print(json.dumps({"ready": origin}), flush=True)
    for line in sys.stdin:
        if line.strip() != "round":
            return
        print(json.dumps(worker.round()), flush=True)


def start_worker(target: str, tree: Path | None, args: argparse.Namespace) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VTG_", "LANGFUSE_"))}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--target", target,
           "--sessions", str(args.sessions), "--repeats", str(args.repeats)]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tree or REPO)
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline())
    print(f"worker {target}: {ready['ready']}", file=sys.stderr)
    return proc


def compare(args: argparse.Namespace) -> dict[str, Any]:
    from ingest_ab import ask, extract

    with tempfile.TemporaryDirectory() as tmp:
        base = extract(args.base, Path(tmp))
        workers = {"bare": start_worker("bare", None, args), "base": start_worker("gateway", base, args),
                   "new": start_worker("gateway", REPO, args)}
        results: dict[str, list[float]] = {name: [] for name in workers}
        try:
            for proc in workers.values():
                ask(proc, "round")  # warm-up
            for r in range(args.rounds):
                names = list(workers)
                order = names[r % 3:] + names[:r % 3]
                for name in order:
                    results[name].append(ask(workers[name], "round")["us_per_request"])
        finally:
            for proc in workers.values():
                if proc.stdin is not None:
                    proc.stdin.close()
                proc.wait(30)

    def ratio(b: str, a: str) -> float:
        return round(statistics.median(y / x for x, y in zip(results[a], results[b], strict=True)), 3)

    return {"base": args.base, "rounds": args.rounds, "sessions_per_round": args.sessions,
            "us_per_request_median": {k: round(statistics.median(v), 1) for k, v in results.items()},
            "us_per_request_min": {k: round(min(v), 1) for k, v in results.items()},
            "ratio_new_to_base": ratio("new", "base"), "ratio_base_to_bare": ratio("base", "bare"),
            "ratio_new_to_bare": ratio("new", "bare"), "per_round": results}


def profile(args: argparse.Namespace) -> None:
    from ingest_ab import profile_round

    os.environ.update(ENV)
    profile_round(Worker(args.target, args.sessions, args.repeats), args.sort, args.top)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="HEAD", help="the git revision to compare this tree against")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--sessions", type=int, default=4, help="sessions per round (900 single-event posts each)")
    p.add_argument("--repeats", type=int, default=25, help="three-turn calls chained into one session")
    p.add_argument("--target", choices=["bare", "gateway"], default="gateway")
    p.add_argument("--profile", action="store_true", help="profile one round of --target in this tree instead")
    p.add_argument("--sort", default="tottime")
    p.add_argument("--top", type=int, default=45)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    sys.path.insert(0, str(BENCH))
    if args.worker:
        worker_main(args)
    elif args.profile:
        profile(args)
    else:
        print(json.dumps(compare(args), indent=1))


if __name__ == "__main__":
    main()
