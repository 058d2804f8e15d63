"""/demo recorded in real headless Chromium: the scripted model speaks the demo's speech files through the Gemini
Live adapter, which hands the audio to the recorder itself (no app wiring); the stored call carries the model on
the right channel inside its spans and nothing of it on the left, and playback ends after the speech played."""

from __future__ import annotations

import json
import statistics
import subprocess
import wave
from pathlib import Path
from typing import Any

import httpx
from conftest import REPO
from otlp_sink import Collector, Sink
from playwright.sync_api import sync_playwright
from test_browser_recording import CHROMIUM, FLAGS, WINDOW, energy, p95, split

VOICES = REPO / "gateway" / "static" / "demo-voice"


def silent_wav(path: Path, seconds: float = 2.0, rate: int = 48000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(rate * seconds))
    return path


def duration_s(path: Path) -> float:
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
                           check=True, capture_output=True, text=True).stdout
    return float(json.loads(probe)["format"]["duration"])


def test_the_demo_model_speaks_into_the_recordings_right_channel(
    tmp_path: Path, collector: Collector, sink: Sink, gateway_factory: Any
) -> None:
    gw = gateway_factory({
        "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100", "VTG_CAPTURE_CONTENT": "audio",
        "VTG_RECORDING_STORE": (tmp_path / "recordings").as_uri(),
    })
    mic = silent_wav(tmp_path / "silence.wav")  # the user stays quiet: the left channel must too
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=[*FLAGS, f"--use-file-for-fake-audio-capture={mic}"])
        try:
            page = browser.new_page()
            page_errors: list[str] = []
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.goto(f"{gw.url}/demo?record=1")
            page.wait_for_function("window.demo && window.demo.state")
            result = page.evaluate("window.demo.runScripted()")
            recorder_state = page.evaluate("window.demo.recording.done")
            recording = page.evaluate("({state: window.demo.recording.state, stats: window.demo.recording.stats})")
            errors = page.evaluate("window.demo.state.errors")
        finally:
            browser.close()
    assert page_errors == [] and errors == [], (page_errors, errors)
    assert recorder_state == "stopped", recording
    assert recording["stats"]["uploaded"] == recording["stats"]["chunks"] >= 3
    assert result["summary"]["turns"] == 3 and result["summary"]["interruptions"] == 1

    spans = sink.trace(result["traceId"])
    root = next(s for s in spans if s.name == "voice_session")
    origin_ns = root.attributes["voice.recording.start_time_unix_nano"]
    turns = sorted((s for s in spans if s.name.startswith("invoke_agent")), key=lambda s: s.start_ns)
    inference = [s for s in spans if s.name.startswith("realtime_inference")]
    assert len(turns) == 3 and len(inference) == 3

    # Playback follows the real audio: each answer that was not cut ends playing no sooner than its speech file
    # lasts after its first chunk arrived (a late timer on a loaded machine only makes it later).
    for turn, voice in ((turns[0], "weather"), (turns[2], "tomorrow")):
        events = {name: t for name, t, _ in turn.events}
        (generation,) = [s for s in inference if s.parent_span_id == turn.span_id]
        first_audio = next(t for name, t, _ in generation.events if name == "voice.first_audio")
        assert first_audio <= events["voice.first_playback"] <= events["voice.playback_end"]
        played_s = (events["voice.playback_end"] - first_audio) / 1e9
        assert played_s >= duration_s(VOICES / f"{voice}.ogg") - 0.05, (voice, played_s)
    assert "voice.playback_end" not in {name for name, _, _ in turns[1].events}  # the barge-in cut it

    call = tmp_path / "call.webm"
    call.write_bytes(httpx.get(f"{gw.url}{root.attributes['voice.recording.uri']}", timeout=30)
                     .raise_for_status().content)
    left, right = energy(call)
    assert abs(len(right) * WINDOW - root.attributes["voice.recording.duration_s"]) <= 1.5

    def offsets(found: list[Any]) -> list[tuple[float, float]]:
        return [((s.start_ns - origin_ns) / 1e9, (s.end_ns - origin_ns) / 1e9) for s in found]

    def heard(turn: Any) -> tuple[float, float]:
        # From the turn's first generation until its audio played out (the playback_end event, when it was not
        # cut: the turn's span itself ends with the generation).
        mine = [s for s in inference if s.parent_span_id == turn.span_id]
        end_ns = max([*(s.end_ns for s in mine), *(t for name, t, _ in turn.events if name == "voice.playback_end")])
        return (min(s.start_ns for s in mine) - origin_ns) / 1e9, (end_ns - origin_ns) / 1e9

    # Right: the model's speech while it generates, silence whenever it is not speaking (the user's parts of each
    # turn, after the barge-in cut it, after the last answer).
    speaking, _ = split(right, offsets(inference))
    _, quiet = split(right, [heard(t) for t in turns])
    assert speaking and len(quiet) * WINDOW >= 1.0, len(quiet)
    assert statistics.median(speaking) > 0.02, statistics.median(speaking)
    assert p95(quiet) < 0.003, p95(quiet)
    # Left: the (silent) microphone only; none of the model leaks onto the user's side.
    assert p95(left) < 0.003, p95(left)
