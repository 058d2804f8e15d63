"""The voice metrics, summed per emission, hold exactly what the spans say: counts, token totals, cost sums and
histogram counts and sums, as when every span was recorded one by one."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from typing import Any

from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from gateway import events as ev
from gateway import semconv as sc
from gateway.analytics.voice_metrics import VoiceMetrics
from gateway.app import create_app
from gateway.otel_config import load_telemetry
from gateway.sessions.state import FinishedSpan
from gateway.simulate import MODEL, three_turn_session

LATENCY = (0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)  # the latency histograms' buckets


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


def _one_by_one(meter_provider: MeterProvider, emissions: list[tuple[list[FinishedSpan], dict[str, str]]]) -> None:
    """The metrics as the plain reading of their definitions gives them: one SDK call per value and span."""
    meter = meter_provider.get_meter("test")
    hist = {name: meter.create_histogram(name, unit=unit, **kw) for name, unit, kw in (
        ("voice.turn.time_to_first_audio", "s", {"explicit_bucket_boundaries_advisory": LATENCY}),
        ("voice.turn.duration", "s", {}), ("voice.tool.duration", "s", {}),
        ("voice.connection.setup.duration", "s", {"explicit_bucket_boundaries_advisory": LATENCY}),
        ("gen_ai.client.token.usage", "{token}", {}))}
    sums: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)

    def count(name: str, labels: dict[str, str], value: float) -> None:
        key = tuple(sorted(labels.items()))
        sums[name][key] = sums[name].get(key, 0) + value

    for spans, labels in emissions:
        for s in spans:
            a, seconds = s.attributes, (s.end_ns - s.start_ns) / 1e9
            if s.name.startswith(sc.SPAN_TURN + " "):
                turn = {**labels, "voice.turn.end_reason": str(a[sc.GEN_AI_AGENT_INVOCATION_END_REASON])}
                count("voice.turns", turn, 1)
                hist["voice.turn.duration"].record(seconds, turn)
                if sc.VOICE_LATENCY_USER_TO_FIRST_AUDIO_MS in a:
                    hist["voice.turn.time_to_first_audio"].record(
                        float(a[sc.VOICE_LATENCY_USER_TO_FIRST_AUDIO_MS]) / 1000,
                        {**labels, sc.VOICE_LATENCY_SOURCE: str(a.get(sc.VOICE_LATENCY_SOURCE, "unknown"))})
            elif s.name.startswith(sc.SPAN_INFERENCE + " "):
                for token_type in ("input", "output"):
                    hist["gen_ai.client.token.usage"].record(
                        int(a[f"gen_ai.usage.{token_type}_tokens"]),
                        {**labels, "gen_ai.token.type": token_type, sc.GEN_AI_OPERATION_NAME: "generate_content"})
                for token_type, modality, key in (
                        ("input", "text", sc.GEN_AI_USAGE_TEXT_INPUT_TOKENS),
                        ("input", "audio", sc.GEN_AI_USAGE_AUDIO_INPUT_TOKENS),
                        ("input", "cached", sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
                        ("output", "text", sc.GEN_AI_USAGE_TEXT_OUTPUT_TOKENS),
                        ("output", "audio", sc.GEN_AI_USAGE_AUDIO_OUTPUT_TOKENS)):
                    if a.get(key):
                        count("voice.tokens", {**labels, "gen_ai.token.type": token_type, "voice.modality": modality},
                              int(a[key]))
                for direction in ("input", "output"):
                    if a.get(f"voice.cost.{direction}_usd"):
                        count("voice.cost", {**labels, "voice.cost.direction": direction},
                              float(a[f"voice.cost.{direction}_usd"]))
            elif s.name.startswith(sc.SPAN_TOOL + " "):
                hist["voice.tool.duration"].record(seconds, {**labels, sc.GEN_AI_TOOL_NAME: str(a[sc.GEN_AI_TOOL_NAME]),
                                                             "voice.tool.end_reason": str(a[sc.VOICE_TOOL_END_REASON])})
            elif s.name == sc.SPAN_CONNECTION and sc.VOICE_CONNECTION_SETUP_MS in a:
                hist["voice.connection.setup.duration"].record(float(a[sc.VOICE_CONNECTION_SETUP_MS]) / 1000, labels)
            elif s.name == sc.SPAN_SESSION:
                reason = sc.metric_end_reason(str(a[sc.VOICE_SESSION_END_REASON]))
                count("voice.sessions", {**labels, sc.VOICE_SESSION_END_REASON: reason}, 1)
                if a.get(sc.VOICE_SESSION_INTERRUPTION_COUNT):
                    count("voice.interruptions", labels, int(a[sc.VOICE_SESSION_INTERRUPTION_COUNT]))
    for name, series in sums.items():
        def observe(options: Any, series: dict[tuple[tuple[str, str], ...], float] = series) -> list[Observation]:
            return [Observation(v, dict(k)) for k, v in series.items()]
        meter.create_observable_counter(name, callbacks=[observe])


def _points(reader: InMemoryMetricReader) -> dict[tuple[str, tuple[tuple[str, Any], ...]], tuple[Any, ...]]:
    data = reader.get_metrics_data()
    assert data is not None
    out = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    if isinstance(p, HistogramDataPoint):
                        value: tuple[Any, ...] = (p.count, p.sum, p.min, p.max, p.bucket_counts, p.explicit_bounds)
                    else:
                        value = (p.value,)
                    out[(m.name, tuple(sorted(p.attributes.items())))] = value
    return out


def test_every_exported_point_is_what_one_sdk_call_per_span_and_value_gives() -> None:
    telemetry = load_telemetry(env={"OTEL_TRACES_EXPORTER": "none"})
    service = create_app(telemetry).state.service
    emissions: list[tuple[list[FinishedSpan], dict[str, str]]] = []
    service.voice_metrics = None

    emit = service._emit

    def spy(emission: Any) -> None:
        if emission.finished:
            emissions.append((list(emission.finished), dict(emission.labels)))
        emit(emission)

    service._emit = spy
    rng = random.Random(11)

    async def play() -> None:
        for i in range(4):
            agent = ["a", "b"][i % 2]
            s = await service.start(ev.SessionCreate(provider="gcp.gemini", model=MODEL, agent=agent), None)
            script = three_turn_session(1_800_000_000_000 + i * 10**12, rng, 0.01)
            for sent_at, batch in script.batches:
                await service.ingest(s["session_id"], batch, sent_at)
            await service.end(s["session_id"], ["completed", "user_hangup"][i % 2])

    asyncio.run(play())
    assert {s.name.split(" ")[0] for spans, _ in emissions for s in spans} >= {
        sc.SPAN_TURN, sc.SPAN_INFERENCE, sc.SPAN_TOOL, sc.SPAN_CONNECTION, sc.SPAN_SESSION}
    together, one_by_one = InMemoryMetricReader(), InMemoryMetricReader()
    metrics = VoiceMetrics(MeterProvider(metric_readers=[together]).get_meter("test"))
    for spans, labels in emissions:
        metrics.observe(spans, labels)
    _one_by_one(MeterProvider(metric_readers=[one_by_one]), emissions)
    got, expected = _points(together), _points(one_by_one)
    assert len(got) > 20
    assert got == expected
