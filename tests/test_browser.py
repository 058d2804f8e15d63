"""The browser client in real headless Chromium, against a real gateway exporting to a real collector."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from otlp_sink import Collector, Sink
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
# What this machine's closed network needs (no background fetches, no QUIC), as root in a container.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, tmp_path: Path) -> Iterator[Page]:
    context = browser.new_context()
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert errors == [], f"the page threw: {errors}"


def start_gateway(gateway_factory: Any, collector: Collector, **env: str) -> Any:
    return gateway_factory({
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "VTG_CAPTURE_CONTENT": "transcripts",
        **env,
    })


def open_demo(page: Page, url: str, query: str = "speed=10") -> None:
    page.goto(f"{url}/demo?{query}")
    page.wait_for_function("window.demo && window.demo.state")


def accepted_events(metrics_text: str) -> int:
    return int(sum(float(v) for v in re.findall(r'^vtg_events_accepted_total\{type="[^"]+"\} (\S+)$',
                                                 metrics_text, re.M)))


def test_demo_session_in_a_real_browser_reaches_the_collector_as_one_trace(
    page: Page, collector: Collector, sink: Sink, gateway_factory: Any
) -> None:
    gw = start_gateway(gateway_factory, collector)
    open_demo(page, gw.url)
    result = page.evaluate("window.demo.runScripted()")
    assert result["summary"]["turns"] == 3 and result["summary"]["interruptions"] == 1
    spans = sink.trace(result["traceId"])
    names = Counter(s.name.split(" ")[0] for s in spans)
    assert names["voice_session"] == 1 and names["invoke_agent"] == 3 and names["execute_tool"] == 1
    assert names["voice.connection"] == 2 and names["realtime_inference"] == 3
    assert len({s.span_id for s in spans}) == len(spans)
    turns = sorted((s for s in spans if s.name.startswith("invoke_agent")), key=lambda s: s.start_ns)
    assert [t.attributes["gen_ai.agent.invocation.end_reason"] for t in turns] == [
        "completed", "interrupted", "completed"]
    first_audio = [t.attributes.get("voice.latency.user_to_first_audio_ms") for t in turns]
    assert all(isinstance(v, float) and v > 0 for v in first_audio), first_audio
    root = next(s for s in spans if s.name == "voice_session")
    assert root.attributes["gen_ai.usage.input_tokens"] > 0
    assert "gen_ai.input.messages" in turns[0].attributes
    with gw.client() as client:
        assert accepted_events(client.get("/metrics").text) == page.evaluate("window.demo.stats.accepted")


def test_closing_the_tab_mid_turn_delivers_the_rest_and_the_end_by_beacon(
    browser: Browser, collector: Collector, sink: Sink, gateway_factory: Any
) -> None:
    gw = start_gateway(gateway_factory, collector)
    context = browser.new_context()
    page = context.new_page()
    open_demo(page, gw.url, "speed=10&flush=60000&batch=1000")  # nothing leaves before the tab closes
    ids = page.evaluate("window.demo.start()")
    page.evaluate("window.demo.callTool()")
    recorded = page.evaluate("window.demo.stats.recorded")
    assert page.evaluate("window.demo.stats.pending") > 0
    # Not awaited: the page navigates away mid-call and its context is gone.
    page.evaluate("() => { window.demo.closeTabAbruptly({midTurn: true, navigate: true}); }")
    page.wait_for_url("about:blank")
    context.close()
    spans = sink.trace(ids["traceId"])
    root = next(s for s in spans if s.name == "voice_session")
    assert root.attributes["voice.session.end_reason"] == "user_disconnect"
    assert any(s.name.startswith("execute_tool") for s in spans)
    with gw.client() as client:
        metrics = client.get("/metrics").text
    assert accepted_events(metrics) >= recorded
    assert 'vtg_sessions_ended_total{reason="user_disconnect"} 1.0' in metrics


def test_when_the_gateway_refuses_for_a_while_retries_deliver_every_event_exactly_once(
    page: Page, collector: Collector, sink: Sink, gateway_factory: Any
) -> None:
    # A tight per-session rate makes the real gateway answer 429 with Retry-After during the call.
    gw = start_gateway(gateway_factory, collector, VTG_EVENT_RATE_PER_SESSION="3")
    open_demo(page, gw.url, "speed=10&batch=5&flush=50")
    page.evaluate("window.demo.failRequests(2, 'lost')")  # responses lost after the gateway took the events
    result = page.evaluate("window.demo.runScripted()")
    assert result["summary"] is not None
    stats = page.evaluate("window.demo.stats")
    with gw.client() as client:
        metrics = client.get("/metrics").text
    rate_limited = re.search(r'^vtg_events_rejected_total\{reason="rate-limited"\} (\S+)$', metrics, re.M)
    assert rate_limited and float(rate_limited.group(1)) >= 1, "the gateway never refused: the test proves nothing"
    duplicates = re.search(r"^vtg_events_duplicate_total (\S+)$", metrics, re.M)
    assert duplicates and float(duplicates.group(1)) >= 1, "no lost response was retried"
    assert stats["dropped"] == 0, stats
    # Every recorded event was applied once; the ones whose answer was lost came back as duplicates.
    assert accepted_events(metrics) == stats["recorded"] == stats["accepted"] + stats["duplicates"], stats
    spans = sink.trace(result["traceId"])
    assert len({s.span_id for s in spans}) == len(spans)
    assert Counter(s.name.split(" ")[0] for s in spans)["invoke_agent"] == 3


def test_viewer_renders_the_session_waterfall(page: Page, collector: Collector, sink: Sink,
                                              gateway_factory: Any) -> None:
    gw = start_gateway(gateway_factory, collector)
    open_demo(page, gw.url)
    result = page.evaluate("window.demo.runScripted()")
    page.goto(f"{gw.url}/ui")
    page.wait_for_selector(f"li[data-trace='{result['traceId']}']")
    page.click(f"li[data-trace='{result['traceId']}']")
    page.wait_for_function(f"document.body.dataset.rendered === '{result['traceId']}'")
    page.wait_for_selector("tr[data-span^='execute_tool']")
    rows = page.eval_on_selector_all("tr[data-span]", "rows => rows.map(r => r.dataset.span)")
    assert rows[0] == "voice_session"
    assert sum(r.startswith("invoke_agent") for r in rows) == 3
    assert sum(r.startswith("realtime_inference") for r in rows) == 3
    assert sum(r == "user_speech" for r in rows) >= 1 and sum(r == "voice.connection" for r in rows) == 2
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1400, "height": 900})
    page.screenshot(path=str(ARTIFACTS / "ui-waterfall.png"), full_page=True)
    assert (ARTIFACTS / "ui-waterfall.png").stat().st_size > 10_000
