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
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import (
    BENCH,
    REPO,
    Collector,
    cpu_plan,
    export_cpu,
    loadavg,
    log,
    measure_load,
    measure_memory,
    py_spy,
    stop,
)
from profiling import read_profile
from report import finish, machine, versions, write_report

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
    p.add_argument("--half-rounds", type=int, default=3,
                   help="half-load runs per server and mode, bare and gateway alternating: the p99 verdict is the "
                        "median of the rounds' ratios, so one stall of the machine does not decide it")
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
        "half_rounds": {},
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
                rates = {t: runs[f"{t}-1-{mode}-max"]["events_per_s"] / 2 for t in ("bare", "gateway")}
                rounds: dict[str, list[dict[str, Any]]] = {"bare": [], "gateway": []}
                for i in range(max(1, args.half_rounds)):
                    # Alternate who goes first, so a drift of the machine falls on both alike.
                    for target in ("bare", "gateway") if i % 2 == 0 else ("gateway", "bare"):
                        rounds[target].append(measure_load(target, 1, mode, args, collector, workdir, rates[target]))
                for target, results in rounds.items():
                    runs[f"{target}-1-{mode}-rate"] = median_run(results)
                data["half_rounds"][mode] = {t: [round_figures(x) for x in results] for t, results in rounds.items()}
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


def median_run(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The round whose p99 is the median (the lower middle one for an even count): the tables show a real run."""
    ordered = sorted(results, key=lambda x: x["p99_ms"])
    return ordered[(len(ordered) - 1) // 2]


def round_figures(res: dict[str, Any]) -> dict[str, Any]:
    keys = ("events_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "loop_lag_p99_ms", "server_cores",
            "foreign_cores", "steal_cores", "late", "paced", "slow_posts", "stalls")
    return {k: res[k] for k in keys if k in res}


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


if __name__ == "__main__":
    sys.exit(main())
