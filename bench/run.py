"""The gateway's load benchmark, against a bare Starlette endpoint in the same run.

    python bench/run.py --duration 20 --out bench/RESULTS.md

One run, on 127.0.0.1 only, every server under uvicorn with the same settings (uvloop + httptools,
access log off, no proxy headers, no server header, lifespan on, same worker count):

1. the bare endpoint (``bench/bare_app.py``) and the real gateway (``voice-trace-gateway serve``,
   OTLP/HTTP export to a real collector, rotel, whose blackhole exporter discards everything), each
   under the same load from ``bench/loadgen.py`` in separate processes: many concurrent voice
   sessions from the gateway's simulated scenario, one event per request or 50 per request;
2. each at its maximum rate (fixed concurrency), then at a fixed rate of half that maximum;
3. memory per open idle session (N sessions left mid-turn, RSS delta / N);
4. 1 worker (server and load generator pinned to different cores) and 2 workers (unpinned);
5. the export path's CPU per span, in-process (``bench/export_cpu.py``);
6. a py-spy profile of the gateway under each load mode.

It writes ``--out`` (Markdown: machine, versions, command, tables with ratios, goals and verdicts,
profile) and ``--json`` (every raw figure). Nothing here changes the gateway.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = 1024
PROFILE_RATE = 100
# Leaf frames that mean "waiting", should one slip through py-spy's --gil filter.
IDLE_LEAVES = ("Condition.wait (", "Event.wait (", "Thread._wait_for_tstate_lock (", "select (", "poll (")
SIGNING_KEY = "bench-signing-key-0123456789abcdef0123456789"
HIGH = "1000000000"

# Uvicorn settings shared by every server (the gateway's `serve` sets the same in code: proxy headers and
# server header off, lifespan on; `--log-level warning` keeps its access log silent).
UVICORN_FLAGS = ["--host", "127.0.0.1", "--log-level", "warning", "--no-access-log", "--no-proxy-headers",
                 "--no-server-header", "--lifespan", "on"]

GATEWAY_ENV = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "VTG_SIGNING_KEY": SIGNING_KEY,
    "VTG_EVENT_RATE_PER_SESSION": HIGH,
    "VTG_EVENT_RATE_PER_CLIENT": HIGH,
    "VTG_SESSION_CREATE_RATE_PER_CLIENT": HIGH,
    "VTG_MAX_OPEN_SESSIONS": "10000000",
    "VTG_DRAIN_S": "0",  # each run stops its own server; no load balancer to drain
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- processes ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_ready(port: int, path: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    wait_port(port, timeout)
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if http_get(f"http://127.0.0.1:{port}{path}")[0] == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"127.0.0.1:{port}{path} never answered 200")


def _pin(cpus: set[int] | None) -> Any:
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def proc_stat(pid: int) -> tuple[int, float] | None:
    """(ppid, utime+stime seconds) of a process (all its threads), or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree(root: int) -> list[int]:
    """The process and all its descendants."""
    parents: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st is not None:
                parents[st[0]].append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def cpu_of(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        st = proc_stat(pid)
        if st is not None:
            out[pid] = st[1]
    return out


def status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_bytes(pids: list[int], key: str = "VmRSS") -> int:
    return sum(status_kb(p, key) for p in pids) * PAGE_KB


def connections(pids: list[int], port: int) -> list[int]:
    """Established connections to ``port`` held by each process (which worker took which share)."""
    inodes: set[str] = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(name).read_text().splitlines()[1:]:
                cols = line.split()
                if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "01":
                    inodes.add(cols[9])
    out = []
    for pid in pids:
        n = 0
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        n += 1
        out.append(n)
    return out


def machine_busy() -> float:
    """Seconds of CPU the whole machine spent busy (all cores) since boot."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(x) for x in parts[:8]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLK_TCK


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 20) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        proc.wait(5)


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VTG_", "LANGFUSE_"))}
    env.update(extra)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def metrics(port: int) -> dict[str, float]:
    """The gateway's Prometheus counters, summed over labels."""
    _, text = http_get(f"http://127.0.0.1:{port}/metrics")
    out: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        with contextlib.suppress(ValueError):
            out[name] += float(value)
    return dict(out)


# -- the pieces of one run ------------------------------------------------------------------------------


@dataclass
class Cpus:
    server: set[int] | None
    gen: set[int] | None

    def describe(self) -> str:
        if not self.server:
            return "not pinned (all processes share all cores)"
        return (f"server on CPU {sorted(self.server)}, "
                f"load generator + collector + py-spy on CPU {sorted(self.gen or [])}")


def cpu_plan(workers: int) -> Cpus:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) > workers:
        return Cpus(set(cores[:workers]), set(cores[workers:]))
    return Cpus(None, None)


