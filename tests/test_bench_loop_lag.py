"""bench/loop_lag.py reads the loop-lag histogram the gateway exports (a real registry's exposition)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

from prometheus_client import generate_latest

from gateway.metrics import GatewayMetrics

BENCH = Path(__file__).resolve().parent.parent / "bench"
_spec = importlib.util.spec_from_file_location("bench_loop_lag", BENCH / "loop_lag.py")
assert _spec is not None and _spec.loader is not None
_module = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)  # dataclasses look it up there
_spec.loader.exec_module(_module)
loop_lag = _module.loop_lag


def test_the_bench_reads_counts_quantiles_and_a_window_between_two_scrapes() -> None:
    metrics = GatewayMetrics()
    for value in (0.0002, 0.0002, 0.003, 0.03):
        metrics.loop_lag.observe(value)
    first = loop_lag(generate_latest(metrics.registry).decode())
    assert first is not None and first.count == 4 and math.isclose(first.sum_s, 0.0334)
    assert first.quantile(0.5) == 0.0005 and first.quantile(0.99) == 0.05
    assert first.share_above(0.005) == 0.25
    metrics.loop_lag.observe(0.2)
    window = loop_lag(generate_latest(metrics.registry).decode())
    assert window is not None
    only_new = window.since(first)
    assert only_new.count == 1 and only_new.quantile(0.99) == 0.25 and math.isclose(only_new.mean_s, 0.2)
    assert loop_lag("vtg_events_duplicate_total 0.0\n") is None
