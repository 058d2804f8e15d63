from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from conftest import Recorder
from otlp_sink import Collector, Sink
from test_export_queue import FlakyExporter, counter
from test_fanout import metric, play_session
from test_machine import Run

from gateway.delivery.export_queue import RetryingBatchProcessor
from gateway.delivery.spool import Spool, decode_batch, encode_batch
from gateway.metrics import GatewayMetrics
from gateway.sessions.machine import MachineOptions, SessionMachine


def scripted_session(sink: Any) -> None:
    """A session with a tool error and an interruption, its finished spans handed to ``sink``."""
    r = Run(SessionMachine(MachineOptions.capture_all()), sink)
    r.send("connection.open")
    r.send("user.speech_start")
    r.send("user.speech_end")
    r.send("tool.call", call_id="a", name="x", arguments={"q": [1, 2]})
    r.send("tool.result", call_id="a", error="boom")
    r.send("model.usage", usage={"input_tokens": 3, "output_tokens": 4})
    r.send("model.interrupted", played_ms=10)
    r.end()


def session_spans() -> list[Any]:
    recorder = Recorder()
    scripted_session(recorder)
    return recorder.spans()


def test_a_spooled_batch_decodes_to_spans_that_encode_to_the_same_bytes() -> None:
    spans = session_spans()
    data = encode_batch(spans)
    again = decode_batch(data)
    assert [s.name for s in again] == [s.name for s in spans]
    assert encode_batch(again) == data


def spooling(exporter: FlakyExporter, metrics: GatewayMetrics, spool: Spool) -> RetryingBatchProcessor:
    return RetryingBatchProcessor(exporter, "x", metrics, schedule_delay_millis=10, max_export_batch_size=3,
                                  retry_initial_s=0.01, retry_max_s=0.05, spool=spool)  # type: ignore[arg-type]


def test_batches_the_backend_refuses_wait_on_disk_and_arrive_once_in_order(tmp_path: Path) -> None:
    metrics = GatewayMetrics()
    exporter = FlakyExporter(failures=6)
    spool = Spool(tmp_path, 10_000_000)
    p = spooling(exporter, metrics, spool)
    spans = session_spans()
    for span in spans:
        p.on_end(span)
    assert p.force_flush(10_000)
    delivered = exporter.get_finished_spans()
    assert [s.context.span_id for s in delivered] == [s.context.span_id for s in spans]
    assert len(spool) == 0 and not list(tmp_path.glob("*.otlp"))
    p.shutdown()


def test_spooled_batches_survive_a_restart(tmp_path: Path) -> None:
    metrics = GatewayMetrics()
    down = FlakyExporter(failures=10**9)
    p = spooling(down, metrics, Spool(tmp_path, 10_000_000))
    spans = session_spans()
    for span in spans:
        p.on_end(span)
    p.shutdown(timeout_millis=300)
    assert list(tmp_path.glob("*.otlp")), "nothing reached the disk"
    assert counter(metrics, "vtg_spans_dropped") == 0
    up = FlakyExporter(failures=0)
    again = spooling(up, GatewayMetrics(), Spool(tmp_path, 10_000_000))
    assert again.force_flush(10_000)
    assert sorted(s.context.span_id for s in up.get_finished_spans()) == sorted(s.context.span_id for s in spans)
    again.shutdown()


def test_a_full_spool_drops_and_counts(tmp_path: Path) -> None:
    metrics = GatewayMetrics()
    spans = session_spans()
    room_for_one_batch = len(encode_batch(spans[:3])) + 64
    p = spooling(FlakyExporter(failures=10**9), metrics, Spool(tmp_path, room_for_one_batch))
    for span in spans:
        p.on_end(span)
    p.force_flush(500)
    p.shutdown(timeout_millis=100)
    spooled = sum(len(decode_batch(f.read_bytes())) for f in tmp_path.glob("*.otlp"))
    assert counter(metrics, "vtg_spans_dropped") > 0
    assert spooled + counter(metrics, "vtg_spans_dropped") == len(spans)


def test_collector_down_gateway_killed_both_restarted_every_span_arrives_once(
    collector: Collector, sink: Sink, gateway_factory: Any, tmp_path: Path
) -> None:
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
           "OTEL_EXPORTER_OTLP_TIMEOUT": "1", "OTEL_BSP_SCHEDULE_DELAY": "100",
           "VTG_EXPORT_SPOOL_DIR": str(tmp_path / "spool"), "VTG_EXPORT_RETRY_MAX_BACKOFF_S": "1"}
    collector.stop()
    gw = gateway_factory(env)
    with gw.client() as client:
        sessions = [play_session(client) for _ in range(3)]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            metrics = client.get("/metrics").text
            if (metric(metrics, "vtg_export_queue_depth", "otlp_http") == 0
                    and metric(metrics, "vtg_export_spooled_batches", "otlp_http") > 0):
                break
            time.sleep(0.1)
        assert metric(metrics, "vtg_export_spooled_batches", "otlp_http") > 0
    gw.proc.kill()
    gw.proc.wait(10)
    collector.start()
    gateway_factory(env)
    for s in sessions:
        sink.trace(s["trace_id"], timeout=30)
    time.sleep(1)
    seen = [x.span_id for x in sink.spans]
    assert len(seen) == len(set(seen)) == 36
    assert not list((tmp_path / "spool" / "otlp_http").glob("*.otlp"))
