"""Voice analytics as OpenTelemetry metrics, derived from the spans as they finish.

Every session counts here, sampled or not, so dashboards stay right when
tracing keeps only a fraction of sessions. Labels are low-cardinality only
(provider, model, agent, end reason, modality, latency source, tool name):
never a session or user id.

Counters are summed here in plain dicts and read by observable instruments
when the metric reader collects (once per export interval): one emission (the
spans a request finished) is summed locally and added under one lock per
counter, instead of an SDK call per counter and span. Histogram values are
gathered per series over the emission and recorded series by series
(``gateway.analytics.histograms``: what ``record`` would make of each value, at
a fraction of its cost). Label sets are built once and cached, as are each
session's base labels.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation

from gateway import semconv as sc
from gateway.analytics.histograms import HistogramRecorder
from gateway.sessions.state import AttrValue, FinishedSpan

_TOKEN_KINDS = (
    ("input", "text", sc.GEN_AI_USAGE_TEXT_INPUT_TOKENS),
    ("input", "audio", sc.GEN_AI_USAGE_AUDIO_INPUT_TOKENS),
    ("input", "cached", sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
    ("output", "text", sc.GEN_AI_USAGE_TEXT_OUTPUT_TOKENS),
    ("output", "audio", sc.GEN_AI_USAGE_AUDIO_OUTPUT_TOKENS),
)
_LATENCY_BUCKETS_S = (0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)
Labels = tuple[tuple[str, str], ...]
MAX_VALUES_PER_LABEL = 100
_OPERATION = (sc.GEN_AI_OPERATION_NAME, sc.OPERATION_GENERATE_CONTENT)


def _kind(span: FinishedSpan) -> str:
    return span.name.split(" ", 1)[0]


class _Sums:
    """Cumulative sums by label set, for an observable counter's callback."""

    def __init__(self) -> None:
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()  # the reader's callback runs on its own thread

    def add(self, labels: Labels, value: float) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0) + value

    def add_all(self, increments: Mapping[Labels, list[float]]) -> None:
        """Each label set's increments in the order they came: float sums come out as they did one by one."""
        with self._lock:
            values = self._values
            for labels, added in increments.items():
                total = values.get(labels, 0)
                for value in added:
                    total += value
                values[labels] = total

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            items = list(self._values.items())
        return [Observation(value, dict(labels)) for labels, value in items]


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
        self.sessions, self.turns, self.interruptions, self.tokens, self.cost = (_Sums() for _ in range(5))
        for name, unit, description, sums in (
            ("voice.sessions", "{session}", "Sessions ended", self.sessions),
            ("voice.turns", "{turn}", "Turns ended", self.turns),
            ("voice.interruptions", "{interruption}", "Barge-ins", self.interruptions),
            ("voice.tokens", "{token}", "Tokens by type and modality", self.tokens),
            ("voice.cost", "USD", "Priced usage", self.cost),
        ):
            meter.create_observable_counter(name, callbacks=[sums.observe], unit=unit, description=description)
        self._seen_values: dict[str, set[str]] = {}
        self._bases: dict[tuple[tuple[str, str], ...], Labels] = {}
        self._histograms = HistogramRecorder()

    def _bounded(self, key: str, value: str) -> str:
        """Provider, model, agent and tool names come from clients: the first MAX_VALUES_PER_LABEL values of
        each keep their series, later ones share "other", so a client inventing names cannot grow memory here
        or in the backend without bound."""
        seen = self._seen_values.setdefault(key, set())
        if value in seen:
            return value
        if len(seen) < MAX_VALUES_PER_LABEL:
            seen.add(value)
            return value
        return sc.END_OTHER

    def _base(self, labels: Mapping[str, str]) -> Labels:
        """The session's labels, bounded and sorted: cached, since a value once kept (or sent to "other") stays
        so."""
        key = tuple(labels.items())
        base = self._bases.get(key)
        if base is None:
            if len(self._bases) > 10_000:
                self._bases.clear()
            base = self._bases[key] = tuple(sorted((k, self._bounded(k, v)) for k, v in labels.items()))
        return base

    def observe(self, spans: Iterable[FinishedSpan], labels: Mapping[str, str]) -> None:
        base = self._base(labels)
        # This emission's counter increments and histogram values by series, recorded together at the end.
        pending: dict[_Sums, dict[Labels, list[float]]] = {}
        values: dict[tuple[Histogram, Labels], list[float]] = {}
        for span in spans:
            kind = _kind(span)
            a = span.attributes
            if kind == sc.SPAN_TURN:
                with_reason = (*base, ("voice.turn.end_reason", str(a.get(sc.GEN_AI_AGENT_INVOCATION_END_REASON))))
                _count(pending, self.turns, with_reason, 1)
                _add(values, self.turn_duration, with_reason, (span.end_ns - span.start_ns) / 1e9)
                ttfa = a.get(sc.VOICE_LATENCY_USER_TO_FIRST_AUDIO_MS)
                if isinstance(ttfa, int | float):
                    source = (sc.VOICE_LATENCY_SOURCE, str(a.get(sc.VOICE_LATENCY_SOURCE, "unknown")))
                    _add(values, self.time_to_first_audio, (*base, source), ttfa / 1000)
            elif kind == sc.SPAN_INFERENCE:
                self._usage(a, base, pending, values)
            elif kind == sc.SPAN_TOOL:
                name = self._bounded(sc.GEN_AI_TOOL_NAME, str(a.get(sc.GEN_AI_TOOL_NAME, "")))
                tool = (*base, (sc.GEN_AI_TOOL_NAME, name),
                        ("voice.tool.end_reason", str(a.get(sc.VOICE_TOOL_END_REASON, ""))))
                _add(values, self.tool_duration, tool, (span.end_ns - span.start_ns) / 1e9)
            elif kind == sc.SPAN_CONNECTION:
                setup = a.get(sc.VOICE_CONNECTION_SETUP_MS)
                if isinstance(setup, int | float):
                    _add(values, self.setup_duration, base, setup / 1000)
            elif kind == sc.SPAN_SESSION:
                reason = sc.metric_end_reason(str(a.get(sc.VOICE_SESSION_END_REASON)))
                _count(pending, self.sessions, (*base, (sc.VOICE_SESSION_END_REASON, reason)), 1)
                interruptions = a.get(sc.VOICE_SESSION_INTERRUPTION_COUNT)
                if isinstance(interruptions, int) and interruptions:
                    _count(pending, self.interruptions, base, interruptions)
        if values:
            self._histograms.record(values)
        for sums, increments in pending.items():
            sums.add_all(increments)

    def _usage(self, a: Mapping[str, AttrValue], base: Labels, pending: dict[_Sums, dict[Labels, list[float]]],
               values: dict[tuple[Histogram, Labels], list[float]]) -> None:
        for token_type, key in (("input", sc.GEN_AI_USAGE_INPUT_TOKENS), ("output", sc.GEN_AI_USAGE_OUTPUT_TOKENS)):
            value = a.get(key)
            if isinstance(value, int):
                _add(values, self.token_usage, (*base, ("gen_ai.token.type", token_type), _OPERATION), value)
        for token_type, modality, key in _TOKEN_KINDS:
            value = a.get(key)
            if isinstance(value, int) and value:
                labels = (*base, ("gen_ai.token.type", token_type), ("voice.modality", modality))
                _count(pending, self.tokens, labels, value)
        for direction, key in (("input", sc.VOICE_COST_INPUT_USD), ("output", sc.VOICE_COST_OUTPUT_USD)):
            usd = a.get(key)
            if isinstance(usd, int | float) and usd:
                _count(pending, self.cost, (*base, ("voice.cost.direction", direction)), float(usd))


def _add(values: dict[tuple[Histogram, Labels], list[float]], histogram: Histogram, labels: Labels,
         value: float) -> None:
    series = values.get((histogram, labels))
    if series is None:
        values[(histogram, labels)] = [value]
    else:
        series.append(value)


def _count(pending: dict[_Sums, dict[Labels, list[float]]], sums: _Sums, labels: Labels, value: float) -> None:
    values = pending.get(sums)
    if values is None:
        values = pending[sums] = {}
    added = values.get(labels)
    if added is None:
        values[labels] = [value]
    else:
        added.append(value)


def session_labels(provider: str | None, model: str | None, agent: str | None) -> dict[str, str]:
    labels = {}
    if provider:
        labels[sc.GEN_AI_PROVIDER_NAME] = provider
    if model:
        labels[sc.GEN_AI_REQUEST_MODEL] = model
    if agent:
        labels[sc.GEN_AI_AGENT_NAME] = agent
    return labels

