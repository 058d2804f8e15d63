"""A recorded call in real headless Chromium: fake microphone from an espeak-ng WAV, the real MediaRecorder, the
real gateway storing the chunks, decoded afterwards with ffmpeg: both channels carry the right side of the call,
aligned with the spans."""

from __future__ import annotations

import array
import json
import statistics
import subprocess
import wave
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import REPO
from otlp_sink import Collector, ReceivedSpan, Sink
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
         "--autoplay-policy=no-user-gesture-required",
         "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
PAGE = (Path(__file__).parent / "call_page.js").read_text()
ARTIFACTS = REPO / "test-artifacts"
RATE = 16000  # decoded for analysis
WINDOW = 0.05  # s per energy window
# The recording may start and stop a little apart from the session's timeline (MediaRecorder's start, the last
# chunk after /end): its length is the root's within this, whatever the machine's speed.
DURATION_TOLERANCE_S = 1.5
MARGIN_S = 0.35  # left out around each span's edges: the detector's lag and the encoder's frame



def speech_wav(text: str, path: Path, before_s: float = 0.0, after_s: float = 0.0, rate: int = 48000) -> Path:
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(raw), "-af",
                    f"adelay={int(before_s * 1000)},apad=pad_dur={after_s}", "-ar", str(rate), "-ac", "1",
                    "-c:a", "pcm_s16le", str(path)], check=True)
    return path


def pcm_of(path: Path) -> tuple[list[int], int]:
    with wave.open(str(path)) as w:
        samples = array.array("h", w.readframes(w.getnframes()))
        return samples.tolist(), w.getframerate()


def energy(path: Path) -> tuple[list[float], list[float]]:
    """Per-window RMS of the left and right channels, 0..1."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "2", "-ar", str(RATE),
                          "-"], check=True, capture_output=True).stdout
    samples = array.array("h", raw)
    per = int(RATE * WINDOW) * 2
    left, right = [], []
    for i in range(0, len(samples) - per + 1, per):
        block = samples[i:i + per]
        left.append((sum(x * x for x in block[0::2]) / (per // 2)) ** 0.5 / 32768)
        right.append((sum(x * x for x in block[1::2]) / (per // 2)) ** 0.5 / 32768)
    return left, right


def split(levels: list[float], ranges: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Windows well inside the ranges, and windows well outside all of them."""
    inside, outside = [], []
    for i, value in enumerate(levels):
        t = (i + 0.5) * WINDOW
        if any(a + MARGIN_S <= t <= b - MARGIN_S for a, b in ranges):
            inside.append(value)
        elif not any(a - MARGIN_S <= t <= b + MARGIN_S for a, b in ranges):
            outside.append(value)
    return inside, outside


def p95(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.95)]


@pytest.fixture
def call_audio(tmp_path: Path) -> tuple[Path, Path]:
    user = speech_wav("Hello. Can you book a table for two tonight?", tmp_path / "user.wav", before_s=1.0,
                      after_s=5.0)
    model = speech_wav("Of course. For what time?", tmp_path / "model.wav", rate=24000)
    return user, model


