"""The load generator: one process, uvloop, raw HTTP/1.1 keep-alive connections, fixed concurrency.

Each of ``--concurrency`` virtual users owns one TCP connection to 127.0.0.1 and plays voice sessions
one after another on it: ``POST /v1/sessions``, the session's events (one per request, or 50 per
request as ``{"events": [...], "sent_at": ...}``), then the end, beacon-style (``text/plain``,
``?token=``). A session never leaves its connection, so with several uvicorn workers every session
stays on the worker that created it (sessions live in process memory).

The events are the gateway's own simulated scenario (``gateway.simulate.three_turn_session``: a tool
call, a barge-in, a goAway and resumed connection, Gemini usage per turn), chained ``--session-repeats``
times into one long call with one ``seq`` numbering. Request bodies are serialized once at startup
(ids need only be unique within a session), so the generator spends its CPU on the network, not on
building JSON. The HTTP client is a minimal asyncio protocol rather than httpx: on 2 cores the
generator must cost far less per request than the server it measures.

Results (counts and per-request latencies of what completed inside the measured window) are written
as JSON to ``--out``. Bounded in time (``--duration``) and in count (``--max-requests``).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import os
import random
import sys
import time
from collections import Counter
from typing import Any

from gateway.simulate import MODEL, gemini_usage, three_turn_session

HOST = "127.0.0.1"
SLOW_US = 20_000  # requests slower than this are listed with their time, to see whether stalls are periodic
mono_ns = time.monotonic_ns


# -- the scenario -----------------------------------------------------------------------------------


def long_session(rng: random.Random, repeats: int, start_ms: float) -> list[dict[str, Any]]:
    """``repeats`` three-turn scenarios back to back: one long call, one seq numbering, unique ids."""
    events: list[dict[str, Any]] = []
    t = start_ms
    seq = 0
    for r in range(repeats):
        script = three_turn_session(t, rng, 1.0)
        for e in script.all_events():
            seq += 1
            events.append({**e, "seq": seq, "id": f"r{r}-{e['id']}"})
        t = script.end_at + rng.uniform(500, 2000)
    return events


def open_turn_events(rng: random.Random, start_ms: float) -> list[dict[str, Any]]:
    """A few events that leave a session mid-turn: connection open, user spoke, model answering."""
    t = start_ms
    out = []
    steps: list[tuple[str, dict[str, Any]]] = [
        ("connection.open", {"connection_id": "conn-1"}),
        ("connection.setup_complete", {}),
        ("user.speech_start", {}),
        ("user.transcript", {"text": "What's the weather in Paris?", "final": True}),
        ("user.speech_end", {}),
        ("model.response_start", {}),
        ("model.usage", {"usage": gemini_usage(24, 310, 0)}),
    ]
    for seq, (kind, fields) in enumerate(steps, start=1):
        t += rng.uniform(50, 500)
        out.append({"type": kind, "id": f"o{seq}", "seq": seq, "ts": t, **fields})
    return out


def create_body(rng: random.Random) -> bytes:
    return json.dumps({
        "user_id": f"user-{rng.randrange(1000)}", "provider": "gcp.gemini", "model": MODEL,
        "agent": "weather-assistant", "tags": ["simulated", "bench"], "client": {"sdk": "voice-trace-gateway-bench"},
    }, separators=(",", ":")).encode()


def batched_bodies(events: list[dict[str, Any]], size: int) -> list[tuple[int, bytes]]:
    out = []
    for i in range(0, len(events), size):
        chunk = events[i:i + size]
        # sent_at: the client's clock when the batch left; the gateway corrects skew from it.
        body = {"events": chunk, "sent_at": chunk[-1]["ts"]}
        out.append((len(chunk), json.dumps(body, separators=(",", ":")).encode()))
    return out


def single_bodies(events: list[dict[str, Any]]) -> list[tuple[int, bytes]]:
    return [(1, json.dumps(e, separators=(",", ":")).encode()) for e in events]


# -- a minimal HTTP/1.1 keep-alive client -----------------------------------------------------------


class Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Any = None
        self.buf = bytearray()
        self.fut: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's transports are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        fut = self.fut
        if fut is None:
            return
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buf[:end]).lower()
        i = head.find(b"\r\ncontent-length:")
        length = 0
        if i >= 0:
            j = head.find(b"\r\n", i + 2)
            length = int(head[i + 17:j if j >= 0 else len(head)])
        total = end + 4 + length
        if len(buf) < total:
            return
        status = int(buf[9:12])
        body = bytes(buf[end + 4:total])
        del buf[:total]
        self.fut = None
        if not fut.done():
            fut.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        fut, self.fut = self.fut, None
        if fut is not None and not fut.done():
            fut.set_exception(ConnectionError("connection lost"))

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        if self.closed or self.transport is None:
            raise ConnectionError("connection closed")
        fut = asyncio.get_running_loop().create_future()
        self.fut = fut
        self.transport.write(data)
        return fut


def post(path: bytes, body: bytes, port: int, headers: bytes = b"", ctype: bytes = b"application/json") -> bytes:
    return (b"POST %s HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n%scontent-type: %s\r\ncontent-length: %d\r\n\r\n"
            % (path, port, headers, ctype, len(body))) + body


# -- the run ----------------------------------------------------------------------------------------


class Stats:
    def __init__(self, w0: int, w1: int) -> None:
        self.w0, self.w1 = w0, w1
        self.lat: dict[str, array.array[int]] = {k: array.array("I") for k in ("create", "events", "end")}
        self.events = 0
        self.errors: Counter[str] = Counter()
        self.sessions_done = 0
        self.late = 0
        self.paced = 0
        self.requests_total = 0
        self.first_error: str | None = None
        self.slow: list[tuple[float, float, str]] = []  # (completed at, s into the window; latency ms; kind)

    def record(self, kind: str, t0: int, t1: int) -> bool:
        """Keep what completed inside the window; True if it did."""
        if self.w0 <= t1 <= self.w1:
            us = (t1 - t0) // 1000
            self.lat[kind].append(min(us, 0xFFFFFFFF))
            if us > SLOW_US and len(self.slow) < 5000:
                self.slow.append((round((t1 - self.w0) / 1e9, 4), us / 1000, kind))
            return True
        return False

    def error(self, what: str, body: bytes = b"") -> None:
        self.errors[what] += 1
        if self.first_error is None:
            self.first_error = f"{what}: {body[:300]!r}"


async def main(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    rng = random.Random(args.seed)
    start_ms = time.time() * 1000
    port = args.port
    t_start = int(args.t0 * 1e9)
    w0 = t_start + int(args.warmup * 1e9)
    w1 = w0 + int(args.duration * 1e9)
    stats = Stats(w0, w1)
    if args.mode == "open":
        w0, w1 = t_start, t_start + int(3600e9)
        stats = Stats(w0, w1)
    # A pool of distinct sessions, serialized once.
    if args.mode == "open":
        pool = [[(7, json.dumps({"events": ev, "sent_at": ev[-1]["ts"]}, separators=(",", ":")).encode())]
                for ev in (open_turn_events(rng, start_ms) for _ in range(16))]
    else:
        scripts = [long_session(rng, args.session_repeats, start_ms) for _ in range(args.pool)]
        pool = [batched_bodies(s, args.batch) if args.mode == "batched" else single_bodies(s) for s in scripts]
    creates = [create_body(rng) for _ in range(64)]
    create_req = [post(b"/v1/sessions", b, port) for b in creates]
    events_per_post = args.batch if args.mode == "batched" else 1
    interval_ns = int(args.concurrency * events_per_post / args.rate * 1e9) if args.rate > 0 else 0
    budget = [args.max_requests]
    opened = [0]
    stop_at = w1 if args.mode != "open" else t_start + int(args.duration * 1e9)
    check = b'"rejected":[]'

    async def connect() -> Conn:
        _, proto = await loop.create_connection(Conn, HOST, port)
        return proto

    async def vu(idx: int, conn: Conn) -> None:
        vrng = random.Random(args.seed * 1000 + idx)
        next_ns = t_start + (int(vrng.uniform(0, interval_ns)) if interval_ns else 0)
        while True:
            now = mono_ns()
            if now >= stop_at or budget[0] <= 0:
                return
            if args.mode == "open":
                if opened[0] >= args.open_sessions:
                    return
                opened[0] += 1  # reserved before the await, so concurrent users never overshoot
            if conn.closed:
                stats.error("reconnect")
                conn = await connect()
            try:
                # Start a session.
                budget[0] -= 1
                t0 = mono_ns()
                status, body = await conn.request(create_req[vrng.randrange(len(create_req))])
                t1 = mono_ns()
                stats.requests_total += 1
                in_window = stats.record("create", t0, t1)
                if status != 201:
                    stats.error(f"create {status}", body)
                    if args.mode == "open":
                        opened[0] -= 1
                    await asyncio.sleep(0.01)
                    continue
                if args.mode != "open":
                    opened[0] += 1
                created = json.loads(body)
                sid = created["session_id"].encode()
                token = created["token"].encode()
                prefix_path = b"/v1/sessions/%s/events" % sid
                auth = b"authorization: Bearer %s\r\n" % token
                bodies = pool[vrng.randrange(len(pool))]
                ok = True
                for n, payload in bodies:
                    if interval_ns:
                        now = mono_ns()
                        if now < next_ns:
                            await asyncio.sleep((next_ns - now) / 1e9)
                        elif now - next_ns > 1_000_000:
                            stats.late += 1
                        stats.paced += 1
                        next_ns += interval_ns
                    if mono_ns() >= stop_at or budget[0] <= 0:
                        return
                    budget[0] -= 1
                    t0 = mono_ns()
                    status, rbody = await conn.request(post(prefix_path, payload, port, auth))
                    t1 = mono_ns()
                    stats.requests_total += 1
                    in_window = stats.record("events", t0, t1)
                    if status == 202 and check in rbody:
                        if in_window:
                            stats.events += n
                    else:
                        stats.error(f"events {status}", rbody)
                        ok = False
                        break
                if args.mode == "open" and not args.end_open:
                    continue  # leave it open: the memory measurement wants idle sessions
                if not ok or mono_ns() >= stop_at:
                    continue
                end_body = b'{"reason":"user_disconnect"}'
                budget[0] -= 1
                t0 = mono_ns()
                status, rbody = await conn.request(post(b"/v1/sessions/%s/end?token=%s" % (sid, token), end_body, port,
                                                        ctype=b"text/plain;charset=UTF-8"))
                t1 = mono_ns()
                stats.requests_total += 1
                in_window = stats.record("end", t0, t1)
                if status != 200:
                    stats.error(f"end {status}", rbody)
                elif in_window:
                    stats.sessions_done += 1
            except ConnectionError:
                stats.error("connection lost")

    conns = []
    for _ in range(args.concurrency):
        conns.append(await connect())
        if args.connect_gap_ms:
            # With several workers on one listening socket, a burst of connections tends to land on one worker;
            # spacing them lets each worker's accept loop take its share.
            await asyncio.sleep(args.connect_gap_ms / 1000)
    delay = (t_start - mono_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)
    else:
        print(f"loadgen: started {-delay:.2f} s late", file=sys.stderr)
    tasks = [asyncio.ensure_future(vu(i, c)) for i, c in enumerate(conns)]
    hard_stop = (stop_at - mono_ns()) / 1e9 + args.grace
    _, pending = await asyncio.wait(tasks, timeout=hard_stop)
    for t in pending:
        t.cancel()
    if pending:
        stats.error("hung at the end", b"")
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    cpu = os.times()
    return {
        "mode": args.mode,
        "window_s": (w1 - w0) / 1e9,
        "events": stats.events,
        "sessions_done": stats.sessions_done,
        "opened": opened[0],
        "requests_total": stats.requests_total,
        "errors": dict(stats.errors),
        "first_error": stats.first_error,
        "late": stats.late,
        "paced": stats.paced,
        "latency_us": {k: v.tolist() for k, v in stats.lat.items()},
        "cpu_s": cpu.user + cpu.system,
        "slow": stats.slow,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["single", "batched", "open"], required=True)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--t0", type=float, required=True, help="time.monotonic() at which the load starts")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of load before the measured window")
    p.add_argument("--duration", type=float, default=20.0, help="seconds in the measured window")
    p.add_argument("--grace", type=float, default=15.0, help="seconds allowed for in-flight requests at the end")
    p.add_argument("--rate", type=float, default=0.0, help="events/s for this process (0: as fast as it goes)")
    p.add_argument("--max-requests", type=int, default=10_000_000)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--connect-gap-ms", type=float, default=0.0, help="pause between opening two connections")
    p.add_argument("--session-repeats", type=int, default=25, help="scenarios chained into one session")
    p.add_argument("--pool", type=int, default=8, help="distinct pre-built sessions")
    p.add_argument("--open-sessions", type=int, default=5000, help="mode open: sessions to open and leave idle")
    p.add_argument("--end-open", action="store_true", help="mode open: end each session too (warm-up)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True)
    return p.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    try:
        import uvloop
    except ImportError:
        uvloop = None  # type: ignore[assignment]
    # uvloop comes with uvicorn[standard]; plain asyncio works too, only slower.
    result = uvloop.run(main(args)) if uvloop is not None else asyncio.run(main(args))
    with open(args.out, "w") as f:
        json.dump(result, f)
