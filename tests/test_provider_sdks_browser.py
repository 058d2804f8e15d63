"""@openai/agents-realtime's browser bundle in headless Chromium: a RealtimeSession over its WebSocket transport
to the local provider server (node, playing the fixtures), traced by the gateway's client and adapter served by
the gateway itself, from a page on another origin (CORS), as an app would. The page is tests/js/sdk/browser.html."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from conftest import REPO
from otlp_sink import Collector, Sink, children, free_port
from playwright.sync_api import Browser, sync_playwright
from test_browser import CHROMIUM, FLAGS
from test_provider_sdks import interruptions, named, openai_usages

ROOTS = {"/static/": REPO / "gateway" / "static", "/sdk/": REPO / "tests" / "js" / "node_modules",
         "/page/": REPO / "tests" / "js" / "sdk", "/fixtures/": REPO / "tests" / "fixtures"}


class AppFiles(SimpleHTTPRequestHandler):
    """The app's origin: its page, the SDK bundle and the gateway's browser client, as an app would host them."""

    extensions_map: ClassVar[dict[str, str]] = {
        **SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript", ".js": "text/javascript"}

    def translate_path(self, path: str) -> str:
        clean = path.split("?", 1)[0]
        for prefix, root in ROOTS.items():
            if clean.startswith(prefix):
                target = (root / clean[len(prefix):]).resolve()
                if target.is_relative_to(root.resolve()):
                    return str(target)
        return str(REPO / "missing")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def app_origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), AppFiles)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def provider() -> Iterator[dict[str, str]]:
    proc = subprocess.Popen(["node", str(REPO / "tests" / "js" / "sdk" / "serve-provider.mjs"), "openai-realtime"],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    urls: dict[str, str] = json.loads(proc.stdout.readline())
    yield urls
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


def test_agents_realtime_session_in_chromium_reaches_the_collector(
    browser: Browser, app_origin: str, provider: dict[str, str], collector: Collector, sink: Sink,
    gateway_factory: Any,
) -> None:
    gw = gateway_factory({
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "VTG_CAPTURE_CONTENT": "all",
        "VTG_CORS_ORIGINS": app_origin,
    })
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{app_origin}/page/browser.html?gateway={gw.url}&provider={provider['httpUrl']}&ws={provider['wsUrl']}")
    page.wait_for_function("window.result || window.failure", timeout=90000)
    assert page.evaluate("window.failure || null") is None, page.evaluate("window.failure")
    result: dict[str, Any] = page.evaluate("window.result")
    assert result["problems"] == [] and errors == []

    spans = sink.trace(result["trace_id"])
    root = next(s for s in spans if s.name == "voice_session")
    [cut] = interruptions(root)
    assert cut["voice.interruption.played_ms"] == result["truncate"]["audio_end_ms"] < 20000
    assert cut["voice.interruption.generated_ms"] == 20000
    usages = openai_usages("turn1_tool_call", "turn1_answer", "turn2_answer", "turn3_answer")
    assert root.attributes["gen_ai.usage.input_tokens"] == sum(u["input_tokens"] for u in usages)
    assert root.attributes["gen_ai.usage.output_tokens"] == sum(u["output_tokens"] for u in usages)
    turns = named(spans, "invoke_agent")
    [tool] = named(spans, "execute_tool")
    assert tool.parent_span_id == turns[0].span_id and tool.attributes["gen_ai.tool.name"] == "get_weather"
    # One inference span per model response: the one that asked for the tool, then the one that answered.
    assert [c.name.split(" ")[0] for c in children(spans, turns[0]) if c.name.startswith("realtime")] == [
        "realtime_inference", "realtime_inference"]
    assert turns[0].attributes["voice.latency.source"] == "provider_vad"
    assert root.attributes["voice.client.sdk"].startswith("voice-trace-js/")


@pytest.fixture
def webrtc_browser() -> Iterator[Browser]:
    # Two peers on one machine: host candidates with their real loopback address (no mDNS names, which
    # nothing resolves here), and audio that may start without a user gesture.
    flags = [*FLAGS, "--disable-features=WebRtcHideLocalIpsWithMdns", "--autoplay-policy=no-user-gesture-required"]
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=flags)
        yield b
        b.close()


def test_agents_realtime_webrtc_transport_against_a_local_peer_in_chromium(
    webrtc_browser: Browser, app_origin: str
) -> None:
    page = webrtc_browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{app_origin}/page/webrtc.html")
    page.wait_for_function("window.result || window.failure", timeout=90000)
    assert page.evaluate("window.failure || null") is None, page.evaluate("window.failure")
    result: dict[str, Any] = page.evaluate("window.result")
    assert result["problems"] == [] and errors == [] and result["warnings"] == []
    assert result["offers"] == 1 and result["iceState"] in {"connected", "completed", "closed"}
    assert result["clientSent"][0] == "session.update"
    seqs = json.loads((REPO / "tests" / "fixtures" / "providers" / "openai-realtime.json").read_text())["sequences"]
    usage = [m["response"]["usage"] for name in ("webrtc_turn1_answer", "webrtc_turn2_answer")
             for m in seqs[name] if m["type"] == "response.done"]
    assert result["events"] == [
        {"type": "connection.open", "connection_id": "conn-1"},
        {"type": "connection.setup_complete"},
        {"type": "user.speech_start", "source": "provider_vad"},
        {"type": "user.speech_end", "source": "provider_vad"},
        {"type": "user.transcript", "text": "What's the weather in Paris?", "final": True},
        {"type": "model.response_start"},
        # WebRTC: the server's output buffer says when its audio plays.
        {"type": "model.audio_start"},
        {"type": "model.playback_start"},
        {"type": "model.transcript", "text": "It's 18 degrees and lightly raining."},
        {"type": "model.usage", "usage": usage[0]},
        {"type": "model.generation_complete"},
        {"type": "model.turn_complete"},
        {"type": "model.playback_end"},
        {"type": "user.speech_start", "source": "provider_vad"},
        {"type": "user.speech_end", "source": "provider_vad"},
        {"type": "user.transcript", "text": "Tell me about the Eiffel Tower.", "final": True},
        {"type": "model.response_start"},
        {"type": "model.audio_start"},
        {"type": "model.playback_start"},
        {"type": "model.transcript", "text": "The Eiffel Tower was built for the 1889 World's Fair."},
        {"type": "model.usage", "usage": usage[1]},
        {"type": "model.generation_complete"},
        {"type": "model.turn_complete"},
        # The user cut the answer while it played: the server truncated it at what was heard.
        {"type": "user.speech_start", "source": "provider_vad"},
        {"type": "model.interrupted", "played_ms": 1500},
        {"type": "connection.close"},
    ]