def test_a_browser_call_is_recorded_in_stereo_aligned_with_its_spans(
    tmp_path: Path, call_audio: tuple[Path, Path], collector: Collector, sink: Sink, gateway_factory: Any
) -> None:
    user_wav, model_wav = call_audio
    gw = gateway_factory({
        "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100", "VTG_CAPTURE_CONTENT": "audio",
        "VTG_RECORDING_STORE": (tmp_path / "recordings").as_uri(),
    })
    model_pcm, model_rate = pcm_of(model_wav)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=[*FLAGS, f"--use-file-for-fake-audio-capture={user_wav}"])
        try:
            page = browser.new_page()
            page_errors: list[str] = []
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.goto(f"{gw.url}/healthz")  # any page of the gateway's origin: the client is imported from it
            result = page.evaluate(PAGE, {"modelPcm": model_pcm, "modelRate": model_rate, "seconds": 12})
            viewer = viewer_plays_the_call(browser.new_page(), gw.url)
        finally:
            browser.close()
    assert page_errors == [] and result["errors"] == [], (page_errors, result["errors"])
    assert result["recorder"]["state"] == "stopped", result["recorder"]
    assert result["turns"] >= 2 and result["summary"]["turns"] == result["turns"]
    stats = result["recorder"]["stats"]
    assert stats["uploaded"] == stats["chunks"] >= 3 and stats["pendingBytes"] == 0

    spans = sink.trace(result["traceId"])
    root = next(s for s in spans if s.name == "voice_session")
    origin_ns = root.attributes["voice.recording.start_time_unix_nano"]

    def offsets(found: list[ReceivedSpan]) -> list[tuple[float, float]]:
        return [((s.start_ns - origin_ns) / 1e9, (s.end_ns - origin_ns) / 1e9) for s in found]

    speech = offsets([s for s in spans if s.name == "user_speech"])
    model = offsets([s for s in spans if s.name.startswith("realtime_inference")])
    assert len(speech) == len(model) == result["turns"]
    turns = [s for s in spans if s.name.startswith("invoke_agent")]
    assert all("#t=" in t.attributes["voice.recording.uri"] for t in turns)

    # The stored recording, fetched by the signed link on the root, as a backend's UI would.
    uri = root.attributes["voice.recording.uri"]
    recording = tmp_path / "call.webm"
    recording.write_bytes(httpx.get(f"{gw.url}{uri}", timeout=30).raise_for_status().content)
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(recording)],
                                      check=True, capture_output=True, text=True).stdout)
    (stream,) = probe["streams"]
    assert stream["codec_type"] == "audio" and stream["codec_name"] == "opus" and stream["channels"] == 2
    assert root.attributes["voice.recording.format"] == result["recorder"]["mimeType"] == "audio/webm;codecs=opus"
    assert root.attributes["voice.recording.channel_layout"] == "stereo: left=user, right=model"

    left, right = energy(recording)
    decoded_s = len(left) * WINDOW
    assert abs(decoded_s - root.attributes["voice.recording.duration_s"]) <= DURATION_TOLERANCE_S, decoded_s

    # Left: the user's voice inside the user-speech spans, near silence everywhere else (the model is not on it).
    inside, outside = split(left, speech)
    assert inside and outside
    assert statistics.median(inside) > 0.02, statistics.median(inside)
    assert p95(outside) < 0.003, p95(outside)
    # Right: the model's voice inside the inference spans, near silence elsewhere (the user is not on it).
    inside, outside = split(right, model)
    assert inside and outside
    assert statistics.median(inside) > 0.02, statistics.median(inside)
    assert p95(outside) < 0.003, p95(outside)

    # The viewer's player: both waveforms drawn from the decoded call; a click on the first user_speech row plays
    # that span's part of the recording.
    assert viewer["state"] == "ready" and viewer["channels"] == 2
    # A silent channel draws a 1-pixel line per column (1200 pixels): speech draws several times that.
    assert all(ink > 3 * 1200 for ink in viewer["ink"]), viewer["ink"]
    assert abs(viewer["duration"] - decoded_s) <= DURATION_TOLERANCE_S
    first_speech = min(speech)
    assert viewer["playing"]["offset"] == pytest.approx(max(0.0, first_speech[0]), abs=0.01)
    assert viewer["playing"]["duration"] == pytest.approx(first_speech[1] - max(0.0, first_speech[0]), abs=0.01)


def viewer_plays_the_call(page: Any, url: str) -> dict[str, Any]:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/ui")
    page.wait_for_selector("#player[data-state=ready]", timeout=30_000)
    rows = page.locator('tr[data-span="user_speech"]')
    rows.first.wait_for()
    # The first by start time (the waterfall lists turns in order, each speech under its turn).
    page.evaluate("""() => {
        const rows = [...document.querySelectorAll('tr[data-span="user_speech"]')];
        rows.sort((a, b) => Number(a.dataset.start) - Number(b.dataset.start));
        rows[0].click();
    }""")
    facts = page.evaluate("""() => {
        const p = window.vtgPlayer;
        const ink = [...document.querySelectorAll('#player canvas.waveform')].map((c) => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
            return n;
        });
        return {state: document.getElementById('player').dataset.state, channels: p.buffer.numberOfChannels,
                duration: p.buffer.duration, ink, playing: p.playing};
    }""")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-player.png"), full_page=True)
    assert errors == [], errors
    return dict(facts)
