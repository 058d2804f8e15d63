"""What one benchmark run is made of: servers, the load generator, the collector, /proc readings.

Shared by ``run.py`` (the full benchmark), ``ab.py`` (two checkouts side by side) and ``store_load.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from figures import Snapshot, summarize
from loop_lag import LoopLag, loop_lag

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = 1024
PROFILE_RATE = 100
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


def machine_busy() -> tuple[float, float]:
    """Seconds of CPU the whole machine spent busy (all cores) since boot, and seconds the hypervisor took from
    this VM's CPUs while they had work (steal: not counted as busy)."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(x) for x in parts[:8]]
    idle, steal = values[3] + values[4], values[7]
    return (sum(values) - idle - steal) / CLK_TCK, steal / CLK_TCK


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


def scrape(port: int) -> tuple[dict[str, float], LoopLag | None]:
    """The gateway's Prometheus metrics summed over labels, and its event-loop lag histogram."""
    _, text = http_get(f"http://127.0.0.1:{port}/metrics")
    out: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        with contextlib.suppress(ValueError):
            out[name] += float(value)
    return dict(out), loop_lag(text)


def metrics(port: int) -> dict[str, float]:
    return scrape(port)[0]


# Gateway checkouts other than this one, by target name (``ab.py`` registers the two it compares); each runs
# with its own ``.venv``.
CHECKOUTS: dict[str, Path] = {}


def gateway_python(target: str) -> tuple[str, Path]:
    checkout = CHECKOUTS.get(target)
    if checkout is None:
        return PY, REPO
    return str(checkout / ".venv" / "bin" / "python"), checkout


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
        cwd = REPO
    else:
        env = clean_env({**GATEWAY_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.http_port}"})
        python, cwd = gateway_python(target)
        if workers == 1:
            serve = ["serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
            if gc_log is None:
                cmd = [python, "-m", "gateway", *serve]
            else:  # diagnostic runs: the same `serve`, with the garbage collector's pauses logged
                cmd = [python, str(BENCH / "gc_trace.py"), *serve]
                env["VTG_BENCH_GC_LOG"] = str(gc_log)
        else:
            # `serve` runs one process; several workers need uvicorn's supervisor and the app factory.
            cmd = [python, "-m", "uvicorn", "gateway.app:create_app", "--factory", "--port", str(port),
                   "--workers", str(workers), *UVICORN_FLAGS]
    out = open(workdir / f"server-{tag}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                            preexec_fn=_pin(cpus.server), start_new_session=True)
    try:
        wait_ready(port, "/healthz" if target == "bare" else "/readyz")
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


def snapshot(server_pid: int, gen_pids: list[int], collector: Collector, port: int,
             scrape_metrics: bool) -> Snapshot:
    t = time.monotonic()
    busy, steal = machine_busy()
    s = Snapshot(t, cpu_of(tree(server_pid)), sum(cpu_of(gen_pids).values()),
                 sum(cpu_of([collector.proc.pid]).values()) if collector.proc else 0.0, busy, steal=steal)
    if scrape_metrics:
        s.metrics, s.lag = scrape(port)
    return s


def measure_load(target: str, workers: int, mode: str, args: argparse.Namespace, collector: Collector,
                 workdir: Path, rate: float = 0.0, profile: Path | None = None) -> dict[str, Any]:
    cpus = cpu_plan(workers)
    collector.repin(cpus.gen)
    tag = f"{target}-{workers}w-{mode}-{'rate' if rate else ('profile' if profile else 'max')}"
    what = f"{target}, {workers} worker(s), {mode}, " + (f"fixed rate {rate:.0f} events/s" if rate else "max load")
    log(f"{what}{' (profiling)' if profile else ''}: starting")
    gc_log = workdir / f"gc-{tag}.log" if profile is not None and target != "bare" and workers == 1 else None
    proc, port = start_server(target, workers, collector, cpus, workdir, tag, gc_log)
    scrape_metrics = target != "bare" and workers == 1
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
        a = snapshot(proc.pid, gen_pids, collector, port, scrape_metrics)
        conns = [c for c in connections(tree(proc.pid), port) if c]
        sleep_until(w1)
        b = snapshot(proc.pid, gen_pids, collector, port, scrape_metrics)
        server_tree = tree(proc.pid)
        peak_rss = rss_bytes(server_tree, "VmHWM")
        end_rss = rss_bytes(server_tree)
        for g in gens:
            g.wait(duration + args.warmup + 60)
        results = [json.loads(o.read_text()) for o in outs]
        drain: dict[str, Any] = {}
        if scrape_metrics:
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
        active = metrics(port).get("vtg_sessions_active") if target != "bare" else None
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