class Collector:
    """rotel, receiving OTLP/HTTP and discarding everything (blackhole exporter)."""

    def __init__(self, workdir: Path) -> None:
        import rotel

        self.binary = Path(rotel.__file__).parent / "rotel-agent"
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, cpus: set[int] | None) -> None:
        out = open(self.workdir / "rotel.out", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [str(self.binary), "start", "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
             "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}", "--pid-file", str(self.workdir / "rotel.pid"),
             "--log-file", str(self.workdir / "rotel-agent.log"), "--exporter", "blackhole"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "ROTEL_ENVIRONMENT": "dev"},
            preexec_fn=_pin(cpus),
        )
        wait_port(self.http_port)

    def repin(self, cpus: set[int] | None) -> None:
        if self.proc is None:
            return
        target = cpus or set(os.sched_getaffinity(0))
        for tid in os.listdir(f"/proc/{self.proc.pid}/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), target)

    def version(self) -> str:
        try:
            return metadata.version("rotel")
        except metadata.PackageNotFoundError:
            return "?"


def start_server(target: str, workers: int, collector: Collector, cpus: Cpus, workdir: Path,
                 tag: str, gc_log: Path | None = None) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    if target == "bare":
        cmd = [PY, "-m", "uvicorn", "--app-dir", str(BENCH), "bare_app:app", "--port", str(port),
               "--workers", str(workers), *UVICORN_FLAGS]
        env = clean_env({})
    else:
        env = clean_env({**GATEWAY_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.http_port}"})
        if workers == 1:
            serve = ["serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
            if gc_log is None:
                cmd = [PY, "-m", "gateway", *serve]
            else:  # diagnostic runs: the same `serve`, with the garbage collector's pauses logged
                cmd = [PY, str(BENCH / "gc_trace.py"), *serve]
                env["VTG_BENCH_GC_LOG"] = str(gc_log)
        else:
            # `serve` runs one process; several workers need uvicorn's supervisor and the app factory.
            cmd = [PY, "-m", "uvicorn", "gateway.app:create_app", "--factory", "--port", str(port),
                   "--workers", str(workers), *UVICORN_FLAGS]
    out = open(workdir / f"server-{tag}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                            preexec_fn=_pin(cpus.server), start_new_session=True)
    try:
        wait_ready(port, "/readyz" if target == "gateway" else "/healthz")
        if workers > 1:
            deadline = time.monotonic() + 30
            while len(tree(proc.pid)) < workers + 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)  # let every worker finish its startup
    except Exception:
        stop(proc)
        raise
    return proc, port


def run_gens(port: int, mode: str, args: argparse.Namespace, cpus: Cpus, workdir: Path, tag: str, *,
             rate: float = 0.0, t0_delay: float = 2.0, extra: list[str] | None = None,
             duration: float | None = None, warmup: float | None = None) -> tuple[list[subprocess.Popen[bytes]],
                                                                                 list[Path], float]:
    procs, outs = [], []
    if args.concurrency * 0.01 + 1.0 > t0_delay:
        t0_delay = args.concurrency * 0.01 + 1.0
    t0 = time.monotonic() + t0_delay
    n = args.gen_procs
    for i in range(n):
        out = workdir / f"gen-{tag}-{i}.json"
        conc = args.concurrency // n + (1 if i < args.concurrency % n else 0)
        cmd = [PY, str(BENCH / "loadgen.py"), "--port", str(port), "--mode", mode, "--concurrency", str(conc),
               "--t0", f"{t0:.6f}", "--warmup", str(args.warmup if warmup is None else warmup),
               "--duration", str(args.duration if duration is None else duration),
               "--rate", str(rate / n), "--batch", str(args.batch), "--session-repeats", str(args.session_repeats),
               "--seed", str(args.seed + i), "--out", str(out), *(extra or [])]
        if cpus.server is None or len(cpus.server) > 1:
            cmd += ["--connect-gap-ms", "10"]  # several workers: let each accept its share of the connections
        err = open(workdir / f"gen-{tag}-{i}.err", "ab")  # noqa: SIM115
        procs.append(subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT, cwd=REPO, env=clean_env({}),
                                      preexec_fn=_pin(cpus.gen)))
        outs.append(out)
    return procs, outs, t0


def sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return float(sorted_values[k])


@dataclass
class Snapshot:
    t: float
    server: dict[int, float]
    gens: float
    rotel: float
    busy: float
    metrics: dict[str, float] = field(default_factory=dict)


def snapshot(server_pid: int, gen_pids: list[int], collector: Collector, port: int, scrape: bool) -> Snapshot:
    t = time.monotonic()
    s = Snapshot(t, cpu_of(tree(server_pid)), sum(cpu_of(gen_pids).values()),
                 sum(cpu_of([collector.proc.pid]).values()) if collector.proc else 0.0, machine_busy())
    if scrape:
        s.metrics = metrics(port)
    return s


def measure_load(target: str, workers: int, mode: str, args: argparse.Namespace, collector: Collector,
                 workdir: Path, rate: float = 0.0, profile: Path | None = None) -> dict[str, Any]:
    cpus = cpu_plan(workers)
    collector.repin(cpus.gen)
    tag = f"{target}-{workers}w-{mode}-{'rate' if rate else ('profile' if profile else 'max')}"
    what = f"{target}, {workers} worker(s), {mode}, " + (f"fixed rate {rate:.0f} events/s" if rate else "max load")
    log(f"{what}{' (profiling)' if profile else ''}: starting")
    gc_log = workdir / f"gc-{tag}.log" if profile is not None and target == "gateway" and workers == 1 else None
    proc, port = start_server(target, workers, collector, cpus, workdir, tag, gc_log)
    scrape = target == "gateway" and workers == 1
    gens: list[subprocess.Popen[bytes]] = []
    spy: subprocess.Popen[bytes] | None = None
    try:
        duration = args.profile_seconds if profile else args.duration
        gens, outs, t0 = run_gens(port, mode, args, cpus, workdir, tag, rate=rate, duration=duration)
        gen_pids = [g.pid for g in gens]
        w0 = t0 + args.warmup
        w1 = w0 + duration
        sleep_until(w0)
        if profile is not None:
            spy = subprocess.Popen(
                [py_spy(), "record", "--pid", str(proc.pid), "--rate", str(PROFILE_RATE), "--gil", "--native",
                 "--duration", str(int(duration)), "--format", "speedscope", "--output", str(profile)],
                stdout=open(workdir / f"py-spy-{tag}.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
                preexec_fn=_pin(cpus.gen))
        a = snapshot(proc.pid, gen_pids, collector, port, scrape)
        conns = [c for c in connections(tree(proc.pid), port) if c]
        sleep_until(w1)
        b = snapshot(proc.pid, gen_pids, collector, port, scrape)
        server_tree = tree(proc.pid)
        peak_rss = rss_bytes(server_tree, "VmHWM")
        end_rss = rss_bytes(server_tree)
        for g in gens:
            g.wait(duration + args.warmup + 60)
        results = [json.loads(o.read_text()) for o in outs]
        drain: dict[str, Any] = {}
        if scrape:
            drain = wait_drained(port, b.metrics)
        if spy is not None:
            spy.wait(60)
    finally:
        for g in gens:
            if g.poll() is None:
                g.kill()
        stop(proc)
    res = summarize(target, workers, mode, rate, results, a, b, peak_rss, end_rss, drain)
    res["cpus"] = cpus.describe()
    res["connections_per_process"] = conns
    if gc_log is not None and gc_log.exists():
        res["gc"] = gc_pauses(gc_log, a.t, b.t)
    log(f"{what}: {res['events_per_s']:.0f} events/s, {res['requests_per_s']:.0f} req/s, "
        f"p99 {res['p99_ms']:.2f} ms, {res['cpu_us_per_event']:.1f} µs CPU/event, "
        f"server {res['server_cores']:.2f} cores, generator {res['gen_cores']:.2f} cores, "
        f"others {res['foreign_cores']:.2f} cores, errors {res['errors'] or 'none'}")
    return res


def gc_pauses(path: Path, t0: float, t1: float) -> dict[str, Any]:
    """Collections by generation inside the window: count, total and longest pause."""
    by_gen: dict[int, list[float]] = defaultdict(list)
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4 and t0 <= float(parts[0]) <= t1:
            by_gen[int(parts[2])].append(float(parts[1]) * 1000)
    window = t1 - t0
    return {"window_s": window, "generations": {
        g: {"count": len(v), "total_ms": sum(v), "max_ms": max(v), "mean_ms": sum(v) / len(v),
            "share_of_time": sum(v) / 1000 / window, "over_20ms": sum(1 for x in v if x > 20)}
        for g, v in sorted(by_gen.items())}}


def wait_drained(port: int, at_end: dict[str, float], timeout: float = 60) -> dict[str, Any]:
    """After the load: wait until every emitted span left the export queue (exported or dropped)."""
    t = time.monotonic()
    deadline = t + timeout
    m = at_end
    while time.monotonic() < deadline:
        m = metrics(port)
        done = m.get("vtg_spans_exported_total", 0) + m.get("vtg_spans_dropped_total", 0)
        if m.get("vtg_export_queue_depth", 0) == 0 and done >= m.get("vtg_spans_emitted_total", 0):
            break
        time.sleep(0.2)
    return {"drain_s": time.monotonic() - t, "final": m,
            "queue_depth_at_end": at_end.get("vtg_export_queue_depth", 0.0)}


def summarize(target: str, workers: int, mode: str, rate: float, results: list[dict[str, Any]], a: Snapshot,
              b: Snapshot, peak_rss: int, end_rss: int, drain: dict[str, Any]) -> dict[str, Any]:
    wall = b.t - a.t
    window = results[0]["window_s"]
    events = sum(r["events"] for r in results)
    lat = sorted(x for r in results for x in r["latency_us"]["events"])
    all_lat = sorted(x for r in results for k in ("create", "events", "end") for x in r["latency_us"][k])
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r["errors"])
    server_cpu = sum(b.server.get(p, 0) - a.server.get(p, 0) for p in b.server)
    per_worker = sorted((b.server.get(p, 0) - a.server.get(p, 0) for p in b.server), reverse=True)
    gen_cpu = b.gens - a.gens
    rotel_cpu = b.rotel - a.rotel
    busy = b.busy - a.busy
    res: dict[str, Any] = {
        "target": target, "workers": workers, "mode": mode, "rate_target": rate, "window_s": window,
        "events": events, "events_per_s": events / window,
        "requests": len(all_lat), "requests_per_s": len(all_lat) / window,
        "event_posts": len(lat),
        "p50_ms": percentile(lat, 50) / 1000, "p95_ms": percentile(lat, 95) / 1000,
        "p99_ms": percentile(lat, 99) / 1000, "max_ms": (lat[-1] / 1000) if lat else float("nan"),
        "p99_all_ms": percentile(all_lat, 99) / 1000,
        "server_cpu_s": server_cpu, "cpu_us_per_event": server_cpu / events * 1e6 if events else float("nan"),
        "cpu_us_per_request": server_cpu / len(all_lat) * 1e6 if all_lat else float("nan"),
        "events_per_cpu_s": events / server_cpu if server_cpu else float("nan"),
        "server_cores": server_cpu / wall, "per_process_cores": [round(c / wall, 3) for c in per_worker],
        "gen_cores": gen_cpu / wall, "rotel_cores": rotel_cpu / wall,
        "foreign_cores": max(0.0, (busy - server_cpu - gen_cpu - rotel_cpu) / wall),
        "peak_rss_mb": peak_rss / 2**20, "end_rss_mb": end_rss / 2**20,
        "errors": dict(errors), "first_error": next((r["first_error"] for r in results if r["first_error"]), None),
        "sessions_done": sum(r["sessions_done"] for r in results),
        "late": sum(r["late"] for r in results), "paced": sum(r["paced"] for r in results),
    }
    if a.metrics and b.metrics:
        d = {k: b.metrics.get(k, 0) - a.metrics.get(k, 0) for k in b.metrics}
        res["server_events_accepted"] = d.get("vtg_events_accepted_total", 0)
        res["spans_emitted_per_s"] = d.get("vtg_spans_emitted_total", 0) / wall
        res["spans_exported_per_s"] = d.get("vtg_spans_exported_total", 0) / wall
        res["spans_dropped_window"] = d.get("vtg_spans_dropped_total", 0)
        res["spans_failed_window"] = d.get("vtg_spans_failed_total", 0)
        res["spans_per_event"] = (d.get("vtg_spans_emitted_total", 0) / d["vtg_events_accepted_total"]
                                  if d.get("vtg_events_accepted_total") else float("nan"))
        final = drain.get("final", {})
        res["queue_depth_at_end"] = drain.get("queue_depth_at_end", 0.0)
        res["drain_s"] = drain.get("drain_s", 0.0)
        res["spans_emitted_total"] = final.get("vtg_spans_emitted_total", 0)
        res["spans_exported_total"] = final.get("vtg_spans_exported_total", 0)
        res["spans_dropped_total"] = final.get("vtg_spans_dropped_total", 0)
        res["spans_failed_total"] = final.get("vtg_spans_failed_total", 0)
        res["rejected_total"] = final.get("vtg_events_rejected_total", 0)
    return res


def measure_memory(target: str, args: argparse.Namespace, collector: Collector, workdir: Path) -> dict[str, Any]:
    cpus = cpu_plan(1)
    collector.repin(cpus.gen)
    n = args.open_sessions
    log(f"{target}: memory per open session ({n} idle sessions, each mid-turn)")
    proc, port = start_server(target, 1, collector, cpus, workdir, f"{target}-memory")
    try:
        # Warm up: the same requests, sessions ended, so every code path and cache is in place first.
        gens, outs, _ = run_gens(port, "open", args, cpus, workdir, f"{target}-memwarm", t0_delay=1.0, warmup=0,
                                 duration=120, extra=["--open-sessions", "500", "--end-open"])
        for g in gens:
            g.wait(180)
        time.sleep(2.0)
        pids = tree(proc.pid)
        before = rss_bytes(pids)
        gens, outs, _ = run_gens(port, "open", args, cpus, workdir, f"{target}-mem", t0_delay=1.0, warmup=0,
                                 duration=300, extra=["--open-sessions", str(n)])
        for g in gens:
            g.wait(400)
        opened = sum(json.loads(o.read_text())["opened"] for o in outs)
        errors = Counter[str]()
        for o in outs:
            errors.update(json.loads(o.read_text())["errors"])
        time.sleep(2.0)
        after = rss_bytes(tree(proc.pid))
        active = metrics(port).get("vtg_sessions_active") if target == "gateway" else None
    finally:
        stop(proc)
    res = {"target": target, "sessions": opened, "rss_before_mb": before / 2**20, "rss_after_mb": after / 2**20,
           "bytes_per_session": (after - before) / opened if opened else float("nan"), "errors": dict(errors),
           "sessions_active": active}
    log(f"{target}: {res['bytes_per_session'] / 1024:.2f} KiB per open session "
        f"({opened} sessions, RSS {res['rss_before_mb']:.1f} → {res['rss_after_mb']:.1f} MiB)")
    return res


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    if Path(found).exists():
        return found
    log("py-spy is missing: installing it into this environment (pip install py-spy)")
    subprocess.run([PY, "-m", "pip", "install", "--quiet", "py-spy"], check=True)
    found = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    if not Path(found).exists():
        raise RuntimeError("py-spy could not be installed")
    return found


def export_cpu(args: argparse.Namespace, collector: Collector) -> dict[str, Any]:
    log("export CPU per span (in-process)")
    cpus = cpu_plan(1)
    out = subprocess.run([PY, str(BENCH / "export_cpu.py"), "--sessions", str(args.export_sessions),
                          "--otlp-endpoint", f"http://127.0.0.1:{collector.http_port}"],
                         capture_output=True, text=True, cwd=REPO, env=clean_env({}), preexec_fn=_pin(cpus.server),
                         check=True)
    res: dict[str, Any] = json.loads(out.stdout)
    log(f"encode {res['encode_us_per_span']:.1f} µs/span, serialize {res['serialize_us_per_span']:.2f} µs/span")
    return res


# -- profile ----------------------------------------------------------------------------------------------


def short_file(path: str) -> str:
    for marker in ("site-packages/", str(REPO) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path.rsplit("/", 2)[-1] if "/" in path else path


# Frames every sample of the event loop has: the process's entry point.
ROOT_FRAMES = ("<module> (", "main (gateway/__main__.py)", "_serve (gateway/__main__.py)")
# Where a sample's time goes: the first category whose marker is in the stack (markers are "function (file"
# fragments of the gateway's current code; a sample matching none lands in the last two rows).
CATEGORIES = [
    ("cyclic garbage collector (`gc_collect_main`, wherever it triggers)", "gc_collect_main ("),
    ("export thread: OTLP encoding + HTTP post to the collector", "@thread:export"),
    ("ingest token check (PyJWT decode + HS256 verify)", "TokenSigner.verify ("),
    ("SDK span building (finished records → SDK spans, span processors)", "SpanEmitter.emit ("),
    ("OTel metrics instruments (gateway/voice_metrics.py)", "(gateway/voice_metrics.py)"),
    ("Prometheus counters (gateway/metrics.py, prometheus_client)", "(prometheus_client/"),
    ("event validation (pydantic)", "SessionService._validate ("),
    ("session state machine, dedup, clock (service._apply, machine)", "SessionService._apply ("),
    ("rate limits, client address", "IngestGuard."),
    ("request body read + JSON parse (routes.read_json)", "read_json ("),
    ("response: JSON encoding", "JSONResponse.render ("),
    ("rest of the gateway's request handling (routes, service glue)", "@gateway"),
    ("HTTP server and event loop (uvicorn, httptools, uvloop, starlette)", "@thread:MainThread"),
    ("other threads", ""),
]


# What each budget row suggests to whoever optimizes the gateway (printed for the biggest rows).
ADVICE = {
    CATEGORIES[0][0]: "full collections traverse every tracked object (SDK spans in the export queue and the "
    "recent-traces buffer, open sessions' state); `gc.freeze()` after startup, higher `gc.set_threshold` values, "
    "and fewer container objects per span and per event would cut both this and the pauses behind p99",
    CATEGORIES[1][0]: "the stock `encode_spans` walks every SDK span, attribute and event through generic Python "
    "encoders (`_encode_key_value`, `_encode_value`, `_encode_span`, `_encode_resource_spans`); a direct encoder "
    "writing OTLP bytes from the gateway's own finished-span records (byte-compatible, checked by decoding both) is "
    "the issue's export target. The encoding of a batch runs on the export thread under the GIL; it hands the GIL "
    "to the event loop after each millisecond of encoding (a short sleep), instead of at the 5 ms switch interval",
    CATEGORIES[2][0]: "every request decodes and verifies its JWT (base64, JSON, HMAC, claims); "
    "PyJWT's HMAC `prepare_key` even tries `json.loads` on the key string each time (a JWK check that raises "
    "and catches `JSONDecodeError`). A small LRU of verified tokens (token → session id, expiry) would make the "
    "repeat requests of a session nearly free; single-event posts pay this per event",
    CATEGORIES[3][0]: "each finished record becomes an SDK span and passes every span processor's `on_end` (export "
    "queue, recent traces); the self-time table shows which SDK calls dominate (`Tracer.start_span` and "
    "`_clean_attribute_value` if spans still go through the Tracer API)",
    CATEGORIES[4][0]: "OTel metric instruments hash their attribute sets on every measurement (`_hash_attributes`); "
    "fewer measurements per event (aggregate per request), or cached attribute sets, would cut it",
    CATEGORIES[5][0]: "Prometheus label lookups per event; aggregate per request and increment once",
    CATEGORIES[6][0]: "pydantic validates each event against the discriminated union; a cheaper fast path for "
    "well-formed events (type lookup, then that one model) or `model_construct` after a schema check would help",
    CATEGORIES[7][0]: "the state machine itself, with dedup and clock handling: small, tune last",
    CATEGORIES[8][0]: "two token buckets per request (session and client address): cheap, tune last",
    CATEGORIES[9][0]: "the body is read chunk by chunk and parsed with the stdlib `json`; `orjson` would parse faster",
    CATEGORIES[10][0]: "stdlib `json` for the response; `orjson` would be faster",
    CATEGORIES[11][0]: "the handlers' own lines and what they call that no row above names (header parsing, "
    "store access, result objects)",
    CATEGORIES[12][0]: "the HTTP floor the bare endpoint pays too (compare its CPU per request, and its profile "
    "above); on loopback `write()` runs the receiving side's TCP stack inline, so a large `write` "
    "share is the kernel, not Python",
}


def categorize(thread: str, keys: set[str]) -> str:
    for label, marker in CATEGORIES:
        if marker == "@gateway":  # any gateway frame below the process's entry point
            if any("(gateway/" in k and not k.startswith(ROOT_FRAMES) for k in keys):
                return label
        elif marker.startswith("@thread:"):
            if thread.startswith(marker.removeprefix("@thread:")):
                return label
        elif any(marker in k for k in keys):
            return label
    return CATEGORIES[-1][0]


def read_profile(path: Path) -> dict[str, Any]:
    """Self and inclusive sample counts by function from a py-spy speedscope file."""
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    keys = [f"{f['name']} ({short_file(f.get('file', '?'))})" for f in frames]
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    budget: Counter[str] = Counter()
    total = idle = 0
    for prof in data["profiles"]:
        # Weights are seconds per sample; count samples instead.
        thread = prof.get("name", "?").split('"')[1] if '"' in prof.get("name", "") else prof.get("name", "?")
        for stack in prof["samples"]:
            if not stack:
                continue
            leaf = keys[stack[-1]]
            if leaf.startswith(IDLE_LEAVES):
                idle += 1
                continue
            total += 1
            threads[thread] += 1
            self_c[leaf] += 1
            in_stack = {keys[i] for i in stack}
            for k in in_stack:
                incl[k] += 1
            budget[categorize(thread, in_stack)] += 1
    return {"total": total, "idle_dropped": idle, "self": self_c, "inclusive": incl, "threads": threads,
            "budget": budget}


# -- report -----------------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("uvicorn", "starlette", "uvloop", "httptools", "opentelemetry-sdk",
                "opentelemetry-exporter-otlp-proto-http", "protobuf", "pydantic", "rotel", "py-spy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
        out["gateway"] = commit + (" + uncommitted changes in tracked files" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        out["gateway"] = "unknown (not a git checkout)"
    return out


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                 platform.processor() or "?")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": model, "ram_gib": mem_kb / 2**20,
            "kernel": platform.release(), "os": platform.platform()}


def fmt(v: Any, digits: int = 0) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if v != v:
            return "n/a"
        return f"{v:,.{digits}f}"
    return str(v)


def ratio(g: float | None, b: float | None) -> str:
    if g is None or b is None or b == 0 or g != g or b != b:
        return "n/a"
    return f"{g / b:.2f}×"


def verdict(ok: bool | None) -> str:
    return "**met**" if ok else ("**not met**" if ok is not None else "**not measured**")


ROWS = [
    ("events/s", "events_per_s", 0), ("requests/s", "requests_per_s", 0),
    ("p50 latency, event posts (ms)", "p50_ms", 2), ("p95 latency (ms)", "p95_ms", 2),
    ("p99 latency (ms)", "p99_ms", 2), ("server CPU per event (µs)", "cpu_us_per_event", 1),
    ("events per server CPU-second (noise-robust capacity)", "events_per_cpu_s", 0),
    ("server CPU per request (µs)", "cpu_us_per_request", 1),
    ("server CPU used (cores)", "server_cores", 2), ("peak RSS, server (MiB)", "peak_rss_mb", 1),
    ("spans exported/s", "spans_exported_per_s", 0), ("spans per event", "spans_per_event", 3),
    ("spans dropped", "spans_dropped_total", 0), ("export queue at end of load", "queue_depth_at_end", 0),
    ("load generator CPU (cores)", "gen_cores", 2), ("collector CPU (cores)", "rotel_cores", 2),
    ("CPU of other processes on the machine (cores)", "foreign_cores", 2), ("errors", "errors", 0),
]
RATIO_KEYS = {"events_per_s", "events_per_cpu_s", "requests_per_s", "p50_ms", "p95_ms", "p99_ms", "cpu_us_per_event",
              "cpu_us_per_request", "server_cores", "peak_rss_mb"}


def table(pairs: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]]) -> list[str]:
    head = "| figure | " + " | ".join(f"{label}: bare | {label}: gateway | ratio" for label, _, _ in pairs) + " |"
    out = [head, "|---" * (1 + 3 * len(pairs)) + "|"]
    for name, key, digits in ROWS:
        cells = [name]
        for _, bare, gw in pairs:
            bv = bare.get(key) if bare else None
            gv = gw.get(key) if gw else None
            if key == "errors":
                cells += [fmt(sum(bv.values()) if bv else 0), fmt(sum(gv.values()) if gv else 0), ""]
                continue
            cells += [fmt(bv, digits), fmt(gv, digits), ratio(gv, bv) if key in RATIO_KEYS else ""]
        out.append("| " + " | ".join(cells) + " |")
    return out


