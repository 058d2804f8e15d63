"""The hot path's counter adders count exactly what ``Counter.inc`` counts, in the exposition a scrape reads."""

from __future__ import annotations

from prometheus_client import generate_latest

from gateway.metrics import GatewayMetrics


def test_adding_accepted_events_and_emitted_spans_reads_as_inc_would() -> None:
    fast, plain = GatewayMetrics(), GatewayMetrics()
    batches = [{"mark": 3, "user.speech_start": 1}, {"mark": 2}, {"tool.call": 5, "user.speech_start": 7}]
    for counts in batches:
        fast.add_accepted(counts)
        for kind, count in counts.items():
            plain.accepted(kind).inc(count)
    for spans in (4, 0, 2.5):
        fast.add_spans_emitted(spans)
        plain.spans_emitted.inc(spans)

    def samples(metrics: GatewayMetrics) -> list[str]:
        return [line for line in generate_latest(metrics.registry).decode().splitlines()
                if line.startswith(("vtg_events_accepted_total", "vtg_spans_emitted_total"))]

    assert samples(fast) == samples(plain)
    assert 'vtg_events_accepted_total{type="user.speech_start"} 8.0' in samples(fast)
    assert "vtg_spans_emitted_total 6.5" in samples(fast)
