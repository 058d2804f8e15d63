"""The Markdown report of a ``run.py`` run, from its raw results."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import PROFILE_RATE, REPO
from profiling import CATEGORIES, ROOT_FRAMES, advice_lines, budget_us


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
    ("p99 latency (ms)", "p99_ms", 2), ("event loop lag p99 (ms)", "loop_lag_p99_ms", 2),
    ("server CPU per event (µs)", "cpu_us_per_event", 1),
    ("events per server CPU-second (noise-robust capacity)", "events_per_cpu_s", 0),
    ("server CPU per request (µs)", "cpu_us_per_request", 1),
    ("server CPU used (cores)", "server_cores", 2), ("peak RSS, server (MiB)", "peak_rss_mb", 1),
    ("spans exported/s", "spans_exported_per_s", 0), ("spans per event", "spans_per_event", 3),
    ("spans dropped", "spans_dropped_total", 0), ("export queue at end of load", "queue_depth_at_end", 0),
    ("load generator CPU (cores)", "gen_cores", 2), ("collector CPU (cores)", "rotel_cores", 2),
    ("CPU of other processes on the machine (cores)", "foreign_cores", 2),
    ("CPU the hypervisor took from this VM (steal, cores)", "steal_cores", 2), ("errors", "errors", 0),
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


def half_load_ratios(data: dict[str, Any]) -> list[tuple[str, float, str]]:
    """Per mode: the p99 ratio the verdict takes, and how it was formed. With several rounds, the median of the
    rounds' ratios (each round's gateway run against the bare run beside it); with one, that pair's ratio."""
    out = []
    for mode in ("single", "batched"):
        rounds = (data.get("half_rounds") or {}).get(mode)
        if rounds and rounds.get("bare") and rounds.get("gateway"):
            pairs = [(g["p99_ms"], b["p99_ms"]) for g, b in zip(rounds["gateway"], rounds["bare"], strict=False)
                     if b["p99_ms"]]
            if not pairs:
                continue
            ratios = sorted(g / b for g, b in pairs)
            median = statistics.median(ratios)
            out.append((mode, median, f"median of {len(ratios)} rounds: "
                        + ", ".join(f"{q:.2f}×" for q in ratios)
                        + f"; p99 medians {statistics.median(g for g, _ in pairs):.2f} vs "
                        f"{statistics.median(b for _, b in pairs):.2f} ms"))
            continue
        gw, bare = data["runs"].get(f"gateway-1-{mode}-rate"), data["runs"].get(f"bare-1-{mode}-rate")
        if gw and bare and bare["p99_ms"]:
            out.append((mode, gw["p99_ms"] / bare["p99_ms"], f"{gw['p99_ms']:.2f} vs {bare['p99_ms']:.2f} ms"))
    return out


def stall_text(run: dict[str, Any]) -> str:
    if "stalls" not in run:
        return "n/a"
    return f"{run['slow_posts']} in {run['stalls']}"


