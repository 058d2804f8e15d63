"""An OpenAI Realtime call over WebRTC recorded in real headless Chromium: the adapter finds the remote audio track on
the peer connection and hands it to the recorder; the stored call carries the model on the right channel while it
spoke (between output_audio_buffer.started and .stopped) and near silence before and after."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import httpx
from otlp_sink import Collector, Sink
from playwright.sync_api import sync_playwright
from test_browser_recording import CHROMIUM, FLAGS, WINDOW, energy, p95, pcm_of, speech_wav, split

PAGE = (Path(__file__).parent / "webrtc_page.js").read_text()


def test_the_webrtc_remote_track_is_recorded_on_the_right_channel(
    tmp_path: Path, collector: Collector, sink: Sink, gateway_factory: Any
) -> None:
    gw = gateway_factory({
        "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100", "VTG_CAPTURE_CONTENT": "audio",
        "VTG_RECORDING_STORE": (tmp_path / "recordings").as_uri(),
    })
    model_pcm, model_rate = pcm_of(speech_wav("Your table for two is booked for eight.", tmp_path / "m.wav",
                                              rate=24000))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=[*FLAGS, "--disable-features=WebRtcHideLocalIpsWithMdns"])
        try:
            page = browser.new_page()
            page_errors: list[str] = []
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.goto(f"{gw.url}/healthz")
            result = page.evaluate(PAGE, {"modelPcm": model_pcm, "modelRate": model_rate})
        finally:
            browser.close()
    assert page_errors == [] and result["errors"] == [], (page_errors, result["errors"])
    assert result["recorder"]["state"] == "stopped", result["recorder"]
    assert result["summary"]["turns"] == 1

    spans = sink.trace(result["traceId"])
    root = next(s for s in spans if s.name == "voice_session")
    origin_ns = root.attributes["voice.recording.start_time_unix_nano"]
    (turn,) = [s for s in spans if s.name.startswith("invoke_agent")]
    events = {name: t for name, t, _ in turn.events}
    spoke = ((events["voice.first_playback"] - origin_ns) / 1e9, (events["voice.playback_end"] - origin_ns) / 1e9)

    call = tmp_path / "call.webm"
    call.write_bytes(httpx.get(f"{gw.url}{root.attributes['voice.recording.uri']}", timeout=30)
                     .raise_for_status().content)
    left, right = energy(call)
    speaking, quiet = split(right, [spoke])
    assert speaking and len(quiet) * WINDOW >= 1.0
    assert statistics.median(speaking) > 0.02, statistics.median(speaking)
    assert p95(quiet) < 0.003, p95(quiet)
    assert p95(left) < 0.003, p95(left)  # no microphone: the user's side stays silent
