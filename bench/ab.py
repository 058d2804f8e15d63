"""A/B: two gateway checkouts under the same load, interleaved in one run, with the bare endpoint beside them.

    git worktree add /tmp/base <ref> && (cd /tmp/base && bash scripts/setup.sh)
    python bench/ab.py --a /tmp/base --b . --rounds 3 --duration 10 --out bench/AB.md

Each checkout runs from its own ``.venv`` (``scripts/setup.sh`` makes it). Every round measures the bare
endpoint, A and B at their maximum rate, one after the other, alternating A and B's order from round to round,
so slow drift of the machine (another process, thermal state) falls on both alike. With ``--half`` each is then
paced at half of its own median maximum, as many rounds, for the p99 and the event loop's lag. ``--memory``
adds the memory per idle open session. The figures are medians over the rounds and, as everywhere in
``bench/``, ratios within this run: B against A (the change) and each against the bare endpoint (the goals of
issue 14).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness

FIGURES = (
    ("server CPU per event (µs)", "cpu_us_per_event", 1),
    ("events per server CPU-second", "events_per_cpu_s", 0),
    ("events/s", "events_per_s", 0),
    ("p99 latency, event posts (ms)", "p99_ms", 2),
    ("event loop lag p99 (ms)", "loop_lag_p99_ms", 2),
    ("peak RSS (MiB)", "peak_rss_mb", 1),
)


def _commit(checkout: Path) -> str:
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%h %s"], cwd=checkout, capture_output=True, text=True,
                             check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return out[:100]


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if isinstance(r.get(key), int | float) and r[key] == r[key]]
    return statistics.median(values) if values else None


def _cell(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _ratio(value: float | None, base: float | None) -> str:
    return "n/a" if value is None or not base else f"{value / base:.2f}×"


def report(data: dict[str, Any]) -> str:
    a, b = data["a"], data["b"]
    lines = [
        "# A/B: two gateway checkouts in one run",
        "",
        f"Run {data['started']} UTC, `{data['command']}`, {data['elapsed_min']:.1f} minutes; load average "
        f"before {data['loadavg_before']}, after {data['loadavg_after']}. One worker pinned to one core, the load "
        "generator and the collector (rotel, blackhole) on the other, as in `bench/run.py`. Medians over "
        f"{data['rounds']} rounds; other processes used up to {data['foreign_max']:.2f} cores in a window, and "
        f"the hypervisor took up to {data.get('steal_max', float('nan')):.2f} (steal).",
        "",
        f"- **A**: `{a['path']}` ({a['commit']})",
        f"- **B**: `{b['path']}` ({b['commit']})",
        "",
    ]
    for step, runs in data["steps"].items():
        bare, ra, rb = runs["bare"], runs["A"], runs["B"]
        lines += [f"## {step}", "", "| figure | bare | A | B | B / A | A / bare | B / bare |",
                  "|---|---|---|---|---|---|---|"]
        for name, key, digits in FIGURES:
            mb, ma, mbb = _median(bare, key), _median(ra, key), _median(rb, key)
            if ma is None and mbb is None:
                continue
            lines.append(f"| {name} | {_cell(mb, digits)} | {_cell(ma, digits)} | {_cell(mbb, digits)} "
                         f"| {_ratio(mbb, ma)} | {_ratio(ma, mb)} | {_ratio(mbb, mb)} |")
        errors = {t: sum(sum(r["errors"].values()) for r in rs) for t, rs in runs.items()}
        lines += ["", f"Errors: {errors}. Per round (µs CPU per event): "
                  + "; ".join(f"{t} " + ", ".join(f"{r['cpu_us_per_event']:.1f}" for r in rs)
                              for t, rs in runs.items()), ""]
    mem = data.get("memory")
    if mem:
        lines += ["## Memory per idle open session", "", "| A | B | B / A |", "|---|---|---|",
                  f"| {mem['A'] / 1024:.2f} KiB | {mem['B'] / 1024:.2f} KiB | {mem['B'] / mem['A']:.2f}× |", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", required=True, type=Path, help="the baseline checkout (with its .venv)")
    p.add_argument("--b", required=True, type=Path, help="the changed checkout (with its .venv)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--modes", default="single,batched")
    p.add_argument("--half", action="store_true", help="also pace each at half of its own maximum")
    p.add_argument("--memory", action="store_true", help="also measure memory per idle open session")
    p.add_argument("--duration", type=float, default=10, help="measured seconds per load run")
    p.add_argument("--warmup", type=float, default=3)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--gen-procs", type=int, default=1)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--session-repeats", type=int, default=25)
    p.add_argument("--open-sessions", type=int, default=5000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(harness.BENCH / "AB.md"))
    args = p.parse_args(argv)
    args.profile_seconds = args.duration
    for name in ("a", "b"):
        checkout = getattr(args, name).resolve()
        if not (checkout / ".venv" / "bin" / "python").exists():
            p.error(f"--{name}: {checkout} has no .venv (run scripts/setup.sh there)")
        harness.CHECKOUTS[name.upper()] = checkout
    started = datetime.now(UTC)
    t0 = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="vtg-ab-"))
    data: dict[str, Any] = {
        "started": started.strftime("%Y-%m-%d %H:%M"), "rounds": args.rounds,
        "command": "python bench/ab.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "loadavg_before": harness.loadavg(), "steps": {},
        "a": {"path": str(args.a), "commit": _commit(args.a)}, "b": {"path": str(args.b), "commit": _commit(args.b)},
    }
    collector = harness.Collector(workdir)
    collector.start(harness.cpu_plan(1).gen)
    try:
        for mode in args.modes.split(","):
            step: dict[str, list[dict[str, Any]]] = {"bare": [], "A": [], "B": []}
            for i in range(args.rounds):
                for target in ("bare", *(("A", "B") if i % 2 == 0 else ("B", "A"))):
                    step[target].append(harness.measure_load(target, 1, mode, args, collector, workdir))
            data["steps"][f"{mode} posts, maximum load"] = step
            if args.half:
                half: dict[str, list[dict[str, Any]]] = {"bare": [], "A": [], "B": []}
                rates = {target: (_median(step[target], "events_per_s") or 0) / 2 for target in half}
                for i in range(args.rounds):  # one window's p99 is its slowest 1%: a median of rounds, as above
                    for target in ("bare", *(("A", "B") if i % 2 == 0 else ("B", "A"))):
                        half[target].append(harness.measure_load(target, 1, mode, args, collector, workdir,
                                                                 rates[target]))
                data["steps"][f"{mode} posts, half of each one's own maximum"] = half
        if args.memory:
            data["memory"] = {t: harness.measure_memory(t, args, collector, workdir)["bytes_per_session"]
                              for t in ("A", "B")}
    finally:
        harness.stop(collector.proc)
    data["loadavg_after"] = harness.loadavg()
    data["elapsed_min"] = (time.monotonic() - t0) / 60
    data["foreign_max"] = max((r["foreign_cores"] for s in data["steps"].values() for rs in s.values() for r in rs),
                              default=0.0)
    data["steal_max"] = max((r.get("steal_cores", 0.0) for s in data["steps"].values() for rs in s.values()
                             for r in rs), default=0.0)
    out = Path(args.out)
    out.write_text(report(data))
    out.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str))
    harness.log(f"wrote {out}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
