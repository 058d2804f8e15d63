"""The drain period of ``voice-trace-gateway serve``: after SIGTERM, /readyz says draining while traffic still flows."""

from __future__ import annotations

import re
import signal
import time
from typing import Any

import httpx
from conftest import GatewayProcess
from otlp_sink import free_port
from test_fanout import play_session
from test_integration import start_session

# No collector: these tests look at the process, not at what it exports.
QUIET = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
EXITED = (0, -signal.SIGTERM)  # uvicorn re-raises the captured signal once shutdown is complete


def wait_draining(gw: GatewayProcess, client: httpx.Client) -> httpx.Response:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert gw.proc.poll() is None, f"gateway exited before its drain:\n{gw.log()}"
        r = client.get("/readyz")
        if r.status_code == 503:
            return r
        time.sleep(0.02)
    raise AssertionError(f"/readyz never turned 503:\n{gw.log()}")


def test_sigterm_drains_then_exits(gateway_factory: Any) -> None:
    gw = gateway_factory({**QUIET, "VTG_DRAIN_S": "2"})
    with gw.client() as client:
        assert client.get("/readyz").json() == {"status": "ready"}
        gw.proc.send_signal(signal.SIGTERM)
        assert wait_draining(gw, client).json() == {"status": "draining"}
        # Still serving normally: the load balancer is told to stop, nobody is turned away.
        assert client.get("/healthz").status_code == 200
        s = start_session(client)
        r = client.post(f"/v1/sessions/{s['session_id']}/events", headers={"authorization": f"Bearer {s['token']}"},
                        json={"events": [{"type": "connection.open", "id": "1"},
                                          {"type": "user.speech_start", "id": "2"}]})
        assert r.status_code == 202 and r.json()["accepted"] == 2, r.text
        assert client.get("/readyz").status_code == 503
    assert gw.proc.wait(20) in EXITED
    log = gw.log()
    assert "SIGTERM: draining for 2 s" in log and "drain period over" in log
    # Then the shutdown as before: the session opened during the drain is ended.
    assert "ended 1 open sessions" in log


def test_second_sigterm_ends_the_drain(gateway_factory: Any) -> None:
    gw = gateway_factory({**QUIET, "VTG_DRAIN_S": "120"})
    with gw.client() as client:
        gw.proc.send_signal(signal.SIGTERM)
        wait_draining(gw, client)
    gw.proc.send_signal(signal.SIGTERM)
    assert gw.proc.wait(20) in EXITED  # far sooner than the 120 s drain
    assert "drain period over" not in gw.log()


def test_no_drain_when_zero(gateway_factory: Any) -> None:
    gw = gateway_factory({**QUIET, "VTG_DRAIN_S": "0"})
    assert gw.terminate(timeout=20) in EXITED
    assert "draining for" not in gw.log()


def test_ctrl_c_skips_the_drain(gateway_factory: Any) -> None:
    gw = gateway_factory({**QUIET, "VTG_DRAIN_S": "120"})
    gw.proc.send_signal(signal.SIGINT)
    assert gw.proc.wait(20) in (0, -signal.SIGINT)
    assert "draining for" not in gw.log()


def test_sigterm_with_the_backend_down_exits_by_one_deadline_and_counts_what_did_not_go_out(
    gateway_factory: Any,
) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    gw = gateway_factory({
        "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": down,
        "OTEL_BSP_SCHEDULE_DELAY": "100", "VTG_SHUTDOWN_GRACE_S": "3",
    })
    with gw.client() as client:
        for _ in range(3):
            play_session(client)
        emitted = sum(float(v) for v in re.findall(r"^vtg_spans_emitted_total (\S+)$", client.get("/metrics").text,
                                                    re.M))
    assert emitted == 36
    started = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    assert gw.proc.wait(60) in EXITED
    # 3 s of grace; the margin covers a loaded machine, not another wait in series (it took 32 s before).
    assert time.monotonic() - started < 30, gw.log()
    log = gw.log()
    undelivered = sum(int(n) for n in re.findall(r"exporter otlp_http: (\d+) spans could not be delivered", log))
    assert undelivered == emitted, log
