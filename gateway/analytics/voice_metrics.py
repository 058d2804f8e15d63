"""Voice analytics as OpenTelemetry metrics, derived from the spans as they finish.

Every session counts here, sampled or not, so dashboards stay right when
tracing keeps only a fraction of sessions. Labels are low-cardinality only
(provider, model, agent, end reason, modality, latency source, tool name):
never a session or user id.

Counters are summed here in plain dicts and read by observable instruments
when the metric reader collects (once per export interval): one emission (the
spans a request finished) is summed locally and added under one lock per
series, instead of an SDK call per counter and span. Histogram values are
gathered per series over the emission and recorded series by series
(``gateway.analytics.histograms``: what ``record`` would make of each value, at
a fraction of its cost). A session's base labels and every series built on them
(label tuples, histogram series with their plans) are made once and cached per
base, so a span costs a few lookups; the pending sums and values of an emission
are keyed by those series objects, which hash by identity.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar, cast

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from gateway import semconv as sc
from gateway.analytics.histograms import HistogramRecorder, Series
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


class _Sums:
    """Cumulative sums by label set, for an observable counter's callback."""

    def __init__(self) -> None:
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()  # the reader's callback runs on its own thread

    def add_all(self, labels: Labels, added: list[float]) -> None:
        """A label set's increments in the order they came: float sums come out as they did one by one."""
        with self._lock:
            values = self._values
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
        self._bases: dict[tuple[tuple[str, str], ...], _Base] = {}
        self._kinds: dict[str, str] = {}  # span name -> its kind ("invoke_agent weather" -> "invoke_agent")
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

    def _base(self, labels: Mapping[str, str]) -> _Base:
        """The session's labels, bounded and sorted, with the series built on them: cached, since a value once
        kept (or sent to "other") stays so."""
        key = tuple(labels.items())
        base = self._bases.get(key)
        if base is None:
            if len(self._bases) > 10_000:
                self._bases.clear()
            base = self._bases[key] = _Base(self, tuple(sorted((k, self._bounded(k, v)) for k, v in labels.items())))
        return base

    def observe(self, spans: Iterable[FinishedSpan], labels: Mapping[str, str]) -> None:
        base = self._base(labels)
        # This emission's counter increments and histogram values by series (one session's spans: one base),
        # recorded together at the end.
        counted: dict[_Counted, list[float]] = {}
        values: dict[Series, list[float]] = {}
        kinds = self._kinds
        for span in spans:
            kind = kinds.get(span.name)
            if kind is None:
                kind = self._kind(span.name)
            a = span.attributes
            if kind == sc.SPAN_INFERENCE:
                self._usage(a, base, counted, values)
            elif kind == sc.SPAN_TURN:
                turns, durations = base.turn(str(a.get(sc.GEN_AI_AGENT_INVOCATION_END_REASON)))
                _add(counted, turns, 1)
                _add(values, durations, (span.end_ns - span.start_ns) / 1e9)
                ttfa = a.get(sc.VOICE_LATENCY_USER_TO_FIRST_AUDIO_MS)
                if isinstance(ttfa, int | float):
                    _add(values, base.first_audio(str(a.get(sc.VOICE_LATENCY_SOURCE, "unknown"))), ttfa / 1000)
            elif kind == sc.SPAN_TOOL:
                tool = base.tool(str(a.get(sc.GEN_AI_TOOL_NAME, "")), str(a.get(sc.VOICE_TOOL_END_REASON, "")))
                _add(values, tool, (span.end_ns - span.start_ns) / 1e9)
            elif kind == sc.SPAN_CONNECTION:
                setup = a.get(sc.VOICE_CONNECTION_SETUP_MS)
                if isinstance(setup, int | float):
                    _add(values, base.setup, setup / 1000)
            elif kind == sc.SPAN_SESSION:
                _add(counted, base.session(sc.metric_end_reason(str(a.get(sc.VOICE_SESSION_END_REASON)))), 1)
                interruptions = a.get(sc.VOICE_SESSION_INTERRUPTION_COUNT)
                if isinstance(interruptions, int) and interruptions:
                    _add(counted, base.interruptions, interruptions)
        if values:
            self._histograms.record_series(values.items())
        for series, added in counted.items():
            series.sums.add_all(series.labels, added)

    def _kind(self, name: str) -> str:
        kind = name.split(" ", 1)[0]
        if len(self._kinds) >= 1024:  # span names come from clients too (tool names)
            self._kinds.clear()
        self._kinds[name] = kind
        return kind

    def _usage(self, a: Mapping[str, AttrValue], base: _Base, counted: dict[_Counted, list[float]],
               values: dict[Series, list[float]]) -> None:
        get = a.get
        for key, series in base.usage:
            value = get(key)
            if isinstance(value, int):
                _add(values, series, value)
        for key, counter in base.tokens:
            value = get(key)
            if isinstance(value, int) and value:
                _add(counted, counter, value)
        for key, counter in base.cost:
            usd = get(key)
            if isinstance(usd, int | float) and usd:
                _add(counted, counter, float(usd))