def profile_section(profiles: dict[str, dict[str, Any]], top: int, runs: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for mode, prof in profiles.items():
        total = prof["total"] or 1
        cpu = (runs.get(f"gateway-1-{mode}-profile") or {}).get("cpu_us_per_event")
        out += [f"### Gateway, {mode} posts: {prof['total']} samples holding the GIL", ""]
        threads = ", ".join(f"`{k}` {v / total:.0%}" for k, v in prof["threads"].most_common())
        out += [f"Samples per thread: {threads}.", ""]
        if cpu:
            out += [f"Budget: each sample goes to the first category found in its stack; µs per event = share × the "
                    f"{cpu:.1f} µs of server CPU per event measured during this profiling run.", ""]
        out += ["| where | share | ≈ µs per event |", "|---|---|---|"]
        for label, _ in CATEGORIES:
            n = prof["budget"].get(label, 0)
            if n:
                out.append(f"| {label} | {n / total:.1%} | {fmt(n / total * cpu, 1) if cpu else 'n/a'} |")
        out.append("")
        out += ["Top functions by **self** time (share of the GIL samples):", "",
                "| # | self | function (file) |", "|---|---|---|"]
        for i, (k, v) in enumerate(prof["self"].most_common(top), 1):
            out.append(f"| {i} | {v / total:.1%} | `{k}` |")
        out += ["", "Gateway functions by **inclusive** time (their callees included):", "",
                "| inclusive | function (file) |", "|---|---|"]
        gw = [(k, v) for k, v in prof["inclusive"].most_common() if "(gateway/" in k and not k.startswith(ROOT_FRAMES)]
        for k, v in gw[:top]:
            out.append(f"| {v / total:.1%} | `{k}` |")
        out.append("")
    return out


def write_report(path: Path, data: dict[str, Any]) -> None:
    r = data["runs"]
    m, v = data["machine"], data["versions"]
    ex = data.get("export_cpu") or {}
    mem = data.get("memory", {})
    s1 = r.get("gateway-1-single-max")
    b1 = r.get("gateway-1-batched-max")
    bare_s1 = r.get("bare-1-single-max")
    bare_b1 = r.get("bare-1-batched-max")
    half_s = r.get("gateway-1-single-rate")
    half_b = r.get("gateway-1-batched-rate")
    gw_mem = mem.get("gateway", {})
    L: list[str] = []
    L += ["# Benchmark results", "",
          f"Generated by `bench/run.py` on {data['started']} (UTC), {data['elapsed_min']:.1f} minutes.", "",
          "> **Noise.** " + data["noise_note"], ""]

    # Goals first.
    goals = []
    single_ratio = s1["events_per_s"] / bare_s1["events_per_s"] if s1 and bare_s1 else None
    cpu_ratio = s1["events_per_cpu_s"] / bare_s1["events_per_cpu_s"] if s1 and bare_s1 else None
    goals.append(("Single-event posts with OTLP export on ≥ 60% of the bare endpoint's rate",
                  None if single_ratio is None else single_ratio >= 0.6,
                  f"{single_ratio:.0%} ({s1['events_per_s']:,.0f} vs {bare_s1['events_per_s']:,.0f} events/s); "
                  f"per server CPU-second: {cpu_ratio:.0%}"
                  if single_ratio is not None and cpu_ratio is not None else "n/a"))
    goals.append(("Batched posts (50 events) ≥ 25k events/s per worker",
                  None if not b1 else b1["events_per_s"] >= 25_000,
                  f"{b1['events_per_s']:,.0f} events/s on 1 worker; {b1['events_per_cpu_s']:,.0f} events per "
                  "server CPU-second" if b1 else "n/a"))
    export_us = ex.get("gateway_exporter_us_per_span", ex.get("encode_serialize_us_per_span")) if ex else None
    goals.append(("Export CPU ≤ 20 µs per span (SDK span → OTLP bytes)",
                  None if export_us is None else export_us <= 20,
                  f"the gateway's OTLP exporter: {export_us:.1f} µs/span, HTTP post included; stock conversion "
                  f"{ex['encode_us_per_span']:.1f} + serialization {ex['serialize_us_per_span']:.2f}"
                  if ex and export_us is not None else "n/a"))
    p99s = [x for x in (half_s, half_b) if x]
    goals.append(("p99 ≤ 5 ms at half of max load",
                  None if not p99s else all(x["p99_ms"] <= 5 for x in p99s),
                  "; ".join(f"{x['mode']}: p99 {x['p99_ms']:.2f} ms at {x['events_per_s']:,.0f} events/s"
                            for x in p99s) or "n/a"))
    goals.append(("≤ 4 KiB per idle session",
                  None if not gw_mem else gw_mem["bytes_per_session"] <= 4096,
                  f"{gw_mem['bytes_per_session'] / 1024:.1f} KiB per open session" if gw_mem else "n/a"))
    L += ["## Goals (issue 7) and verdicts", "", "| goal | measured | verdict |", "|---|---|---|"]
    for goal, ok, measured in goals:
        L.append(f"| {goal} | {measured} | {verdict(ok)} |")
    L += ["", *data.get("verdict_notes", []), ""]

    L += ["## Machine, versions, command", "",
          f"- Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['ram_gib']:.1f} GiB RAM, Linux {m['kernel']}",
          "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
          f"- Command: `{data['command']}`",
          f"- Load average before / after: {data['loadavg_before']} / {data['loadavg_after']}",
          f"- Settings: {data['settings']}", ""]

    L += ["## How it is measured", "", *data["method"], ""]

    L += ["## 1 worker, maximum load", "",
          f"{data['cpus_1w']}. Fixed concurrency {data['args']['concurrency']} connections.", ""]
    L += table([("single", bare_s1, s1), ("batched ×50", bare_b1, b1)])
    L += [""]

    if half_s or half_b:
        L += ["## 1 worker, fixed rate at half of each server's own maximum", ""]
        L += table([("single", r.get("bare-1-single-rate"), half_s),
                    ("batched ×50", r.get("bare-1-batched-rate"), half_b)])
        late = [(x["mode"], x["target"], x["late"], x["paced"]) for x in (r.get("bare-1-single-rate"), half_s,
                r.get("bare-1-batched-rate"), half_b) if x]
        L += ["", "Pacing: " + "; ".join(f"{t} {md}: {lt} of {p} posts left > 1 ms behind schedule"
                                        for md, t, lt, p in late) + ".", ""]

    if mem:
        L += ["## Memory per open session", ""]
        L += ["| | bare | gateway | ratio |", "|---|---|---|---|"]
        bm, gm = mem.get("bare", {}), mem.get("gateway", {})
        L.append(f"| open idle sessions | {fmt(bm.get('sessions'))} | {fmt(gm.get('sessions'))} | |")
        L.append(f"| RSS before → after (MiB) | {fmt(bm.get('rss_before_mb'), 1)} → {fmt(bm.get('rss_after_mb'), 1)} | "
                 f"{fmt(gm.get('rss_before_mb'), 1)} → {fmt(gm.get('rss_after_mb'), 1)} | |")
        L.append(f"| bytes per open session | {fmt(bm.get('bytes_per_session'))} | "
                 f"{fmt(gm.get('bytes_per_session'))} | n/a (the bare endpoint keeps no state) |")
        L += ["", "Each session: created, then one batch of 7 events (connection open, setup complete, user speech "
              "start/transcript/end, model response start, usage), so it holds an open connection span, an open "
              "turn with its open inference span, one ended user-speech span, usage, and 7 seen event ids. "
              f"Gateway `vtg_sessions_active` after: {fmt(gm.get('sessions_active'))}. The bare endpoint stores "
              "nothing; its figure is the allocator's noise for the same traffic.", ""]

    if any(x.get("workers") == 2 for x in r.values()):
        L += ["## 1 worker vs 2 workers (maximum load)", "", *data["workers_note"], ""]
        L += table([("1w single", bare_s1, s1),
                    ("2w single", r.get("bare-2-single-max"), r.get("gateway-2-single-max"))])
        L += [""]
        L += table([("1w batched", bare_b1, b1),
                    ("2w batched", r.get("bare-2-batched-max"), r.get("gateway-2-batched-max"))])
        spread = [(k, x["per_process_cores"], x.get("connections_per_process")) for k, x in r.items()
                  if x.get("workers") == 2]
        L += ["", "How the load split between the 2 workers (CPU cores used by each server process, the supervisor "
              "included; the generator's connections held by each worker): "
              + "; ".join(f"{k}: cores {vals}, connections {c}" for k, vals, c in spread) + ".", ""]

    if ex:
        export_per_event = ex.get("gateway_exporter_us_per_span", ex["encode_serialize_us_per_span"]) \
            * ex["spans_per_event"]
        L += ["## Export CPU per span (in-process)", "",
              f"{ex['spans']} spans from {ex['sessions']} simulated sessions ({ex['events']} events, "
              f"{ex['spans_per_event']:.3f} spans/event, {ex['bytes_per_span']:.0f} bytes/span in OTLP), in batches of "
              f"{ex['batch']}, protobuf backend `{ex['protobuf_backend']}`, CPU time, "
              f"best (median) of {ex['rounds']} rounds:", "",
              "| step | µs per span |", "|---|---|",
              f"| `encode_spans(batch)`: SDK spans → protobuf messages | {ex['encode_us_per_span']:.2f} "
              f"({ex['encode_us_per_span_median']:.2f}) |",
              f"| `.SerializePartialToString()` alone | {ex['serialize_us_per_span']:.2f} "
              f"({ex['serialize_us_per_span_median']:.2f}) |",
              f"| both: what the stock OTLP exporter does per batch | {ex['encode_serialize_us_per_span']:.2f} "
              f"({ex['encode_serialize_us_per_span_median']:.2f}) |",
              *([f"| the gateway's own OTLP exporter (`{ex['gateway_exporter']}`), on spans of new sessions "
                 f"every round (as in production, no span is encoded twice): "
                 f"encoding + HTTP post to rotel | {ex['gateway_exporter_us_per_span']:.2f} "
                 f"({ex['gateway_exporter_us_per_span_median']:.2f}) |"] if "gateway_exporter" in ex else []),
              f"| for context: finished record → SDK span (`SpanEmitter.emit`, processors included) | "
              f"{ex['span_build_us_per_span']:.2f} ({ex['span_build_us_per_span_median']:.2f}) |",
              "", f"For context: the whole in-process ingest (validation, state machine, span building, no HTTP, no "
              f"export) costs {ex['ingest_us_per_event']:.1f} µs per event; the gateway's export path adds "
              f"{export_per_event:.1f} µs per event ({ex['spans_per_event']:.3f} spans/event).", ""]

    gcs = [(k.split("-")[2], x["gc"]) for k, x in r.items() if x.get("gc")]
    if gcs:
        L += ["## Garbage collector pauses", "",
              "Measured during the profiling runs (maximum load), with the gateway started through `bench/gc_trace.py` "
              "(the same `serve`, plus a `gc.callbacks` hook logging every collection). py-spy samples those runs "
              "by pausing the process, and a pause that lands inside a collection counts as part of it, so these "
              "are upper bounds: without py-spy, single-post load at half rate showed generation-0 pauses of "
              "2-3 ms about once a second.", "",
              "| load | generation | collections | mean pause (ms) | longest (ms) | > 20 ms | share of wall time |",
              "|---|---|---|---|---|---|---|"]
        for mode, g in gcs:
            for gen, st in g["generations"].items():
                L.append(f"| {mode} | {gen} | {st['count']} | {st['mean_ms']:.2f} | {st['max_ms']:.1f} | "
                         f"{st['over_20ms']} | {st['share_of_time']:.1%} |")
        L += [""]
    if data.get("profiles"):
        L += ["## Where the time goes (py-spy)", "", *data.get("profile_notes", []), ""]
        L += profile_section(data["profiles"], data["args"]["profile_top"], r)
        bare = data.get("bare_profile")
        if bare and bare["total"]:
            cpu = (r.get("bare-1-single-profile") or {}).get("cpu_us_per_request")
            L += ["### For comparison: the bare endpoint, single posts", "",
                  f"{bare['total']} samples holding the GIL"
                  + (f", {cpu:.1f} µs of server CPU per request during this run" if cpu else "")
                  + ". Top functions by self time (µs per request = share × that CPU):", "",
                  "| # | self | ≈ µs per request | function (file) |", "|---|---|---|---|"]
            for i, (k, v) in enumerate(bare["self"].most_common(10), 1):
                share = v / bare["total"]
                L.append(f"| {i} | {share:.1%} | {fmt(share * cpu, 1) if cpu else 'n/a'} | `{k}` |")
            L.append("")
        L += ["## What the profile says to optimize", "",
              "Not done here (the benchmark never changes the gateway); ordered by this run's budget:", "",
              *advice_lines(data)]
    L += ["## Raw data", "", f"Every figure above, and more, is in `{data['json_path']}`.", ""]
    path.write_text("\n".join(L))


# -- main ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=20, help="measured seconds per load run")
    p.add_argument("--warmup", type=float, default=3, help="seconds of load before each measured window")
    p.add_argument("--concurrency", type=int, default=32, help="connections (virtual users) per load run")
    p.add_argument("--gen-procs", type=int, default=1, help="load generator processes")
    p.add_argument("--batch", type=int, default=50, help="events per request in batched mode")
    p.add_argument("--session-repeats", type=int, default=25,
                   help="the simulated three-turn scenario (36 events) chained this many times per session")
    p.add_argument("--open-sessions", type=int, default=5000, help="idle sessions for the memory figure")
    p.add_argument("--profile-seconds", type=float, default=10, help="py-spy sampling time per mode")
    p.add_argument("--profile-top", type=int, default=15)
    p.add_argument("--export-sessions", type=int, default=200, help="simulated sessions for the export CPU figure")
    p.add_argument("--skip", action="append", default=[],
                   choices=["max", "half", "memory", "workers", "profile", "export"],
                   help="leave a part out (repeatable)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(BENCH / "RESULTS.md"))
    p.add_argument("--json", help="raw results (default: next to --out, .json)")
    p.add_argument("--keep-logs", action="store_true", help="keep server and generator logs (printed path)")
    p.add_argument("--from-json", help="only rewrite --out from the raw results of an earlier run")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    json_path = Path(args.json).resolve() if args.json else out.with_suffix(".json")
    if args.from_json:
        return rerender(Path(args.from_json), out)
    started = datetime.now(UTC)
    t_start = time.monotonic()
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, Path.cwd()), *sys.argv[1:]])
    workdir = Path(tempfile.mkdtemp(prefix="vtg-bench-"))
    log(f"work directory (logs): {workdir}")
    data: dict[str, Any] = {
        "started": started.strftime("%Y-%m-%d %H:%M"), "command": command, "args": vars(args),
        "machine": machine(), "versions": versions(), "loadavg_before": loadavg(), "runs": {}, "memory": {},
        "json_path": os.path.relpath(json_path, REPO),
    }
    if "profile" not in args.skip:
        data["versions"]["py-spy"] = subprocess.run([py_spy(), "--version"], capture_output=True,
                                                    text=True).stdout.strip().removeprefix("py-spy ")
    collector = Collector(workdir)
    collector.start(cpu_plan(1).gen)
    runs: dict[str, dict[str, Any]] = data["runs"]
    try:
        for mode in [] if "max" in args.skip else ["single", "batched"]:
            for target in ("bare", "gateway"):
                runs[f"{target}-1-{mode}-max"] = measure_load(target, 1, mode, args, collector, workdir)
            if "half" not in args.skip:
                for target in ("bare", "gateway"):
                    rate = runs[f"{target}-1-{mode}-max"]["events_per_s"] / 2
                    runs[f"{target}-1-{mode}-rate"] = measure_load(target, 1, mode, args, collector, workdir, rate)
        if "memory" not in args.skip:
            for target in ("bare", "gateway"):
                data["memory"][target] = measure_memory(target, args, collector, workdir)
        if "workers" not in args.skip:
            for mode in ("single", "batched"):
                for target in ("bare", "gateway"):
                    runs[f"{target}-2-{mode}-max"] = measure_load(target, 2, mode, args, collector, workdir)
        if "profile" not in args.skip:
            data["profiles"] = {}
            path = BENCH / "profile-bare-single.speedscope.json"
            runs["bare-1-single-profile"] = measure_load("bare", 1, "single", args, collector, workdir, profile=path)
            if path.exists():
                data["bare_profile"] = read_profile(path)
            for mode in ("single", "batched"):
                path = BENCH / f"profile-{mode}.speedscope.json"
                runs[f"gateway-1-{mode}-profile"] = measure_load("gateway", 1, mode, args, collector, workdir,
                                                                 profile=path)
                if path.exists():
                    data["profiles"][mode] = read_profile(path)
                else:
                    log(f"py-spy wrote no profile for {mode}; see {workdir}")
        if "export" not in args.skip:
            data["export_cpu"] = export_cpu(args, collector)
    finally:
        stop(collector.proc)
    data["loadavg_after"] = loadavg()
    data["elapsed_min"] = (time.monotonic() - t_start) / 60
    data["cpus_1w"] = "Pinning: " + cpu_plan(1).describe()
    finish(data, args)
    json_path.write_text(json.dumps(data, indent=1, default=lambda o: dict(o) if isinstance(o, Counter) else str(o)))
    write_report(out, data)
    log(f"wrote {out} and {json_path}")
    if not args.keep_logs:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def budget_us(data: dict[str, Any], mode: str) -> list[tuple[str, float, float]]:
    """(category, share, µs per event) of a profile, biggest first."""
    prof = (data.get("profiles") or {}).get(mode)
    cpu = (data["runs"].get(f"gateway-1-{mode}-profile") or {}).get("cpu_us_per_event")
    if not prof or not cpu or not prof["total"]:
        return []
    rows = [(k, v / prof["total"], v / prof["total"] * cpu) for k, v in prof["budget"].items()]
    return sorted(rows, key=lambda x: -x[1])


