"""The figures of one load run: from the load generators' results and two snapshots of the machine taken at
the measured window's edges (``harness.measure_load``). No process is started or read here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from loop_lag import LoopLag

STALL_GAP_S = 0.05  # slow posts completing closer together than this belong to one stall


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
    lag: LoopLag | None = None
    steal: float = 0.0  # CPU seconds the hypervisor took from this VM (all cores)


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
        "steal_cores": (b.steal - a.steal) / wall,
        "peak_rss_mb": peak_rss / 2**20, "end_rss_mb": end_rss / 2**20,
        "errors": dict(errors), "first_error": next((r["first_error"] for r in results if r["first_error"]), None),
        "sessions_done": sum(r["sessions_done"] for r in results),
        "late": sum(r["late"] for r in results), "paced": sum(r["paced"] for r in results),
        **stalls(results),
    }
    if a.lag is not None and b.lag is not None:  # the event loop's lag in the window (bucket upper bounds)
        lag = b.lag.since(a.lag)
        res["loop_lag_p50_ms"] = lag.quantile(0.5) * 1000
        res["loop_lag_p99_ms"] = lag.quantile(0.99) * 1000
        res["loop_lag_mean_ms"] = lag.mean_s * 1000
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


def stalls(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The event posts slower than the generator's threshold (``loadgen.SLOW_US``), grouped into stalls: runs of
    them completing within ``STALL_GAP_S`` of each other. A few long stalls say the server (or the machine)
    stopped; many posts slow without a stall say a queue."""
    times = sorted(t for r in results for t, _, kind in r.get("slow", ()) if kind == "events")
    episodes = sum(1 for i, t in enumerate(times) if i == 0 or t - times[i - 1] > STALL_GAP_S)
    return {"slow_posts": len(times), "stalls": episodes}