def half_rounds_table(data: dict[str, Any]) -> list[str]:
    rounds = data.get("half_rounds") or {}
    if not any(len(x.get("gateway", [])) > 1 for x in rounds.values()):
        return []
    L = ["Every half-load round (bare and gateway alternate which goes first; the table above shows the round with "
         "the median p99):", "",
         "| mode | round | bare p99 (ms) | gateway p99 (ms) | ratio | gateway p50 (ms) | gateway loop lag p99 (ms) "
         "| posts > 20 ms in stalls, bare / gateway | other processes (cores), bare / gateway "
         "| steal (cores), bare / gateway |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for mode, per in rounds.items():
        for i, (b, g) in enumerate(zip(per.get("bare", []), per.get("gateway", []), strict=False), 1):
            ratio = g["p99_ms"] / b["p99_ms"] if b["p99_ms"] else float("nan")
            L.append(f"| {mode} | {i} | {b['p99_ms']:.2f} | {g['p99_ms']:.2f} | {ratio:.2f}× | {g['p50_ms']:.2f} | "
                     f"{fmt(g.get('loop_lag_p99_ms'), 0)} | {stall_text(b)} / {stall_text(g)} | "
                     f"{b.get('foreign_cores', 0):.2f} / "
                     f"{g.get('foreign_cores', 0):.2f} | {fmt(b.get('steal_cores'), 2)} / "
                     f"{fmt(g.get('steal_cores'), 2)} |")
    return [*L, ""]


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

    # Goals first: issue 14's, every one a ratio within this run.
    goals = []
    cpu_ratio = s1["events_per_cpu_s"] / bare_s1["events_per_cpu_s"] if s1 and bare_s1 else None
    goals.append(("Single-event posts: events per server CPU-second ≥ 0.60× the bare endpoint's",
                  None if cpu_ratio is None else cpu_ratio >= 0.6,
                  f"{cpu_ratio:.2f}× ({s1['events_per_cpu_s']:,.0f} vs {bare_s1['events_per_cpu_s']:,.0f}); "
                  f"rate {s1['events_per_s']:,.0f} vs {bare_s1['events_per_s']:,.0f} events/s"
                  if s1 and bare_s1 and cpu_ratio is not None else "n/a"))
    batched_ratio = b1["events_per_cpu_s"] / bare_s1["events_per_cpu_s"] if b1 and bare_s1 else None
    goals.append(("Batched posts (50 events): events per server CPU-second ≥ 2.5× the bare endpoint's single-post "
                  "requests per CPU-second",
                  None if batched_ratio is None else batched_ratio >= 2.5,
                  f"{batched_ratio:.2f}× ({b1['events_per_cpu_s']:,.0f} events vs {bare_s1['events_per_cpu_s']:,.0f} "
                  "requests per CPU-second)" if b1 and bare_s1 and batched_ratio is not None else "n/a"))
    export_us = ex.get("gateway_exporter_us_per_span") if ex else None
    stock_us = ex["encode_us_per_span"] + ex["serialize_us_per_span"] if ex else None
    export_ratio = export_us / stock_us if export_us is not None and stock_us else None
    goals.append(("Export CPU per span (the gateway's exporter, HTTP post included) ≤ 0.15× the stock SDK "
                  "conversion (`encode_spans` + serialization)",
                  None if export_ratio is None else export_ratio <= 0.15,
                  f"{export_ratio:.2f}× ({export_us:.1f} vs {stock_us:.1f} µs per span)"
                  if export_ratio is not None and export_us is not None and stock_us is not None else "n/a"))
    p99_ratios = half_load_ratios(data)
    goals.append(("p99 at half of each server's own maximum ≤ 1.5× the bare endpoint's, single and batched",
                  None if len(p99_ratios) < 2 else all(q <= 1.5 for _, q, _ in p99_ratios),
                  "; ".join(f"{mode}: {q:.2f}× ({detail})" for mode, q, detail in p99_ratios) or "n/a"))
    goals.append(("≤ 3 KiB per idle open session",
                  None if not gw_mem else gw_mem["bytes_per_session"] <= 3072,
                  f"{gw_mem['bytes_per_session'] / 1024:.2f} KiB per open session" if gw_mem else "n/a"))
    L += ["## Goals (issue 14) and verdicts", "", "| goal | measured | verdict |", "|---|---|---|"]
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
        L += half_rounds_table(data)

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
              "are upper bounds. The gateway freezes what exists at startup and collects generation 0 only after "
              "10,000 net new tracked objects; what a request allocates is freed by reference counting, so a "
              "window can pass without any collection (\"none\" below).", "",
              "| load | generation | collections | mean pause (ms) | longest (ms) | > 20 ms | share of wall time |",
              "|---|---|---|---|---|---|---|"]
        for mode, g in gcs:
            if not g["generations"]:
                L.append(f"| {mode} | none | 0 | | | 0 | 0.0% |")
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
            "Reaching 0.60× the bare endpoint's events per CPU-second means ≤ "
            f"{bs['cpu_us_per_request'] / 0.6:.0f} µs per request in total, i.e. ≤ "
            f"{bs['cpu_us_per_request'] / 0.6 - bs['cpu_us_per_request']:.0f} µs of gateway work "
            "on top of the HTTP floor. "
            + (f"Biggest items (profile): {top('single')}." if budget_us(data, "single") else ""))
    if b1 and bb and bs:
        out.append(
            f"- **Batched posts.** {b1['cpu_us_per_event']:.1f} µs of server CPU per event on one worker "
            f"(bare: {bb['cpu_us_per_event']:.1f} µs); 2.5× the bare endpoint's single-post requests per CPU-second "
            f"needs ≤ {bs['cpu_us_per_request'] / 2.5:.1f} µs per event. "
            + (f"Biggest items (profile): {top('batched')}." if budget_us(data, "batched") else ""))
    ex = data.get("export_cpu")
    if ex:
        export_us = ex.get("gateway_exporter_us_per_span", ex["encode_serialize_us_per_span"])
        out.append(
            f"- **Export CPU.** The stock conversion (`encode_spans`) costs {ex['encode_us_per_span']:.1f} µs "
            f"per span, serialization {ex['serialize_us_per_span']:.2f} µs; the exporter the gateway builds "
            f"(`{ex.get('gateway_exporter', '?')}`) costs "
            f"{ex.get('gateway_exporter_us_per_span', float('nan')):.1f} µs per span with its HTTP post. "
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
                       "for the collection, so pauses like these put p99 far above the bare endpoint's as soon as "
                       "they cover more than 1% of the time or of the requests. The heap they traverse holds what "
                       "waits in the export queue, the recent-traces buffer and the open sessions' state.")
        out.append("- **p99 at half load.** " + "; ".join(
            f"{x['mode']}: p99 {x['p99_ms']:.1f} ms, p50 {x['p50_ms']:.2f} ms at {x['events_per_s']:,.0f} events/s "
            f"(bare at its own half load: p99 "
            f"{(r.get('bare-1-' + x['mode'] + '-rate') or {}).get('p99_ms', float('nan')):.2f} ms)" for x in halves)
            + "." + gc_text + " A batched post is answered once its events are admitted (seen ids, limits), and "
            "applied after its answer by the backlog (`gateway/sessions/backlog.py`) in 0.2 ms slices between "
            "requests: its millisecond of state machine and encoding no longer delays the requests queued behind "
            "it. The export thread hands the GIL back after each millisecond of encoding; before it "
            "did, requests waited out the 5 ms switch interval behind it (paired runs at 2,600 single events/s: "
            "p99 7-9 ms without the handover, 4-6 ms with it).")
    mem = (data.get("memory") or {}).get("gateway")
    if mem:
        out.append(f"- **Memory per idle session.** {mem['bytes_per_session'] / 1024:.1f} KiB per open session "
                   f"({mem['sessions']} sessions, RSS delta / N): the session state (dataclasses, dicts, the seen-id "
                   "set, open span records with their attribute dicts, usage) plus the allocator's overhead.")
    return out


