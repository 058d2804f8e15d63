"""Synthetic voice sessions against a running gateway: the quickest way to see traces.

Each session follows what a browser on Gemini Live reports: a connection, a
first turn with a tool call, a second turn the user interrupts (followed, as
Gemini does, by the interrupted generation's own turnComplete), a goAway and
a reconnect with session resumption, a third turn, Gemini ``usageMetadata``
in every turn, and the last batch plus the end sent beacon-style
(``text/plain``, token in the query). Client timestamps follow a virtual
clock and every batch carries ``sent_at``, so span durations are the
scenario's, not the network's.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from tqdm import tqdm

MODEL = "gemini-live-2.5-flash-preview"


def gemini_usage(text_in: int, audio_in: int, audio_out: int, text_out: int = 0, cached: int = 0) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "promptTokenCount": text_in + audio_in,
        "responseTokenCount": audio_out + text_out,
        "totalTokenCount": text_in + audio_in + audio_out + text_out,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": text_in},
                                {"modality": "AUDIO", "tokenCount": audio_in}],
        "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": audio_out}]
        + ([{"modality": "TEXT", "tokenCount": text_out}] if text_out else []),
    }
    if cached:
        usage["cachedContentTokenCount"] = cached
    return usage


@dataclass
class ScriptedSession:
    """A session's events as batches, each sent at a virtual time (ms)."""

    batches: list[tuple[float, list[dict[str, Any]]]] = field(default_factory=list)
    end_at: float = 0.0
    tool_duration_ms: float = 0.0

    def all_events(self) -> list[dict[str, Any]]:
        return [e for _, batch in self.batches for e in batch]


class _Clock:
    def __init__(self, start_ms: float, scale: float) -> None:
        self.now = start_ms
        self.scale = scale
        self.seq = 0
        self.batch: list[dict[str, Any]] = []

    def emit(self, kind: str, after_ms: float = 0, **fields: Any) -> dict[str, Any]:
        self.now += after_ms * self.scale
        self.seq += 1
        event = {"type": kind, "id": f"e{self.seq}-{uuid.uuid4().hex[:8]}", "seq": self.seq, "ts": self.now, **fields}
        self.batch.append(event)
        return event


def three_turn_session(start_ms: float, rng: random.Random | None = None, scale: float = 1.0) -> ScriptedSession:
    """The scenario's gaps are realistic seconds multiplied by ``scale`` (0.05 plays a 20 s call in 1 s)."""
    rng = rng or random.Random()
    c = _Clock(start_ms, scale)
    script = ScriptedSession()

    def flush() -> None:
        script.batches.append((c.now, c.batch))
        c.batch = []

    j = rng.uniform
    c.emit("connection.open", 5, connection_id="conn-1")
    c.emit("connection.setup_complete", j(80, 200))
    flush()
    # Turn 1: a question that needs a tool.
    c.emit("user.speech_start", j(300, 900))
    c.emit("user.transcript", j(400, 800), text="What's the weather ", final=False)
    c.emit("user.transcript", j(300, 600), text="in Paris?", final=True)
    c.emit("user.speech_end", j(100, 300))
    c.emit("model.response_start", j(250, 500))
    call = c.emit("tool.call", j(20, 60), call_id="call-1", name="get_weather", arguments={"city": "Paris"})
    result = c.emit("tool.result", j(150, 600), call_id="call-1", result={"temp_c": 18, "sky": "cloudy"})
    script.tool_duration_ms = result["ts"] - call["ts"]
    c.emit("model.audio_start", j(200, 400))
    c.emit("model.playback_start", j(20, 60))
    c.emit("model.transcript", j(300, 900), text="It's 18 degrees and cloudy in Paris.")
    c.emit("model.generation_complete", j(500, 1500))
    c.emit("model.usage", 5, usage=gemini_usage(24, 310, 420))
    # Gemini sends turnComplete once it reckons the audio has played out; the player says so first.
    c.emit("model.playback_end", j(150, 600))
    c.emit("model.turn_complete", j(20, 200))
    flush()
    # Turn 2: the user barges in while the model is talking.
    c.emit("user.transcript", j(800, 2000), text="Tell me a long story about the sea.", final=True)
    c.emit("model.response_start", j(300, 600))
    c.emit("model.audio_start", j(150, 350))
    c.emit("model.playback_start", j(20, 60))
    c.emit("model.transcript", j(500, 1500), text="Once upon a time, far out at sea,")
    c.emit("model.usage", j(100, 400), usage=gemini_usage(40, 280, 650))
    played = j(1500, 3000)
    c.emit("model.interrupted", played, played_ms=round(played), generated_ms=round(played + j(500, 2000)))
    c.emit("model.turn_complete", j(5, 40))  # Gemini: "interrupted > turn_complete"
    flush()
    # The server warns it will close the connection; the client resumes on a new one.
    c.emit("connection.go_away", j(1000, 3000), time_left_ms=10_000)
    c.emit("connection.close", j(200, 800), code=1000, reason="go away")
    c.emit("connection.open", j(50, 200), connection_id="conn-2")
    c.emit("connection.resumed", j(50, 150), handle="resume-" + uuid.uuid4().hex[:12])
    c.emit("connection.setup_complete", j(50, 150))
    flush()
    # Turn 3: a short follow-up.
    c.emit("user.speech_start", j(500, 1500))
    c.emit("user.speech_end", j(600, 1400))
    c.emit("user.transcript", j(50, 200), text="Thanks, bye!", final=True)
    c.emit("model.response_start", j(250, 500))
    c.emit("model.audio_start", j(150, 350))
    c.emit("model.transcript", j(200, 500), text="Goodbye!")
    c.emit("model.usage", j(300, 600), usage=gemini_usage(12, 95, 60, cached=64))
    c.emit("model.turn_complete", j(100, 300))
    c.emit("connection.close", j(100, 300), code=1000, reason="client hangup")
    flush()
    script.end_at = c.now + 50 * scale
    return script


