"""Call recordings under load: server CPU and memory per minute of uploaded audio, and the event path with
recording on vs off, as ratios in the same run.

    python bench/recording_load.py --duration 20 --out bench/RECORDING_LOAD.md

1. **Uploads.** The real gateway (`serve`, one worker, pinned as in ``bench/run.py``) with ``audio`` captured and
   the local file store; an upload generator (a separate process, on the other core) plays ``--calls`` recorded
   calls at once, each uploading what the browser client uploads: chunk 0 after 1 s, then a chunk every 4 s, of
   the size ``--kbps`` Opus gives (64 kb/s: 8 KB, then 32 KB), ``--speedup`` times faster than real time. Figures:
   the server's CPU seconds per minute of audio stored, the cores one real-time call costs, RSS before, at the
   end and at its peak (``VmHWM``), and the upload latencies.
2. **The event path, recording off vs on.** ``bench/run.py``'s load (batched and single-event posts at maximum
   rate) against the same gateway twice: ``capture_content`` without audio, then with audio and the upload
   generator running ``--calls-during-events`` calls at real time beside the events. The ratios (on/off) of
   events/s, CPU per event and p99 are what recording costs the event path.

Run it on a quiet machine; ``--duration 3 --warmup 1`` checks the harness in under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness  # the server, load generator, collector and measurement that bench/run.py uses

FIRST_CHUNK_S = 1.0  # recorder.js: firstChunkMs
CHUNK_S = 4.0  # recorder.js: chunkMs
CONTENT_TYPE = "audio/webm;codecs=opus"
RECORDING_ENV = {"VTG_CAPTURE_CONTENT": "transcripts,audio", "VTG_RECORDING_MAX_DURATION_S": "86400",
                 "VTG_RECORDING_MAX_SESSION_BYTES": str(8 << 30)}


# -- the upload generator (a process of its own: `recording_load.py upload ...`) --------------------------------


async def _call(client: Any, base: str, kbps: float, speedup: float, until: float, lat: list[float],
                stats: dict[str, float], rng: random.Random) -> None:
    created = await client.post(f"{base}/v1/sessions", json={"record_audio": True, "provider": "gcp.gemini"})
    created.raise_for_status()
    answer = created.json()
    assert answer["recording"]["enabled"], answer["recording"]
    sid, auth = answer["session_id"], {"authorization": f"Bearer {answer['token']}"}
    started_ms = time.time() * 1000
    n = 0
    t = time.monotonic()
    while True:
        audio_s = FIRST_CHUNK_S if n == 0 else CHUNK_S
        t += audio_s / speedup
        await asyncio.sleep(max(0.0, t - time.monotonic()))
        if time.monotonic() >= until:
            break
        body = rng.randbytes(int(kbps * 1000 / 8 * audio_s))  # incompressible, like Opus
        params: dict[str, Any] = {"chunk": n}
        if n == 0:
            params["start"] = started_ms
        sent = time.perf_counter()
        r = await client.post(f"{base}/v1/sessions/{sid}/recording", params=params, content=body,
                              headers={**auth, "content-type": CONTENT_TYPE})
        lat.append(time.perf_counter() - sent)
        if r.status_code != 201:
            stats["errors"] += 1
            break
        stats["chunks"] += 1
        stats["bytes"] += len(body)
        stats["audio_s"] += audio_s
        n += 1
    await client.post(f"{base}/v1/sessions/{sid}/end", json={"reason": "completed"}, headers=auth)


async def _upload_main(a: argparse.Namespace) -> dict[str, Any]:
    import httpx

    base = f"http://127.0.0.1:{a.port}"
    lat: list[float] = []
    stats = {"chunks": 0.0, "bytes": 0.0, "audio_s": 0.0, "errors": 0.0}
    await asyncio.sleep(max(0.0, a.t0 - time.monotonic()))
    until = time.monotonic() + a.seconds
    limits = httpx.Limits(max_connections=a.calls, max_keepalive_connections=a.calls)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        rng = random.Random(a.seed)

        async def one(i: int) -> None:
            await asyncio.sleep(i * CHUNK_S / a.speedup / max(a.calls, 1))  # calls start spread over a chunk
            await _call(client, base, a.kbps, a.speedup, until, lat, stats, random.Random(rng.random()))

        await asyncio.gather(*(one(i) for i in range(a.calls)))
    lat.sort()

    def pick(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else 0.0

    return {**stats, "p50_ms": pick(0.5), "p99_ms": pick(0.99), "uploads": len(lat)}


def _uploader(port: int, calls: int, seconds: float, args: argparse.Namespace, workdir: Path, tag: str,
              speedup: float, t0: float) -> tuple[subprocess.Popen[bytes], Path]:
    out = workdir / f"upload-{tag}.json"
    cmd = [harness.PY, str(Path(__file__).resolve()), "upload", "--port", str(port), "--calls", str(calls),
           "--seconds", str(seconds), "--kbps", str(args.kbps), "--speedup", str(speedup), "--t0", f"{t0:.6f}",
           "--seed", str(args.seed), "--out", str(out)]
    cpus = harness.cpu_plan(1)
    proc = subprocess.Popen(cmd, stdout=open(workdir / f"upload-{tag}.err", "ab"),  # noqa: SIM115
                            stderr=subprocess.STDOUT, cwd=harness.REPO, env=harness.clean_env({}),
                            preexec_fn=harness._pin(cpus.gen))
    return proc, out


# -- 1. uploads ---------------------------------------------------------------------------------------------------


def measure_uploads(args: argparse.Namespace, collector: harness.Collector, workdir: Path) -> dict[str, Any]:
    cpus = harness.cpu_plan(1)
    collector.repin(cpus.gen)
    store = workdir / "recordings"
    saved = dict(harness.GATEWAY_ENV)
    harness.GATEWAY_ENV.update({**RECORDING_ENV, "VTG_RECORDING_STORE": store.as_uri()})
    try:
        proc, port = harness.start_server("gateway", 1, collector, cpus, workdir, "uploads")
    finally:
        harness.GATEWAY_ENV.clear()
        harness.GATEWAY_ENV.update(saved)
    try:
        server = harness.tree(proc.pid)
        rss_before = harness.rss_bytes(server)
        t0 = time.monotonic() + 1.0
        up, out = _uploader(port, args.calls, args.warmup + args.duration, args, workdir, "uploads",
                            args.speedup, t0)
        harness.sleep_until(t0 + args.warmup)
        cpu_a = sum(harness.cpu_of(harness.tree(proc.pid)).values())
        m_a = harness.metrics(port)
        w_a = time.monotonic()
        harness.sleep_until(t0 + args.warmup + args.duration)
        cpu_b = sum(harness.cpu_of(harness.tree(proc.pid)).values())
        m_b = harness.metrics(port)
        w_b = time.monotonic()
        server = harness.tree(proc.pid)
        peak, end = harness.rss_bytes(server, "VmHWM"), harness.rss_bytes(server)
        up.wait(120)
        gen = json.loads(out.read_text())
    finally:
        harness.stop(proc)
    stored = m_b.get("vtg_recording_bytes_total", 0) - m_a.get("vtg_recording_bytes_total", 0)
    chunks = m_b.get("vtg_recording_chunks_total", 0) - m_a.get("vtg_recording_chunks_total", 0)
    bytes_per_audio_s = args.kbps * 1000 / 8
    audio_min = stored / bytes_per_audio_s / 60
    cpu = cpu_b - cpu_a
    res = {
        "calls": args.calls, "speedup": args.speedup, "kbps": args.kbps, "seconds": w_b - w_a,
        "chunks": chunks, "stored_mb": stored / 1e6, "audio_min": audio_min, "server_cpu_s": cpu,
        "cpu_s_per_audio_min": cpu / audio_min if audio_min else None,
        "cores_per_realtime_call": cpu / (audio_min * 60) if audio_min else None,
        "rss_before_mb": rss_before / 1e6, "rss_end_mb": end / 1e6, "rss_peak_mb": peak / 1e6,
        "upload_p50_ms": gen["p50_ms"], "upload_p99_ms": gen["p99_ms"], "upload_errors": gen["errors"],
        "rejected": m_b.get("vtg_recording_rejected_total", 0),
        "storage_failures": m_b.get("vtg_recording_storage_failures_total", 0),
    }
    harness.log(f"uploads: {audio_min:.1f} min of audio in {w_b - w_a:.1f} s, "
                f"{res['cpu_s_per_audio_min'] or 0:.3f} CPU s per audio minute, RSS {rss_before / 1e6:.0f} → "
                f"peak {peak / 1e6:.0f} MB, errors {gen['errors']:.0f}")
    return res


# -- 2. the event path, recording off vs on -----------------------------------------------------------------------


def measure_events(mode: str, on: bool, args: argparse.Namespace, collector: harness.Collector,
                   workdir: Path) -> dict[str, Any]:
    saved_env, saved_gens = dict(harness.GATEWAY_ENV), harness.run_gens
    uploads: list[tuple[subprocess.Popen[bytes], Path]] = []
    if on:
        harness.GATEWAY_ENV.update({**RECORDING_ENV, "VTG_RECORDING_STORE": (workdir / f"rec-{mode}").as_uri()})

        def with_uploads(port: int, mode_: str, a: argparse.Namespace, cpus: harness.Cpus, wd: Path, tag: str,
                         **kw: Any) -> tuple[list[subprocess.Popen[bytes]], list[Path], float]:
            gens, outs, t0 = saved_gens(port, mode_, a, cpus, wd, tag, **kw)
            seconds = a.warmup + (kw.get("duration") or a.duration)
            uploads.append(_uploader(port, args.calls_during_events, seconds, args, wd, tag, 1.0, t0))
            return [*gens, uploads[-1][0]], outs, t0

        harness.run_gens = with_uploads  # type: ignore[assignment]
    else:  # the same content capture but audio, so the ratio is the recording's alone
        harness.GATEWAY_ENV["VTG_CAPTURE_CONTENT"] = RECORDING_ENV["VTG_CAPTURE_CONTENT"].replace(",audio", "")
    try:
        res = harness.measure_load("gateway", 1, mode, args, collector, workdir)
    finally:
        harness.run_gens = saved_gens
        harness.GATEWAY_ENV.clear()
        harness.GATEWAY_ENV.update(saved_env)
    if uploads:
        res["uploads"] = json.loads(uploads[0][1].read_text())
    res["recording"] = "on" if on else "off"
    return res


# -- report -------------------------------------------------------------------------------------------------------


def _f(v: Any, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:,.{digits}f}"


def report(data: dict[str, Any], args: argparse.Namespace) -> str:
    u = data["uploads"]
    lines = [
        "# Recordings under load",
        "",
        f"Run {data['started']} UTC: `python bench/recording_load.py --duration {args.duration:g} "
        f"--calls {args.calls} --speedup {args.speedup:g}`; one worker, local file store, load average before "
        f"{data['loadavg_before']}, after {data['loadavg_after']}.",
        "",
        "## Uploads: CPU and memory per minute of audio",
        "",
        f"{u['calls']} calls at once, each {u['kbps']:g} kb/s (chunk 0 of {FIRST_CHUNK_S:g} s, then {CHUNK_S:g} s "
        f"chunks), {u['speedup']:g}× real time.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| audio stored | {_f(u['audio_min'], 1)} min ({_f(u['stored_mb'], 1)} MB, {u['chunks']:.0f} chunks) "
        f"in {_f(u['seconds'], 1)} s |",
        f"| server CPU per minute of audio | {_f(u['cpu_s_per_audio_min'], 3)} s |",
        f"| cores per call at real time | {_f(u['cores_per_realtime_call'], 5)} |",
        f"| RSS before / end / peak | {_f(u['rss_before_mb'], 0)} / {_f(u['rss_end_mb'], 0)} / "
        f"{_f(u['rss_peak_mb'], 0)} MB |",
        f"| upload p50 / p99 | {_f(u['upload_p50_ms'])} / {_f(u['upload_p99_ms'])} ms |",
        f"| errors, rejected, storage failures | {u['upload_errors']:.0f}, {u['rejected']:.0f}, "
        f"{u['storage_failures']:.0f} |",
        "",
        "## The event path, recording off vs on",
        "",
        f"Off: `transcripts` captured. On: `transcripts,audio` captured and {args.calls_during_events} calls "
        "uploading at real time beside the events.",
        "",
        "| mode | figure | off | on | on/off |",
        "|---|---|---|---|---|",
    ]
    for mode in ("batched", "single"):
        off, on = data["events"].get(f"{mode}-off"), data["events"].get(f"{mode}-on")
        if not off or not on:
            continue
        for key, label in (("events_per_s", "events/s"), ("cpu_us_per_event", "CPU µs/event"),
                           ("p99_ms", "p99 ms")):
            a, b = off.get(key), on.get(key)
            ratio = f"{b / a:.3f}×" if a and b is not None else "n/a"
            lines.append(f"| {mode} | {label} | {_f(a)} | {_f(b)} | {ratio} |")
    lines += ["", "Raw figures: the JSON next to this file.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["upload"]:
        u = argparse.ArgumentParser()
        for name, kind in (("--port", int), ("--calls", int), ("--seconds", float), ("--kbps", float),
                           ("--speedup", float), ("--t0", float), ("--seed", int), ("--out", str)):
            u.add_argument(name, type=kind, required=True)
        a = u.parse_args(argv[1:])
        Path(a.out).write_text(json.dumps(asyncio.run(_upload_main(a))))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=20, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=3)
    p.add_argument("--calls", type=int, default=50, help="concurrent recorded calls in the upload run")
    p.add_argument("--speedup", type=float, default=10, help="upload this many times faster than real time")
    p.add_argument("--kbps", type=float, default=64, help="the recording's bit rate (recorder.js: 64)")
    p.add_argument("--calls-during-events", type=int, default=20, help="calls uploading beside the event load")
    p.add_argument("--skip-events", action="store_true", help="measure the uploads only")
    # bench/run.py's load generator settings
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--gen-procs", type=int, default=1)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--session-repeats", type=int, default=25)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(harness.BENCH / "RECORDING_LOAD.md"))
    args = p.parse_args(argv)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    data: dict[str, Any] = {"started": started, "loadavg_before": harness.loadavg(), "events": {}}
    with tempfile.TemporaryDirectory(prefix="vtg-recording-bench-") as tmp:
        workdir = Path(tmp)
        collector = harness.Collector(workdir)
        collector.start(harness.cpu_plan(1).gen)
        try:
            data["uploads"] = measure_uploads(args, collector, workdir)
            if not args.skip_events:
                for mode in ("batched", "single"):
                    for on in (False, True):
                        data["events"][f"{mode}-{'on' if on else 'off'}"] = measure_events(
                            mode, on, args, collector, workdir)
        finally:
            harness.stop(collector.proc)
    data["loadavg_after"] = harness.loadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report(data, args))
    out.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str))
    harness.log(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
