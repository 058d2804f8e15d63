"""Langfuse exporter: the gateway's spans, translated into Langfuse's view, sent over OTLP/HTTP.

Registered as ``langfuse`` in the ``opentelemetry_traces_exporter`` entry-point group. The declarative
config passes ``host``, ``public_key``, ``secret_key``, ``timeout`` (ms) and ``compression`` (``gzip`` or
``none``); each falls back to ``LANGFUSE_BASE_URL`` / ``LANGFUSE_HOST``, ``LANGFUSE_PUBLIC_KEY`` and
``LANGFUSE_SECRET_KEY``, then to a default. Session scores take ``scores`` (default true) and ``scores_host``
(Langfuse's own URL, for when ``host`` is a collector that relays only the OTel path; default ``host``).
``OTEL_EXPORTER_OTLP_*`` variables configure the ``otlp`` exporter: their endpoint, headers, timeout,
compression and CA file never reach Langfuse.

The translation runs on this exporter's path only: every span is copied with the Langfuse attributes added,
so the other exporters keep clean semantic-convention spans.

    voice_session          langfuse.observation.type=agent; transcript as observation and trace input/output
    invoke_agent {agent}   agent; gen_ai.input/output.messages as observation input/output
    realtime_inference     generation; model.name, usage_details, cost_details, completion_start_time (the
                           only observations with a model: gen_ai.request/response.model are left out)
    execute_tool {name}    tool; tool call arguments/result as observation input/output
    anything else          span
    every span             langfuse.trace.name, session.id, user.id, langfuse.trace.tags,
                           langfuse.environment, langfuse.release, level ERROR + status_message on error

Once a batch holding a ``voice_session`` root has been exported, the root's scores (outcome, interruption rate,
time-to-first-audio p95, tool errors) are posted to ``/api/public/scores``: see ``langfuse_scores``.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import certifi
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import StatusCode
from opentelemetry.util.types import AttributeValue

from gateway import semconv as sc
from gateway.errors import ConfigError
from gateway.exporters.langfuse_scores import ScorePoster, ScoreStats

_logger = logging.getLogger(__name__)

DEFAULT_HOST: Final = "https://cloud.langfuse.com"
DEFAULT_TIMEOUT_MS: Final = 10_000
OTEL_TRACES_PATH: Final = "/api/public/otel/v1/traces"
# Without this header Langfuse Cloud and v4 servers may hold spans back for minutes before showing them.
INGESTION_VERSION: Final = "4"

# Langfuse attribute names (Langfuse server: packages/shared/src/server/otel/attributes.ts).
LF_TYPE: Final = "langfuse.observation.type"
LF_INPUT: Final = "langfuse.observation.input"
LF_OUTPUT: Final = "langfuse.observation.output"
LF_LEVEL: Final = "langfuse.observation.level"
LF_STATUS_MESSAGE: Final = "langfuse.observation.status_message"
LF_MODEL: Final = "langfuse.observation.model.name"
LF_USAGE: Final = "langfuse.observation.usage_details"
LF_COST: Final = "langfuse.observation.cost_details"
LF_COMPLETION_START: Final = "langfuse.observation.completion_start_time"
LF_TRACE_NAME: Final = "langfuse.trace.name"
LF_TRACE_TAGS: Final = "langfuse.trace.tags"
LF_TRACE_INPUT: Final = "langfuse.trace.input"
LF_TRACE_OUTPUT: Final = "langfuse.trace.output"
LF_ENVIRONMENT: Final = "langfuse.environment"
LF_RELEASE: Final = "langfuse.release"
LF_AS_ROOT: Final = "langfuse.internal.as_root"

# Langfuse reads these bare names as input, output and model when nothing better is set.
BARE_NAMES: Final = frozenset({"input", "output", "model"})
# Langfuse takes a model from these on any observation and looks it up (a tokenizer would then count and price
# the root's transcript): on this path a model is stated only on generations, as langfuse.observation.model.name.
MODEL_NAMES: Final = frozenset({sc.GEN_AI_REQUEST_MODEL, sc.GEN_AI_RESPONSE_MODEL})


_ENV_INVALID_RUN = re.compile(r"[^a-z0-9_-]+")
_ENV_RESERVED_PREFIX = re.compile(r"^(?:langfuse[-_]?)+")
_ENV_MAX_LEN: Final = 40
_SETTINGS: Final = ("host", "public_key", "secret_key", "timeout", "compression", "scores", "scores_host")
_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})


class LangfuseSpanExporter(SpanExporter):
    """Sends spans to Langfuse's OTLP endpoint in Langfuse's view; never raises from ``export``."""

    def __init__(
        self,
        host: str | None = None,
        public_key: str | None = None,
        secret_key: str | None = None,
        timeout: float | str | None = None,
        compression: str | None = None,
        scores: bool | str | None = None,
        scores_host: str | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            # A typo in otel-config.yaml must fail at startup, not silently fall back to env or defaults.
            name = sorted(unknown)[0]
            raise ConfigError(name, f"unknown setting for the langfuse exporter; expected one of {_SETTINGS}")
        public, secret = _api_keys(public_key, secret_key)
        base_url = _base_url(host)
        token = base64.b64encode(f"{public}:{secret}".encode()).decode("ascii")
        headers = {"authorization": f"Basic {token}", "x-langfuse-ingestion-version": INGESTION_VERSION}
        gzip = _gzip(compression)
        timeout_s = _timeout_seconds(timeout)
        delegate = OTLPSpanExporter(
            endpoint=base_url + OTEL_TRACES_PATH,
            # Otherwise the stock exporter takes its CA file from OTEL_EXPORTER_OTLP_CERTIFICATE, which names
            # the collector's (often private) CA and would fail TLS against Langfuse.
            certificate_file=certifi.where(),
            headers=headers,
            timeout=timeout_s,
            compression=Compression.Gzip if gzip else Compression.NoCompression,
        )
        # The stock exporter merges OTEL_EXPORTER_OTLP_(TRACES_)HEADERS into every request. Those carry the
        # collector's credentials (often a vendor API key) and must never reach Langfuse, so the headers are
        # pinned to exactly ours (a private attribute of the pinned 1.45 exporter; a test guards it).
        client = delegate._client
        pinned = {"content-type": "application/x-protobuf", **headers}
        if user_agent := client._headers.get("user-agent"):
            pinned["user-agent"] = user_agent
        if gzip:
            pinned["content-encoding"] = "gzip"
        client._headers = pinned
        self._delegate: SpanExporter = delegate
        self._scores: ScorePoster | None = None
        if _flag("scores", scores):
            scores_url = _http_url("scores_host", _clean(scores_host)) or base_url
            self._scores = ScorePoster(scores_url, f"Basic {token}", timeout_s)
        self._shut_down = False

    @property
    def score_stats(self) -> ScoreStats:
        """Scores posted, failed, and roots skipped as already scored, since this exporter started."""
        return self._scores.stats if self._scores is not None else ScoreStats()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            views = [langfuse_view(span) for span in spans]
            result = self._delegate.export(views)
        except Exception:
            _logger.exception("Langfuse export of %d span(s) failed", len(spans))
            return SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS and self._scores is not None:
            # Scores follow spans that arrived; their own failures are logged and counted, never returned.
            self._scores.post(views)
        return result

    def shutdown(self) -> None:
        if self._shut_down:
            return
        self._shut_down = True
        closers = [self._delegate.shutdown]
        if self._scores is not None:
            closers.append(self._scores.close)
        for close in closers:
            try:
                close()
            except Exception:
                _logger.exception("Langfuse exporter shutdown failed")

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._delegate.force_flush(timeout_millis)


def langfuse_view(span: ReadableSpan) -> ReadableSpan:
    """A copy of ``span`` carrying the Langfuse attributes; ``span`` itself is left untouched."""
    attributes = BoundedAttributes(attributes=langfuse_attributes(span), immutable=True)
    attributes.dropped = span.dropped_attributes
    events = BoundedList.from_seq(None, span.events)
    events.dropped = span.dropped_events
    links = BoundedList.from_seq(None, span.links)
    links.dropped = span.dropped_links
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=events,
        links=links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def langfuse_attributes(span: ReadableSpan) -> dict[str, AttributeValue]:
    """The span's attributes plus Langfuse's, minus the bare names Langfuse would misread."""
    source: Mapping[str, AttributeValue] = span.attributes or {}
    attrs = {key: value for key, value in source.items() if key not in BARE_NAMES and key not in MODEL_NAMES}
    kind = observation_type(span.name, _text(source, sc.GEN_AI_OPERATION_NAME))
    attrs[LF_TYPE] = kind
    _add_trace_facts(attrs, source, span.resource)
    if span.status.status_code is StatusCode.ERROR:
        attrs[LF_LEVEL] = "ERROR"
        if span.status.description:
            attrs[LF_STATUS_MESSAGE] = span.status.description
    if kind == "generation":
        _add_generation(attrs, source)
    elif any(key.startswith("gen_ai.usage.") for key in source):
        # Langfuse derives usage from gen_ai.usage.* on any observation; the root carries the session totals,
        # which would count every token twice in trace and session sums. An explicit empty map prevents it.
        attrs[LF_USAGE] = "{}"
    if _is(span.name, sc.SPAN_SESSION):
        _add_transcript(attrs, source)
        if span.parent is not None:
            # The session joined the caller's trace (traceparent); that parent is usually not in Langfuse,
            # and this flag is how Langfuse's own SDK marks such a span as the trace's root.
            attrs[LF_AS_ROOT] = True
    elif kind == "tool":
        _copy_io(attrs, source, sc.GEN_AI_TOOL_CALL_ARGUMENTS, sc.GEN_AI_TOOL_CALL_RESULT)
    elif kind == "agent":
        _copy_io(attrs, source, sc.GEN_AI_INPUT_MESSAGES, sc.GEN_AI_OUTPUT_MESSAGES)
    return attrs


def observation_type(name: str, operation: str | None) -> str:
    """Langfuse observation type for a gateway span name (and its gen_ai.operation.name)."""
    if _is(name, sc.SPAN_SESSION) or _is(name, sc.SPAN_TURN) or operation == sc.OPERATION_INVOKE_AGENT:
        return "agent"
    if _is(name, sc.SPAN_INFERENCE) or operation == sc.OPERATION_GENERATE_CONTENT:
        return "generation"
    if _is(name, sc.SPAN_TOOL) or operation == sc.OPERATION_EXECUTE_TOOL:
        return "tool"
    return "span"


def langfuse_environment(value: str) -> str:
    """``value`` in the form Langfuse accepts: ``^(?!langfuse)[a-z0-9_-]+$``, at most 40 characters.

    Mirrors Langfuse's own normalisation: lowercase, strip the reserved ``langfuse`` prefix, fall back to
    ``default``. Other characters become ``-`` so ``Staging EU`` stays readable as ``staging-eu``.
    """
    cleaned = _ENV_INVALID_RUN.sub("-", value.strip().lower())
    cleaned = _ENV_RESERVED_PREFIX.sub("", cleaned)[:_ENV_MAX_LEN].strip("-")
    return cleaned or "default"


def usage_details(attrs: Mapping[str, AttributeValue]) -> dict[str, int]:
    """Langfuse usage details from the gen_ai.usage.* counts, under the keys Langfuse's own price definitions of
    the provider's realtime models read (its default-model-prices): Gemini Live (``gemini-live-2.5-flash-native-
    audio``) prices ``input_text``, ``input_audio``, ``output_text``, ``output_audio``; OpenAI Realtime
    (``gpt-4o-realtime-preview``) ``input_text_tokens``, ``input_audio_tokens``, ``output_text_tokens``,
    ``output_audio_tokens``. Cached input is ``input_cached_tokens``.

    Langfuse treats the keys as separate buckets: it prices each key on its own and shows "input tokens" as
    the sum of every key containing "input". So, as Langfuse does when it converts an OpenAI usage object,
    ``input``/``output`` carry only what the detail keys leave over, and ``total`` is the true total.
    """
    suffix = "" if _gemini(attrs) else "_tokens"
    input_details = {
        f"input_audio{suffix}": _count(attrs, sc.GEN_AI_USAGE_AUDIO_INPUT_TOKENS),
        f"input_text{suffix}": _count(attrs, sc.GEN_AI_USAGE_TEXT_INPUT_TOKENS),
        "input_cached_tokens": _count(attrs, sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
    }
    output_details = {
        f"output_audio{suffix}": _count(attrs, sc.GEN_AI_USAGE_AUDIO_OUTPUT_TOKENS),
        f"output_text{suffix}": _count(attrs, sc.GEN_AI_USAGE_TEXT_OUTPUT_TOKENS),
    }
    usage: dict[str, int] = {}
    total: int | None = None
    for key, count, details in (
        ("input", _count(attrs, sc.GEN_AI_USAGE_INPUT_TOKENS), input_details),
        ("output", _count(attrs, sc.GEN_AI_USAGE_OUTPUT_TOKENS), output_details),
    ):
        present = {name: value for name, value in details.items() if value is not None}
        usage.update(present)
        if count is not None:
            usage[key] = max(count - sum(present.values()), 0)
            total = (total or 0) + count
    if total is not None:
        usage["total"] = total
    return usage


def _gemini(attrs: Mapping[str, AttributeValue]) -> bool:
    provider = (_text(attrs, sc.GEN_AI_PROVIDER_NAME) or "").lower()
    model = (_text(attrs, sc.GEN_AI_RESPONSE_MODEL) or _text(attrs, sc.GEN_AI_REQUEST_MODEL) or "").lower()
    return provider.startswith(("gcp.", "google")) or "gemini" in provider or model.startswith("gemini")


def cost_details(attrs: Mapping[str, AttributeValue]) -> dict[str, float]:
    named = (
        ("input", sc.VOICE_COST_INPUT_USD),
        ("output", sc.VOICE_COST_OUTPUT_USD),
        ("total", sc.VOICE_COST_TOTAL_USD),
    )
    costs = {key: value for key, attr in named if (value := _usd(attrs, attr)) is not None}
    if costs and "total" not in costs:
        costs["total"] = sum(costs.values())
    return costs


def iso_utc(time_unix_nano: int) -> str:
    seconds, nanos = divmod(time_unix_nano, 1_000_000_000)
    return f"{datetime.fromtimestamp(seconds, tz=UTC):%Y-%m-%dT%H:%M:%S}.{nanos // 1000:06d}Z"


def _add_trace_facts(
    attrs: dict[str, AttributeValue], source: Mapping[str, AttributeValue], resource: Resource
) -> None:
    # Langfuse v4 builds the trace from whichever span states a fact, and the root arrives last, so every
    # span repeats the trace's name, session, user and tags.
    agent = _text(source, sc.GEN_AI_AGENT_NAME)
    attrs[LF_TRACE_NAME] = f"{sc.SPAN_SESSION} {agent}" if agent else sc.SPAN_SESSION
    conversation = _text(source, sc.GEN_AI_CONVERSATION_ID)
    if _text(source, sc.SESSION_ID) is None and conversation is not None:
        attrs[sc.SESSION_ID] = conversation
    tags = source.get(sc.VOICE_SESSION_TAGS)
    if isinstance(tags, str):
        tags = (tags,)
    if isinstance(tags, Sequence) and tags:
        attrs[LF_TRACE_TAGS] = tuple(str(tag) for tag in tags)
    resource_attrs = resource.attributes
    for key in ("langfuse.environment", "deployment.environment.name", "deployment.environment"):
        if (environment := _text(resource_attrs, key)) is not None:
            # Stated whenever the resource has one: Langfuse would otherwise take the raw resource value, and
            # it rejects names outside its allowed form.
            attrs[LF_ENVIRONMENT] = langfuse_environment(environment)
            break
    release = _text(resource_attrs, "service.version")
    if release is not None:
        attrs[LF_RELEASE] = release


def _add_generation(attrs: dict[str, AttributeValue], source: Mapping[str, AttributeValue]) -> None:
    model = _text(source, sc.GEN_AI_RESPONSE_MODEL) or _text(source, sc.GEN_AI_REQUEST_MODEL)
    if model is not None:
        attrs[LF_MODEL] = model
    usage = usage_details(source)
    # Stated even when empty: Langfuse would otherwise derive usage from gen_ai.usage.* under other key names.
    attrs[LF_USAGE] = json.dumps(usage, separators=(",", ":"))
    costs = cost_details(source)
    if costs:
        attrs[LF_COST] = json.dumps(costs, separators=(",", ":"))
    first_audio = _count(source, sc.VOICE_FIRST_AUDIO_TIME)
    if first_audio:
        attrs[LF_COMPLETION_START] = iso_utc(first_audio)
    _copy_io(attrs, source, sc.GEN_AI_INPUT_MESSAGES, sc.GEN_AI_OUTPUT_MESSAGES)


def _add_transcript(attrs: dict[str, AttributeValue], source: Mapping[str, AttributeValue]) -> None:
    try:
        lines = json.loads(_text(source, sc.VOICE_SESSION_TRANSCRIPT) or "[]")
    except ValueError:
        _logger.warning("voice.session.transcript is not JSON; the Langfuse trace gets no input/output")
        return
    said: dict[str, list[dict[str, Any]]] = {"user": [], "assistant": []}
    for line in lines if isinstance(lines, list) else ():
        if isinstance(line, dict) and line.get("role") in said and isinstance(line.get("text"), str):
            # role/content is the chat shape Langfuse renders as a conversation.
            message: dict[str, Any] = {"role": line["role"], "content": line["text"]}
            if isinstance(line.get("turn"), int):
                message["turn"] = line["turn"]
            said[line["role"]].append(message)
    for lines_of, observation_key, trace_key in (
        (said["user"], LF_INPUT, LF_TRACE_INPUT),
        (said["assistant"], LF_OUTPUT, LF_TRACE_OUTPUT),
    ):
        if lines_of:
            text = json.dumps(lines_of, ensure_ascii=False, separators=(",", ":"))
            attrs[observation_key] = attrs[trace_key] = text


def _copy_io(
    attrs: dict[str, AttributeValue], source: Mapping[str, AttributeValue], input_key: str, output_key: str
) -> None:
    for key, target in ((input_key, LF_INPUT), (output_key, LF_OUTPUT)):
        value = _text(source, key)
        if value is not None:
            attrs[target] = value


def _is(name: str, base: str) -> bool:
    return name == base or name.startswith(base + " ")


def _text(attrs: Mapping[str, Any], key: str) -> str | None:
    value = attrs.get(key)
    return value if isinstance(value, str) and value.strip() else None


def _count(attrs: Mapping[str, AttributeValue], key: str) -> int | None:
    # Integers stay exact: a float cannot hold a nanosecond epoch such as voice.first_audio.time_unix_nano.
    value = attrs.get(key)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _usd(attrs: Mapping[str, AttributeValue], key: str) -> float | None:
    """A finite non-negative number (Langfuse rejects negative usage and cost), else None."""
    value = attrs.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _api_keys(public_key: str | None, secret_key: str | None) -> tuple[str, str]:
    public = _setting(public_key, "LANGFUSE_PUBLIC_KEY")
    secret = _setting(secret_key, "LANGFUSE_SECRET_KEY")
    if public is None or secret is None:
        named = (("LANGFUSE_PUBLIC_KEY", public), ("LANGFUSE_SECRET_KEY", secret))
        missing = [env for env, value in named if value is None]
        raise ConfigError(
            ", ".join(missing),
            "missing Langfuse API key: set public_key/secret_key in the langfuse exporter config "
            f"or {' and '.join(missing)} in the environment",
        )
    return public, secret


def _base_url(host: str | None) -> str:
    # Same precedence as the langfuse SDK: LANGFUSE_BASE_URL is the newer name and wins over LANGFUSE_HOST.
    for key, value in (
        ("host", _clean(host)),
        ("LANGFUSE_BASE_URL", _clean(os.environ.get("LANGFUSE_BASE_URL"))),
        ("LANGFUSE_HOST", _clean(os.environ.get("LANGFUSE_HOST"))),
    ):
        if (url := _http_url(key, value)) is not None:
            return url
    return DEFAULT_HOST


def _http_url(key: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith(("http://", "https://")):
        raise ConfigError(key, f"expected an http(s) URL, got {value!r}")
    return value.rstrip("/")


def _flag(key: str, value: bool | str | None) -> bool:
    if value is None or isinstance(value, bool):
        return value is not False
    text = str(value).strip().lower()
    if text not in _TRUE | _FALSE:
        raise ConfigError(key, f"expected true or false, got {value!r}")
    return text in _TRUE


def _setting(argument: str | None, env: str) -> str | None:
    return _clean(argument if argument is not None else os.environ.get(env))


def _clean(value: str | None) -> str | None:
    return value.strip() if value is not None and value.strip() else None


def _gzip(compression: str | None) -> bool:
    value = (compression or "gzip").strip().lower()
    if value not in ("gzip", "none"):
        raise ConfigError("compression", f"expected 'gzip' or 'none', got {compression!r}")
    return value == "gzip"


def _timeout_seconds(timeout: float | str | None) -> float:
    if timeout is None:
        return DEFAULT_TIMEOUT_MS / 1000
    try:
        millis = float("nan" if isinstance(timeout, bool) else timeout)
    except ValueError:
        millis = math.nan
    if not math.isfinite(millis) or millis <= 0:
        raise ConfigError("timeout", f"expected a positive number of milliseconds, got {timeout!r}")
    return millis / 1000