class _Counted:
    """One counter series: its sums and label set."""

    __slots__ = ("labels", "sums")

    def __init__(self, sums: _Sums, labels: Labels) -> None:
        self.sums, self.labels = sums, labels


class _Base:
    """A session's base label set and the series built on it, made once: the label sets a span adds to are
    tuples that cost more to build and hash than the value they carry."""

    __slots__ = ("_by_value", "_metrics", "base", "cost", "interruptions", "setup", "tokens", "usage")

    def __init__(self, metrics: VoiceMetrics, base: Labels) -> None:
        self._metrics, self.base = metrics, base
        self.usage = tuple((key, Series(metrics.token_usage, (*base, ("gen_ai.token.type", token_type), _OPERATION)))
                           for token_type, key in (("input", sc.GEN_AI_USAGE_INPUT_TOKENS),
                                                   ("output", sc.GEN_AI_USAGE_OUTPUT_TOKENS)))
        self.tokens = tuple(
            (key, _Counted(metrics.tokens, (*base, ("gen_ai.token.type", token_type), ("voice.modality", modality))))
            for token_type, modality, key in _TOKEN_KINDS)
        self.cost = tuple((key, _Counted(metrics.cost, (*base, ("voice.cost.direction", direction))))
                          for direction, key in (("input", sc.VOICE_COST_INPUT_USD),
                                                 ("output", sc.VOICE_COST_OUTPUT_USD)))
        self.setup = Series(metrics.setup_duration, base)
        self.interruptions = _Counted(metrics.interruptions, base)
        # Series by what a span says (end reasons, latency source, tool): bounded, the values come from clients.
        self._by_value: dict[tuple[str, ...], Any] = {}

    def _cached(self, key: tuple[str, ...], value: Any) -> Any:
        if len(self._by_value) >= 1024:
            self._by_value.clear()
        self._by_value[key] = value
        return value

    def turn(self, reason: str) -> tuple[_Counted, Series]:
        found = self._by_value.get(("turn", reason))
        if found is None:
            labels = (*self.base, ("voice.turn.end_reason", reason))
            found = self._cached(("turn", reason), (_Counted(self._metrics.turns, labels),
                                                    Series(self._metrics.turn_duration, labels)))
        return cast(tuple[_Counted, Series], found)

    def first_audio(self, source: str) -> Series:
        found = self._by_value.get(("ttfa", source))
        if found is None:
            found = self._cached(("ttfa", source), Series(self._metrics.time_to_first_audio,
                                                          (*self.base, (sc.VOICE_LATENCY_SOURCE, source))))
        return cast(Series, found)

    def tool(self, name: str, reason: str) -> Series:
        found = self._by_value.get(("tool", name, reason))
        if found is None:
            # Bounded once per (name, reason): a name once kept or sent to "other" stays so.
            labels = (*self.base, (sc.GEN_AI_TOOL_NAME, self._metrics._bounded(sc.GEN_AI_TOOL_NAME, name)),
                      ("voice.tool.end_reason", reason))
            found = self._cached(("tool", name, reason), Series(self._metrics.tool_duration, labels))
        return cast(Series, found)

    def session(self, reason: str) -> _Counted:
        found = self._by_value.get(("session", reason))
        if found is None:
            found = self._cached(("session", reason), _Counted(
                self._metrics.sessions, (*self.base, (sc.VOICE_SESSION_END_REASON, reason))))
        return cast(_Counted, found)


_S = TypeVar("_S")


def _add(pending: dict[_S, list[float]], series: _S, value: float) -> None:
    added = pending.get(series)
    if added is None:
        pending[series] = [value]
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