def verdict_notes(data: dict[str, Any]) -> list[str]:
    """Why each goal is met or not, from this run's numbers."""
    r = data["runs"]
    out: list[str] = []
    s1, b1 = r.get("gateway-1-single-max"), r.get("gateway-1-batched-max")
    bs, bb = r.get("bare-1-single-max"), r.get("bare-1-batched-max")

    def top(mode: str, n: int = 4) -> str:
        rows = budget_us(data, mode)[:n]
        return ", ".join(f"{k} ≈ {us:.0f} µs ({share:.0%})" for k, share, us in rows)

    if s1 and bs:
        out.append(
            f"- **Single-event posts.** Per request the gateway uses {s1['cpu_us_per_request']:.0f} µs of server CPU, "
            f"the bare endpoint {bs['cpu_us_per_request']:.0f} µs "
            f"({s1['cpu_us_per_request'] / bs['cpu_us_per_request']:.1f}×); "
            f"with one core each, the rates follow ({s1['events_per_s']:,.0f} vs {bs['events_per_s']:,.0f} events/s). "
            "Reaching 60% of the bare rate means ≤ "
            f"{bs['cpu_us_per_request'] / 0.6:.0f} µs per request in total, i.e. ≤ "
            f"{bs['cpu_us_per_request'] / 0.6 - bs['cpu_us_per_request']:.0f} µs of gateway work "
            "on top of the HTTP floor. "
            + (f"Biggest items (profile): {top('single')}." if budget_us(data, "single") else ""))
    if b1:
        out.append(
            f"- **Batched posts.** {b1['cpu_us_per_event']:.1f} µs of server CPU per event on one worker "
            f"(bare: {bb['cpu_us_per_event']:.1f} µs); 25k events/s per worker needs ≤ 40 µs per event. "
            + (f"Biggest items (profile): {top('batched')}." if budget_us(data, "batched") else ""))
    ex = data.get("export_cpu")
    if ex:
        export_us = ex.get("gateway_exporter_us_per_span", ex["encode_serialize_us_per_span"])
        out.append(
            f"- **Export CPU.** The stock conversion (`encode_spans`) costs {ex['encode_us_per_span']:.1f} µs "
            f"per span, serialization {ex['serialize_us_per_span']:.2f} µs; the exporter the gateway builds "
            f"(`{ex.get('gateway_exporter', '?')}`) costs "
            f"{ex.get('gateway_exporter_us_per_span', float('nan')):.1f} µs per span with its HTTP post. "
            + ("Meeting the goal takes an encoder that skips the generic SDK-to-protobuf conversion. "
               if export_us > 20 else "")
            + "At "
            f"{ex['spans_per_event']:.2f} spans per event that is "
            f"{export_us * ex['spans_per_event']:.0f} µs "
            "per event, on the export thread, under the same GIL as the requests.")
    halves = [x for x in (r.get("gateway-1-single-rate"), r.get("gateway-1-batched-rate")) if x]
    gcs = {k.split("-")[2]: x["gc"]["generations"] for k, x in r.items() if x.get("gc")}
    if halves:
        gc_text = ""
        long = [(m, gen, st) for m, g in gcs.items() for gen, st in g.items() if st["max_ms"] > 20]
        if long:
            gc_text = (" Garbage collections stop the event loop: "
                       + ", ".join(f"generation {gen} under {m} load {st['count']}× in "
                                   f"{data['args']['profile_seconds']:g} s, {st['mean_ms']:.0f} ms on average, "
                                   f"longest {st['max_ms']:.0f} ms" for m, gen, st in long)
                       + " (see \"Garbage collector pauses\"); every request in flight or arriving meanwhile waits "
                       "for the collection, so pauses like these put p99 above 5 ms as soon as they cover more than "
                       "1% of the time or of the requests. The heap they traverse holds SDK spans waiting in the "
                       "export queue, the recent-traces buffer and the open sessions' state.")
        out.append("- **p99 at half load.** " + "; ".join(
            f"{x['mode']}: p99 {x['p99_ms']:.1f} ms, p50 {x['p50_ms']:.2f} ms at {x['events_per_s']:,.0f} events/s "
            f"(bare at its own half load: p99 "
            f"{(r.get('bare-1-' + x['mode'] + '-rate') or {}).get('p99_ms', float('nan')):.2f} ms)" for x in halves)
            + "." + gc_text + " The export thread hands the GIL back after each millisecond of encoding; before it "
            "did, requests waited out the 5 ms switch interval behind it (paired runs at 2,600 single events/s: "
            "p99 7-9 ms without the handover, 4-6 ms with it).")
    mem = (data.get("memory") or {}).get("gateway")
    if mem:
        out.append(f"- **Memory per idle session.** {mem['bytes_per_session'] / 1024:.1f} KiB per open session "
                   f"({mem['sessions']} sessions, RSS delta / N): the session state (dataclasses, dicts, the seen-id "
                   "set, open span records with their attribute dicts, usage) plus the allocator's overhead.")
    return out