def finish(data: dict[str, Any], args: argparse.Namespace) -> None:
    """The explanatory text of the report, with this run's numbers in it."""
    runs = data["runs"]
    foreign = [x["foreign_cores"] for x in runs.values()]
    steal = [x["steal_cores"] for x in runs.values() if "steal_cores" in x]
    worst = max(foreign, default=0.0)
    data["noise_note"] = (
        f"Other processes on this machine used up to {worst:.2f} cores during a measured window (median "
        f"{sorted(foreign)[len(foreign) // 2] if foreign else 0:.2f}; see the \"CPU of other processes\" rows). "
        "On a 2-core machine anything above ~0.05 competes with the server or the load generator and skews the "
        "figures, ratios included (bare and gateway runs alternate, so both see similar noise, not the same). "
        "For numbers to quote, rerun the exact command below on a quiet machine."
        + (f" The hypervisor took up to {max(steal):.2f} cores from this VM during a window (steal; median "
           f"{sorted(steal)[len(steal) // 2]:.2f}): no rerun controls that." if steal else ""))
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
        "(each connection sends on its own schedule; a post more than 1 ms late is counted), "
        f"{getattr(args, 'half_rounds', 1)} round(s) per server and mode, bare and gateway alternating which goes "
        "first. One window's p99 is decided by its slowest 1% of posts (a few dozen when posts carry 50 events), so "
        "one stall of the VM moves it: the verdict takes the median of the rounds' ratios.",
        f"- **Memory per session**: a fresh server, 500 sessions opened and ended as warm-up, RSS, then "
        f"{args.open_sessions} sessions opened mid-turn and left idle, RSS again after 2 s; (after − before) / N.",
        "- **CPU of other processes** = the machine's busy time (`/proc/stat`) minus the server, generator and "
        "collector: the other engineer's test runs show up there.",
        "- **Steal** = the time the hypervisor gave this VM's CPUs to something else while they had work "
        "(`/proc/stat`'s steal column, all cores). The server's core stops for as long: every request in flight "
        "waits, and at 60% utilisation a 10 ms theft takes some 15 ms more to work off. The tails at half "
        "load come with it: event-loop lags over 10 ms (sampled every 2 ms) clustered in the 100 ms intervals with "
        "steal in one 20 s run of single posts at 2,800 events/s (0.13 per interval without steal, 0.55 with "
        "10 ms of it, 2 with 20 ms).",
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
