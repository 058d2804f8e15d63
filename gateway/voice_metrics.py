"""Voice analytics as OpenTelemetry metrics, derived from the spans as they finish.

Every session counts here, sampled or not, so dashboards stay right when
tracing keeps only a fraction of sessions. Labels are low-cardinality only
(provider, model, agent, end reason, modality, latency source, tool name):
never a session or user id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from opentelemetry.metrics import Meter

from gateway import semconv as sc
from gateway.sessions.state import AttrValue, FinishedSpan

_TOKEN_KINDS = (
    ("input", "text", sc.GEN_AI_USAGE_TEXT_INPUT_TOKENS),
    ("input", "audio", sc.GEN_AI_USAGE_AUDIO_INPUT_TOKENS),
    ("input", "cached", sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
    ("output", "text", sc.GEN_AI_USAGE_TEXT_OUTPUT_TOKENS),
    ("output", "audio", sc.GEN_AI_USAGE_AUDIO_OUTPUT_TOKENS),
)
_LATENCY_BUCKETS_S = (0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)


def _kind(span: FinishedSpan) -> str:
    return span.name.split(" ", 1)[0]


class VoiceMetrics:
    def __init__(self, meter: Meter) -> None:
        self.time_to_first_audio = meter.create_histogram(
            "voice.turn.time_to_first_audio", unit="s",
            description="From the end of the user's speech to the first audio of the answer",
            explicit_bucket_boundaries_advisory=_LATENCY_BUCKETS_S,
        )
        self.turn_duration = meter.create_histogram("voice.turn.duration", unit="s", description="Turn duration")
        self.tool_duration = meter.create_histogram(
            "voice.tool.duration", unit="s", description="Tool round trip, call to result"
        )
        self.setup_duration = meter.create_histogram(
            "voice.connection.setup.duration", unit="s", description="Model connection open to setup complete",
            explicit_bucket_boundaries_advisory=_LATENCY_BUCKETS_S,
        )
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Tokens per model response"
        )
        self.sessions = meter.create_counter("voice.sessions", unit="{session}", description="Sessions ended")
        self.turns = meter.create_counter("voice.turns", unit="{turn}", description="Turns ended")
        self.interruptions = meter.create_counter(
            "voice.interruptions", unit="{interruption}", description="Barge-ins"
        )
        self.tokens = meter.create_counter("voice.tokens", unit="{token}", description="Tokens by type and modality")
        self.cost = meter.create_counter("voice.cost", unit="USD", description="Priced usage")

    def observe(self, spans: Iterable[FinishedSpan], labels: Mapping[str, str]) -> None:
        for span in spans:
            kind = _kind(span)
            a = span.attributes
            seconds = (span.end_ns - span.start_ns) / 1e9
            if kind == sc.SPAN_TURN:
                reason = str(a.get(sc.GEN_AI_AGENT_INVOCATION_END_REASON, ""))
                self.turns.add(1, {**labels, "voice.turn.end_reason": reason})
                self.turn_duration.record(seconds, {**labels, "voice.turn.end_reason": reason})
                ttfa = a.get(sc.VOICE_LATENCY_USER_TO_FIRST_AUDIO_MS)
                if isinstance(ttfa, int | float):
                    source = str(a.get(sc.VOICE_LATENCY_SOURCE, "unknown"))
                    self.time_to_first_audio.record(ttfa / 1000, {**labels, sc.VOICE_LATENCY_SOURCE: source})
            elif kind == sc.SPAN_INFERENCE:
                self._usage(a, labels)
            elif kind == sc.SPAN_TOOL:
                outcome = str(a.get(sc.VOICE_TOOL_END_REASON, ""))
                tool = {sc.GEN_AI_TOOL_NAME: str(a.get(sc.GEN_AI_TOOL_NAME, "")), "voice.tool.end_reason": outcome}
                self.tool_duration.record(seconds, {**labels, **tool})
            elif kind == sc.SPAN_CONNECTION:
                setup = a.get(sc.VOICE_CONNECTION_SETUP_MS)
                if isinstance(setup, int | float):
                    self.setup_duration.record(setup / 1000, labels)
            elif kind == sc.SPAN_SESSION:
                self.sessions.add(1, {**labels, sc.VOICE_SESSION_END_REASON: str(a.get(sc.VOICE_SESSION_END_REASON))})
                interruptions = a.get(sc.VOICE_SESSION_INTERRUPTION_COUNT)
                if isinstance(interruptions, int) and interruptions:
                    self.interruptions.add(interruptions, labels)

    def _usage(self, a: Mapping[str, AttrValue], labels: Mapping[str, str]) -> None:
        for token_type, key in (("input", sc.GEN_AI_USAGE_INPUT_TOKENS), ("output", sc.GEN_AI_USAGE_OUTPUT_TOKENS)):
            value = a.get(key)
            if isinstance(value, int):
                self.token_usage.record(value, {**labels, "gen_ai.token.type": token_type,
                                                sc.GEN_AI_OPERATION_NAME: sc.OPERATION_GENERATE_CONTENT})
        for token_type, modality, key in _TOKEN_KINDS:
            value = a.get(key)
            if isinstance(value, int) and value:
                self.tokens.add(value, {**labels, "gen_ai.token.type": token_type, "voice.modality": modality})
        for direction in ("input", "output"):
            usd = a.get(f"voice.cost.{direction}_usd")
            if isinstance(usd, int | float) and usd:
                self.cost.add(float(usd), {**labels, "voice.cost.direction": direction})


def session_labels(provider: str | None, model: str | None, agent: str | None) -> dict[str, str]:
    labels = {}
    if provider:
        labels[sc.GEN_AI_PROVIDER_NAME] = provider
    if model:
        labels[sc.GEN_AI_REQUEST_MODEL] = model
    if agent:
        labels[sc.GEN_AI_AGENT_NAME] = agent
    return labels
