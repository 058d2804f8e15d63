"""The event-loop lag monitor: how late the loop wakes a sleeping task, on /metrics as a histogram."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time

from test_routes import make_client

from gateway.metrics import GatewayMetrics, watch_loop_lag


def test_a_blocked_loop_shows_as_lag_at_least_as_long_as_the_block_minus_the_interval() -> None:
    metrics = GatewayMetrics()

    def sample(name: str, **labels: str) -> float:
        return metrics.registry.get_sample_value(f"vtg_event_loop_lag_seconds_{name}", labels) or 0.0

    async def scenario() -> None:
        task = asyncio.create_task(watch_loop_lag(metrics.loop_lag, interval_s=0.1))
        await asyncio.sleep(0)  # the monitor is asleep now, due 0.1 s from here at the latest
        time.sleep(0.35)  # holds the loop: the monitor wakes at least 0.25 s late
        try:
            for _ in range(600):  # polls, however slow the machine
                if sample("count") - sample("bucket", le="0.25") >= 1:
                    break
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    assert sample("count") - sample("bucket", le="0.25") >= 1
    assert sample("sum") >= 0.25


def test_the_gateway_exports_its_loop_lag_while_it_runs() -> None:
    with make_client() as client:
        for _ in range(600):
            text = client.get("/metrics").text
            count = re.search(r"^vtg_event_loop_lag_seconds_count (\S+)$", text, re.M)
            if count is not None and float(count.group(1)) >= 2:
                break
            time.sleep(0.05)
        assert count is not None and float(count.group(1)) >= 2, text
        assert 'vtg_event_loop_lag_seconds_bucket{le="0.005"}' in text
