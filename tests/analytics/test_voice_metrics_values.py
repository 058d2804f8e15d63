"""The voice metrics, summed per emission, hold exactly what the spans say: counts, token totals, cost sums and
histogram counts and sums, as when every span was recorded one by one."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from gateway import events as ev
from gateway import semconv as sc
from gateway.app import create_app
from gateway.otel_config import load_telemetry
from gateway.sessions.state import FinishedSpan
from gateway.simulate import MODEL, three_turn_session


def test_metrics_after_simulated_sessions_equal_what_their_spans_add_up_to() -> None:
    reader = InMemoryMetricReader()
    telemetry = load_telemetry(env={"OTEL_TRACES_EXPORTER": "none"})
    telemetry.meter_provider = MeterProvider(metric_readers=[reader])
    service = create_app(telemetry).state.service
    metrics = service.voice_metrics
    seen: list[FinishedSpan] = []
    observe = metrics.observe

    def spy(spans: Any, labels: Any) -> None:
        spans = list(spans)
        seen.extend(spans)
        observe(spans, labels)

    metrics.observe = spy
    rng = random.Random(3)

    async def play() -> None:
        for _ in range(3):
            s = await service.start(ev.SessionCreate(provider="gcp.gemini", model=MODEL, agent="a"), None)
            script = three_turn_session(1_800_000_000_000, rng, 0.01)
            for sent_at, batch in script.batches:
                await service.ingest(s["session_id"], batch, sent_at)
            await service.end(s["session_id"], "completed")

    asyncio.run(play())
    data = reader.get_metrics_data()
    assert data is not None
    points = {m.name: list(m.data.data_points) for rm in data.resource_metrics for sm in rm.scope_metrics
              for m in sm.metrics}

    def by(name: str, key: str) -> dict[str, Any]:
        return {str(p.attributes.get(key)): p for p in points[name]}

    turns = [s for s in seen if s.name.startswith(sc.SPAN_TURN)]
    inference = [s for s in seen if s.name.startswith(sc.SPAN_INFERENCE)]
    durations = [p for p in points["voice.turn.duration"]]
    assert sum(p.count for p in durations) == len(turns) == 9
    expected_duration: dict[str, float] = defaultdict(float)
    for s in turns:
        expected_duration[str(s.attributes[sc.GEN_AI_AGENT_INVOCATION_END_REASON])] += (s.end_ns - s.start_ns) / 1e9
    assert {str(p.attributes["voice.turn.end_reason"]): p.sum for p in durations} == expected_duration
    reasons = by("voice.turns", "voice.turn.end_reason")
    assert {k: p.value for k, p in reasons.items()} == {"completed": 6, "interrupted": 3}
    assert [p.value for p in points["voice.sessions"]] == [3]
    assert [p.value for p in points["voice.interruptions"]] == [3]
    usage = by("gen_ai.client.token.usage", "gen_ai.token.type")
    assert usage["input"].count == len(inference)
    assert usage["input"].sum == sum(int(s.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS]) for s in inference)
    assert usage["output"].sum == sum(int(s.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS]) for s in inference)
    audio_in = [p for p in points["voice.tokens"] if p.attributes["voice.modality"] == "audio"
                and p.attributes["gen_ai.token.type"] == "input"]
    assert [p.value for p in audio_in] == [
        sum(int(s.attributes.get(sc.GEN_AI_USAGE_AUDIO_INPUT_TOKENS, 0)) for s in inference)]
    cost_in = 0.0
    for s in inference:  # one by one, in the order they finished: the float sum the counter must hold
        value = s.attributes.get(sc.VOICE_COST_INPUT_USD)
        if isinstance(value, float) and value:
            cost_in += value
    assert by("voice.cost", "voice.cost.direction")["input"].value == cost_in > 0
    assert sum(p.count for p in points["voice.turn.time_to_first_audio"]) == 9
    assert sum(p.count for p in points["voice.tool.duration"]) == 3
    assert sum(p.count for p in points["voice.connection.setup.duration"]) == 6