OWN_ENCODER_ADVICE = ("the gateway encodes OTLP itself (the stock `encode_spans` is not in the profile); the "
                      "self-time table shows what is left, and the HTTP client's own cost is part of this row")


def advice_lines(data: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for mode in ("single", "batched"):
        rows = budget_us(data, mode)
        if not rows:
            continue
        stock = any("(opentelemetry/exporter/otlp/proto/common/" in k for k in data["profiles"][mode]["inclusive"])
        out += [f"{mode.capitalize()} posts, biggest first:", ""]
        for k, share, us in rows[:6]:
            if k in ADVICE:
                text = OWN_ENCODER_ADVICE if k == CATEGORIES[1][0] and not stock else ADVICE[k]
                out.append(f"- {k}: ≈ {us:.0f} µs per event ({share:.0%}): {text}.")
        out.append("")
    return out


def rerender(source: Path, out: Path) -> int:
    """The report again from a run's raw results (same command, numbers and profiles; current wording)."""
    data = json.loads(source.read_text())
    for prof in [*(data.get("profiles") or {}).values(), data.get("bare_profile") or {}]:
        for key in ("self", "inclusive", "threads", "budget"):
            if key in prof:
                prof[key] = Counter(prof[key])
    for run in data["runs"].values():
        if run.get("gc"):
            run["gc"]["generations"] = {int(g): st for g, st in run["gc"]["generations"].items()}
    finish(data, argparse.Namespace(**data["args"]))
    write_report(out, data)
    log(f"wrote {out} from {source}")
    return 0


def finish(data: dict[str, Any], args: argparse.Namespace) -> None:
    """The explanatory text of the report, with this run's numbers in it."""
    runs = data["runs"]
    foreign = [x["foreign_cores"] for x in runs.values()]
    worst = max(foreign, default=0.0)
    data["noise_note"] = (
        f"Other processes on this machine used up to {worst:.2f} cores during a measured window (median "
        f"{sorted(foreign)[len(foreign) // 2] if foreign else 0:.2f}; see the \"CPU of other processes\" rows). "
        "On a 2-core machine anything above ~0.05 competes with the server or the load generator and skews the "
        "figures, ratios included (bare and gateway runs alternate, so both see similar noise, not the same). "
        "For numbers to quote, rerun the exact command below on a quiet machine.")
    data["settings"] = (
        "uvicorn (uvloop + httptools), 127.0.0.1, access log off, proxy headers off, server header off, "
        "lifespan on. Gateway: `OTEL_TRACES_EXPORTER=otlp` (http/protobuf) to rotel `--exporter blackhole`, "
        "default batch processor (queue 50 000, batch 512, 1 s delay), content capture off (default), "
        "rate limits raised to 1e9/s, `VTG_MAX_OPEN_SESSIONS=10000000`, `VTG_SIGNING_KEY` set. "
        f"Sessions: the simulated three-turn call chained {args.session_repeats}× "
        f"({36 * args.session_repeats} events, {3 * args.session_repeats} turns)")
    data["method"] = [
        "- **Load**: `bench/loadgen.py`, separate process(es), uvloop and a minimal HTTP/1.1 keep-alive client, "
        f"{args.concurrency} connections, each a virtual user playing sessions back to back: `POST /v1/sessions`, "
        "the session's events (single: one event per request; batched: "
        f"`{{\"events\": [{args.batch}], \"sent_at\"}}`), "
        "then `POST /end` beacon-style (`text/plain`, `?token=`). Every 202 must say `\"rejected\":[]` or it counts "
        "as an error. Bodies are built once at startup from `gateway.simulate.three_turn_session` (ids only need to "
        "be unique within a session), so the generator's CPU goes to the network.",
        f"- **Window**: {args.warmup:g} s of warm-up, then {args.duration:g} s measured; a request counts if it "
        "completed inside the window. A fresh server process for every run (so peak RSS is per run); one rotel for "
        "the whole benchmark.",
        "- **events/s, requests/s, latency** come from the generator (latency of event posts, send to full "
        "response; `p99_all_ms` in the JSON includes session creates and ends). **Server CPU** is utime+stime from "
        "`/proc/<pid>/stat` summed over the server's process tree (export thread included), at window start and "
        "end; per event = CPU / events in the window. **Peak RSS** is the sum of `VmHWM` over the server's "
        "processes. **Spans exported/s, drops** come from the gateway's `/metrics` (`vtg_spans_exported_total`, "
        "`vtg_spans_dropped_total`, `vtg_events_accepted_total`) at window start and end; after the load the run "
        "waits until the export queue is empty, so *spans dropped* is the final count.",
        "- **Half load**: the same load paced at a fixed rate of 50% of that server's own measured maximum events/s "
        "(each connection sends on its own schedule; a post more than 1 ms late is counted).",
        f"- **Memory per session**: a fresh server, 500 sessions opened and ended as warm-up, RSS, then "
        f"{args.open_sessions} sessions opened mid-turn and left idle, RSS again after 2 s; (after − before) / N.",
        "- **CPU of other processes** = the machine's busy time (`/proc/stat`) minus the server, generator and "
        "collector: the other engineer's test runs show up there.",
    ]
    data["workers_note"] = [
        "With 2 workers uvicorn's supervisor runs both; the kernel hands each new connection to one worker. "
        "Sessions live in each worker's memory, so a session must stay on the worker that created it: the load "
        "generator plays every session on one keep-alive connection, which never changes worker, so both modes "
        "are measured for the gateway too (a session on the wrong worker would answer 404 and count as an error). "
        "The gateway runs with 2 workers through `uvicorn gateway.app:create_app --factory --workers 2` (same env) "
        "because `serve` runs one process; that path does not set up the root logger, so its per-session INFO "
        "line is not written (a few µs per session). Per-worker `/metrics` cannot be summed over one scrape "
        "(each scrape lands on one worker), so span figures are left out for 2 workers.",
        "On 2 cores nothing is pinned with 2 workers: the two workers, the load generator and the collector share "
        "both cores, so the 2-worker figures include the generator's CPU competing with the server; compare "
        "events/s and CPU per event rather than expecting 2×.",
    ]
    data["verdict_notes"] = verdict_notes(data)
    if not data.get("profile_notes"):
        data["profile_notes"] = [
            f"py-spy {data['versions'].get('py-spy', '')} attached to the gateway (1 worker) for "
            f"{args.profile_seconds:g} s at {PROFILE_RATE} Hz under each maximum load (a separate run, not one of the "
            "measured ones: py-spy pauses the process to sample), with `--gil`: only the thread holding the GIL is "
            "sampled, so the shares below are shares of the Python work the process can do on one core. The "
            "speedscope files are `bench/profile-single.speedscope.json`, `bench/profile-batched.speedscope.json` and "
            "`bench/profile-bare-single.speedscope.json` "
            "(open them at "
            "https://www.speedscope.app). `export-otlp_http` is the export worker thread (OTLP encoding and the "
            "HTTP post to the collector), `MainThread` the event loop (HTTP, validation, state machine, span "
            "building).",
        ]


if __name__ == "__main__":
    sys.exit(main())