@dataclass
class SimulationReport:
    sessions: int = 0
    events: int = 0
    requests: int = 0
    failures: int = 0
    trace_ids: list[str] = field(default_factory=list)


async def _until(virtual_ms: float) -> None:
    """Never send a batch before its events happened: a client's clock does not run ahead of real time."""
    delay = virtual_ms / 1000 - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def run_session(client: httpx.AsyncClient, url: str, report: SimulationReport, rng: random.Random,
                      scale: float = 0.05, agent: str = "weather-assistant") -> dict[str, Any]:
    created = (await client.post(f"{url}/v1/sessions", json={
        "user_id": f"user-{rng.randrange(1000)}", "provider": "gcp.gemini", "model": MODEL,
        "agent": agent, "tags": ["simulated"], "client": {"sdk": "voice-trace-gateway-simulate"},
    })).raise_for_status().json()
    report.requests += 1
    sid, token = created["session_id"], created["token"]
    script = three_turn_session(time.time() * 1000, rng, scale)
    *batches, last = script.batches
    for sent_at, events in batches:
        await _until(sent_at)
        r = await client.post(f"{url}/v1/sessions/{sid}/events", json={"events": events, "sent_at": sent_at},
                              headers={"authorization": f"Bearer {token}"})
        report.requests += 1
        report.events += len(events)
        if r.status_code != 202:
            report.failures += 1
    # The page's last words, as sendBeacon would send them.
    await _until(script.end_at)
    body = json.dumps({"reason": "user_disconnect", "ts": script.end_at, "events": last[1], "sent_at": last[0]})
    r = await client.post(f"{url}/v1/sessions/{sid}/end", params={"token": token}, content=body,
                          headers={"content-type": "text/plain;charset=UTF-8"})
    report.requests += 1
    report.events += len(last[1])
    if r.status_code != 200:
        report.failures += 1
    report.sessions += 1
    report.trace_ids.append(created["trace_id"])
    return dict(r.json())


async def simulate(url: str, sessions: int, concurrency: int, progress: bool = True,
                   seed: int | None = None, scale: float = 0.05) -> SimulationReport:
    url = url.rstrip("/")
    report = SimulationReport()
    rng = random.Random(seed)
    limit = asyncio.Semaphore(max(1, concurrency))
    bar = tqdm(total=sessions, unit="session", disable=not progress)

    async def one(client: httpx.AsyncClient) -> None:
        async with limit:
            try:
                await run_session(client, url, report, rng, scale)
            except httpx.HTTPError as exc:
                report.failures += 1
                bar.write(f"session failed: {exc}")
            bar.update(1)

    limits = httpx.Limits(max_connections=max(1, concurrency))
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(one(client) for _ in range(sessions)))
    bar.close()
    return report


def iter_lines(report: SimulationReport, elapsed_s: float) -> Iterator[str]:
    yield (f"sent {report.sessions} sessions, {report.events} events in {report.requests} requests "
           f"({report.failures} failed) in {elapsed_s:.2f} s")
    for trace_id in report.trace_ids[:10]:
        yield f"  trace {trace_id}"
    if len(report.trace_ids) > 10:
        yield f"  ... and {len(report.trace_ids) - 10} more traces"
