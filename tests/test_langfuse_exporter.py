"""The Langfuse exporter against a local server that plays Langfuse's OTel and score endpoints."""

from __future__ import annotations

import base64
import gzip
import json
import math
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from gateway import semconv as sc
from gateway.errors import ConfigError
from gateway.exporters.langfuse import LangfuseSpanExporter, langfuse_environment, usage_details

PUBLIC_KEY = "pk-lf-test"
SECRET_KEY = "sk-lf-test"
PATH = "/api/public/otel/v1/traces"
SCORES_PATH = "/api/public/scores"
# CreateScoreRequest (Langfuse fern/apis/server/definition/scores.yml): every field a client may send.
SCORE_FIELDS = frozenset(
    {
        "id", "traceId", "sessionId", "observationId", "datasetRunId", "name", "value", "comment", "metadata",
        "environment", "queueId", "dataType", "configId", "source",
    }
)
T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
MS = 1_000_000
AGENT = "concierge"
MODEL = "gemini-live-2.5-flash"
FACTS: dict[str, Any] = {
    sc.SESSION_ID: "sess-1",
    sc.GEN_AI_CONVERSATION_ID: "sess-1",
    sc.USER_ID: "user-7",
    sc.GEN_AI_AGENT_NAME: AGENT,
    sc.VOICE_SESSION_TAGS: ("vip", "beta"),
}
TRANSCRIPT = [
    {"turn": 1, "role": "user", "text": "Where is my order?"},
    {"turn": 1, "role": "assistant", "text": "Let me check that for you."},
]
USER_MESSAGES = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Where is my order?"}]}])
MODEL_MESSAGES = json.dumps(
    [{"role": "assistant", "parts": [{"type": "text", "content": "Let me check that for you."}]}]
)
TOOL_ARGUMENTS = json.dumps({"order_id": "A-17"})
TOOL_RESULT = json.dumps({"status": "unknown"})
RESOURCE = Resource.create(
    {
        "service.name": "voice-trace-gateway",
        "service.version": "1.4.2",
        "deployment.environment.name": "Prod EU",
    }
)


@dataclass(frozen=True)
class Received:
    span_id: bytes
    parent_span_id: bytes
    kind: int
    start: int
    end: int
    attributes: dict[str, Any]
    status_code: int
    events: tuple[tuple[str, int], ...]
    resource: dict[str, Any]


class FakeLangfuse:
    """Checks what Langfuse checks (path, Basic auth, ingestion version, protobuf) and records the spans.

    ``POST /api/public/scores`` is served too: it checks auth, JSON and the CreateScoreRequest shape, records
    every request body in ``score_posts`` and keeps ``scores`` by id, upserting as Langfuse does. ``score_mode``
    ``"drop"`` closes the connection without an answer, ``"hang"`` answers only once ``release`` is set.
    """

    def __init__(self, public_key: str = PUBLIC_KEY, secret_key: str = SECRET_KEY) -> None:
        self.status = 200
        self.spans: dict[str, Received] = {}
        self.headers: list[dict[str, str]] = []
        self.problems: list[str] = []
        self.score_status = 200
        self.score_mode = "answer"
        self.release = threading.Event()
        self.score_headers: list[dict[str, str]] = []
        self.score_posts: list[dict[str, Any]] = []
        self.scores: dict[str, dict[str, Any]] = {}
        token = base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                headers = {key.lower(): value for key, value in self.headers.items()}
                body = self.rfile.read(int(headers.get("content-length", "0")))
                if self.path == SCORES_PATH:
                    self.score(headers, body)
                    return
                fake.headers.append(headers)
                problems = fake.check(self.path, headers, token)
                try:
                    if headers.get("content-encoding") == "gzip":
                        body = gzip.decompress(body)
                    request = ExportTraceServiceRequest.FromString(body)
                except Exception as error:
                    problems.append(f"undecodable body: {error!r}")
                if not problems:
                    fake.record(request)
                fake.problems.extend(problems)
                status = (401 if any("auth" in p for p in problems) else 400) if problems else fake.status
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def score(self, headers: dict[str, str], body: bytes) -> None:
                fake.score_headers.append(headers)
                if fake.score_mode == "drop":
                    self.close_connection = True
                    return
                if fake.score_mode == "hang":
                    fake.release.wait(10)
                problems = fake.check_score(headers, body, token)
                fake.problems.extend(problems)
                if problems:
                    status = 401 if any("auth" in p for p in problems) else 400
                    reply: dict[str, Any] = {"message": "; ".join(problems)}
                else:
                    score = json.loads(body)
                    fake.score_posts.append(score)
                    status = fake.score_status
                    if status == 200:
                        fake.scores[score["id"]] = score
                    reply = {"id": score["id"]} if status == 200 else {"message": "Internal Server Error"}
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @staticmethod
    def check(path: str, headers: dict[str, str], token: str) -> list[str]:
        problems = []
        if path != PATH:
            problems.append(f"path {path}")
        if headers.get("authorization") != f"Basic {token}":
            problems.append(f"auth {headers.get('authorization')}")
        if headers.get("x-langfuse-ingestion-version") != "4":
            problems.append("no x-langfuse-ingestion-version: 4")
        if headers.get("content-type") != "application/x-protobuf":
            problems.append(f"content-type {headers.get('content-type')}")
        if headers.get("content-encoding", "gzip") != "gzip":
            problems.append(f"content-encoding {headers.get('content-encoding')}")
        return problems

    @staticmethod
    def check_score(headers: dict[str, str], body: bytes, token: str) -> list[str]:
        problems = []
        if headers.get("authorization") != f"Basic {token}":
            problems.append(f"score auth {headers.get('authorization')}")
        if not headers.get("content-type", "").startswith("application/json"):
            problems.append(f"score content-type {headers.get('content-type')}")
        try:
            score = json.loads(body)
        except ValueError as error:
            return [*problems, f"score body is not JSON: {error}"]
        if not isinstance(score, dict):
            return [*problems, f"score body is not an object: {score!r}"]
        problems += [f"unknown score field {key}" for key in sorted(set(score) - SCORE_FIELDS)]
        if not isinstance(score.get("name"), str) or not score["name"]:
            problems.append(f"score name {score.get('name')!r}")
        if not isinstance(score.get("traceId"), str) or not re.fullmatch(r"[0-9a-f]{32}", score["traceId"]):
            problems.append(f"score traceId {score.get('traceId')!r}")
        for key in ("id", "comment", "environment", "observationId"):
            if key in score and not isinstance(score[key], str):
                problems.append(f"score {key} {score[key]!r}")
        environment = score.get("environment")
        if isinstance(environment, str) and not re.fullmatch(r"(?!langfuse)[a-z0-9_-]+", environment):
            problems.append(f"score environment {environment!r}")
        value, data_type = score.get("value"), score.get("dataType")
        number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        valid = {
            "NUMERIC": number,
            "CATEGORICAL": isinstance(value, str) and bool(value),
            "BOOLEAN": number and value in (0, 1),
        }
        if not (isinstance(data_type, str) and valid.get(data_type, False)):
            problems.append(f"score value {value!r} for dataType {data_type!r}")
        return problems

    def record(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: value_of(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans[span.name] = Received(
                        span_id=span.span_id,
                        parent_span_id=span.parent_span_id,
                        kind=span.kind,
                        start=span.start_time_unix_nano,
                        end=span.end_time_unix_nano,
                        attributes={a.key: value_of(a.value) for a in span.attributes},
                        status_code=span.status.code,
                        events=tuple((e.name, e.time_unix_nano) for e in span.events),
                        resource=resource,
                    )

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def value_of(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return tuple(value_of(v) for v in value.array_value.values)
    return getattr(value, which) if which else None


def run_session(exporter: LangfuseSpanExporter, parent: Context | None = None) -> dict[str, ReadableSpan]:
    """One voice session shaped like the gateway's, exported span by span; returns the original spans."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("gateway", "0.1.0")

    def start(name: str, at: int, attrs: dict[str, Any], context: Any, kind: SpanKind = SpanKind.INTERNAL):
        return tracer.start_span(name, context, kind, {**FACTS, **attrs}, start_time=T0 + at * MS)

    root = start(
        sc.SPAN_SESSION,
        0,
        {
            sc.GEN_AI_PROVIDER_NAME: "gcp.gemini",
            sc.GEN_AI_REQUEST_MODEL: MODEL,
            sc.VOICE_SESSION_END_REASON: "completed",
            sc.VOICE_SESSION_TURN_COUNT: 1,
            sc.GEN_AI_USAGE_INPUT_TOKENS: 120,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 80,
            sc.VOICE_SESSION_TRANSCRIPT: json.dumps(TRANSCRIPT),
        },
        parent,
    )
    in_root = trace.set_span_in_context(root)
    connection = start(sc.SPAN_CONNECTION, 1, {"input": "raw frame", "model": "m", "output": "x"}, in_root)
    turn = start(
        f"{sc.SPAN_TURN} {AGENT}",
        100,
        {
            sc.GEN_AI_OPERATION_NAME: sc.OPERATION_INVOKE_AGENT,
            sc.VOICE_TURN_NUMBER: 1,
            sc.GEN_AI_INPUT_MESSAGES: USER_MESSAGES,
            sc.GEN_AI_OUTPUT_MESSAGES: MODEL_MESSAGES,
        },
        in_root,
    )
    in_turn = trace.set_span_in_context(turn)
    speech = start(sc.SPAN_USER_SPEECH, 100, {}, in_turn)
    speech.end(T0 + 900 * MS)
    inference = start(
        f"{sc.SPAN_INFERENCE} {MODEL}",
        1000,
        {
            sc.GEN_AI_OPERATION_NAME: sc.OPERATION_GENERATE_CONTENT,
            sc.GEN_AI_PROVIDER_NAME: "gcp.gemini",
            sc.GEN_AI_REQUEST_MODEL: MODEL,
            sc.GEN_AI_USAGE_INPUT_TOKENS: 120,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 80,
            sc.GEN_AI_USAGE_AUDIO_INPUT_TOKENS: 100,
            sc.GEN_AI_USAGE_TEXT_INPUT_TOKENS: 20,
            sc.GEN_AI_USAGE_AUDIO_OUTPUT_TOKENS: 70,
            sc.GEN_AI_USAGE_TEXT_OUTPUT_TOKENS: 10,
            sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 30,
            sc.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",),
            sc.VOICE_FIRST_AUDIO_TIME: T0 + 1_500_000_999,
            sc.GEN_AI_INPUT_MESSAGES: USER_MESSAGES,
            sc.GEN_AI_OUTPUT_MESSAGES: MODEL_MESSAGES,
            "voice.cost.input_usd": 0.0012,
            "voice.cost.output_usd": 0.0034,
        },
        in_turn,
        SpanKind.CLIENT,
    )
    inference.add_event(sc.EVENT_FIRST_AUDIO, timestamp=T0 + 1_500_000_999)
    inference.end(T0 + 3000 * MS)
    tool = start(
        f"{sc.SPAN_TOOL} lookup_order",
        3100,
        {
            sc.GEN_AI_OPERATION_NAME: sc.OPERATION_EXECUTE_TOOL,
            sc.GEN_AI_TOOL_NAME: "lookup_order",
            sc.GEN_AI_TOOL_CALL_ID: "call-1",
            sc.GEN_AI_TOOL_TYPE: "function",
            sc.GEN_AI_TOOL_CALL_ARGUMENTS: TOOL_ARGUMENTS,
            sc.GEN_AI_TOOL_CALL_RESULT: TOOL_RESULT,
        },
        in_turn,
    )
    tool.set_status(Status(StatusCode.ERROR, "order service timed out"))
    tool.end(T0 + 3500 * MS)
    turn.end(T0 + 4000 * MS)
    connection.end(T0 + 9000 * MS)
    root.end(T0 + 9500 * MS)
    provider.force_flush()
    return {span.name: span for span in memory.get_finished_spans()}


@pytest.fixture
def fake() -> Iterator[FakeLangfuse]:
    server = FakeLangfuse()
    yield server
    server.close()


@pytest.fixture(scope="module")
def session() -> Iterator[tuple[FakeLangfuse, dict[str, ReadableSpan]]]:
    server = FakeLangfuse()
    exporter = LangfuseSpanExporter(host=server.url, public_key=PUBLIC_KEY, secret_key=SECRET_KEY)
    originals = run_session(exporter)
    exporter.shutdown()
    yield server, originals
    server.close()


@pytest.fixture
def langfuse(session: tuple[FakeLangfuse, dict[str, ReadableSpan]]) -> dict[str, Received]:
    return session[0].spans


def any_span(exporter: LangfuseSpanExporter, name: str = "user_speech") -> ReadableSpan:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.get_tracer("gateway").start_span(name, attributes=FACTS).end()
    return memory.get_finished_spans()[0]


def test_every_request_passes_langfuses_path_auth_and_header_checks(session):
    server, originals = session
    assert server.problems == []
    assert set(server.spans) == set(originals)
    assert all(headers["content-encoding"] == "gzip" for headers in server.headers)


def test_root_becomes_agent_observation_with_transcript_as_observation_and_trace_io(langfuse):
    root = langfuse[sc.SPAN_SESSION].attributes
    assert root["langfuse.observation.type"] == "agent"
    user = [{"role": "user", "content": "Where is my order?", "turn": 1}]
    assistant = [{"role": "assistant", "content": "Let me check that for you.", "turn": 1}]
    assert json.loads(root["langfuse.observation.input"]) == user
    assert json.loads(root["langfuse.trace.input"]) == user
    assert json.loads(root["langfuse.observation.output"]) == assistant
    assert json.loads(root["langfuse.trace.output"]) == assistant
    assert root[sc.VOICE_SESSION_END_REASON] == "completed"
    assert "langfuse.internal.as_root" not in root


def test_root_session_totals_get_empty_usage_so_langfuse_does_not_count_tokens_twice(langfuse):
    root = langfuse[sc.SPAN_SESSION].attributes
    assert root[sc.GEN_AI_USAGE_INPUT_TOKENS] == 120
    assert root["langfuse.observation.usage_details"] == "{}"


def test_turn_becomes_agent_with_its_messages_as_observation_io(langfuse):
    turn = langfuse[f"{sc.SPAN_TURN} {AGENT}"].attributes
    assert turn["langfuse.observation.type"] == "agent"
    assert turn["langfuse.observation.input"] == USER_MESSAGES
    assert turn["langfuse.observation.output"] == MODEL_MESSAGES
    assert "langfuse.observation.usage_details" not in turn


def test_inference_becomes_generation_with_model_usage_cost_and_first_audio(langfuse):
    generation = langfuse[f"{sc.SPAN_INFERENCE} {MODEL}"].attributes
    assert generation["langfuse.observation.type"] == "generation"
    assert generation["langfuse.observation.model.name"] == MODEL
    usage = json.loads(generation["langfuse.observation.usage_details"])
    assert usage == {
        "input": 0,
        "input_audio": 100,
        "input_text": 20,
        "input_cached_tokens": 30,
        "output": 0,
        "output_audio": 70,
        "output_text": 10,
        "total": 200,
    }
    # Every modality bucket is one Langfuse's own Gemini Live price definition prices.
    assert set(usage) - {"input", "output", "total", "input_cached_tokens"} <= LANGFUSE_PRICE_KEYS["gemini-live"]
    assert json.loads(generation["langfuse.observation.cost_details"]) == pytest.approx(
        {"input": 0.0012, "output": 0.0034, "total": 0.0046}
    )
    assert generation["langfuse.observation.completion_start_time"] == "2023-11-14T22:13:21.500000Z"
    assert generation["langfuse.observation.input"] == USER_MESSAGES
    assert generation["langfuse.observation.output"] == MODEL_MESSAGES


# The price keys of Langfuse's default model definitions for the providers' realtime models
# (worker/src/constants/default-model-prices.json: gemini-live-2.5-flash-native-audio, gpt-4o-realtime-preview).
LANGFUSE_PRICE_KEYS = {
    "gemini-live": {"input_text", "input_audio", "input_image", "output_text", "output_audio"},
    "gpt-4o-realtime": {"input_text_tokens", "input_cached_text_tokens", "output_text_tokens", "input_audio_tokens",
                        "input_audio", "input_cached_audio_tokens", "output_audio_tokens", "output_audio"},
}


def test_openai_realtime_usage_uses_the_keys_langfuses_realtime_prices_read():
    usage = usage_details({
        sc.GEN_AI_PROVIDER_NAME: "openai",
        sc.GEN_AI_REQUEST_MODEL: "gpt-realtime",
        sc.GEN_AI_USAGE_INPUT_TOKENS: 300,
        sc.GEN_AI_USAGE_TEXT_INPUT_TOKENS: 100,
        sc.GEN_AI_USAGE_AUDIO_INPUT_TOKENS: 200,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: 90,
        sc.GEN_AI_USAGE_TEXT_OUTPUT_TOKENS: 30,
        sc.GEN_AI_USAGE_AUDIO_OUTPUT_TOKENS: 60,
    })
    assert usage == {"input": 0, "input_text_tokens": 100, "input_audio_tokens": 200, "output": 0,
                     "output_text_tokens": 30, "output_audio_tokens": 60, "total": 390}
    assert set(usage) - {"input", "output", "total"} <= LANGFUSE_PRICE_KEYS["gpt-4o-realtime"]
    gemini = usage_details({sc.GEN_AI_REQUEST_MODEL: "gemini-live-2.5-flash-native-audio",
                            sc.GEN_AI_USAGE_AUDIO_INPUT_TOKENS: 7, sc.GEN_AI_USAGE_AUDIO_OUTPUT_TOKENS: 9})
    assert gemini == {"input_audio": 7, "output_audio": 9}


def test_only_generations_name_a_model_for_langfuse_and_the_otlp_spans_keep_theirs(session):
    server, originals = session
    model_keys = {"langfuse.observation.model.name", sc.GEN_AI_REQUEST_MODEL, sc.GEN_AI_RESPONSE_MODEL, "model"}
    with_model = {name for name, span in server.spans.items() if model_keys & set(span.attributes)}
    assert with_model == {f"{sc.SPAN_INFERENCE} {MODEL}"}
    generation = server.spans[f"{sc.SPAN_INFERENCE} {MODEL}"].attributes
    assert model_keys & set(generation) == {"langfuse.observation.model.name"}
    # The translation is this exporter's alone: the spans other exporters get keep the GenAI names.
    assert originals[sc.SPAN_SESSION].attributes[sc.GEN_AI_REQUEST_MODEL] == MODEL
    assert originals[f"{sc.SPAN_INFERENCE} {MODEL}"].attributes[sc.GEN_AI_REQUEST_MODEL] == MODEL
    assert sc.GEN_AI_USAGE_AUDIO_INPUT_TOKENS in originals[f"{sc.SPAN_INFERENCE} {MODEL}"].attributes


def test_usage_input_and_output_keep_only_what_the_detail_buckets_leave_over():
    usage = usage_details(
        {
            sc.GEN_AI_USAGE_INPUT_TOKENS: 100,
            sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 40,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 20,
            sc.GEN_AI_USAGE_AUDIO_OUTPUT_TOKENS: -5,
        }
    )
    assert usage == {"input": 60, "input_cached_tokens": 40, "output": 20, "total": 120}
    assert usage_details({}) == {}


def test_tool_becomes_tool_with_arguments_and_result_and_error_level(langfuse):
    tool = langfuse[f"{sc.SPAN_TOOL} lookup_order"].attributes
    assert tool["langfuse.observation.type"] == "tool"
    assert tool["langfuse.observation.input"] == TOOL_ARGUMENTS
    assert tool["langfuse.observation.output"] == TOOL_RESULT
    assert tool["langfuse.observation.level"] == "ERROR"
    assert tool["langfuse.observation.status_message"] == "order service timed out"


def test_plain_spans_become_span_observations_without_level(langfuse):
    for name in (sc.SPAN_USER_SPEECH, sc.SPAN_CONNECTION):
        attributes = langfuse[name].attributes
        assert attributes["langfuse.observation.type"] == "span"
        assert "langfuse.observation.level" not in attributes
        assert "langfuse.observation.input" not in attributes


def test_every_span_carries_trace_name_session_user_tags_environment_and_release(langfuse):
    expected = {
        "langfuse.trace.name": f"voice_session {AGENT}",
        "session.id": "sess-1",
        "user.id": "user-7",
        "langfuse.trace.tags": ("vip", "beta"),
        "langfuse.environment": "prod-eu",
        "langfuse.release": "1.4.2",
    }
    for name, span in langfuse.items():
        assert {key: span.attributes.get(key) for key in expected} == expected, name


def test_span_without_agent_session_or_tags_gets_bare_trace_name_and_conversation_as_session(fake):
    exporter = LangfuseSpanExporter(host=fake.url, public_key=PUBLIC_KEY, secret_key=SECRET_KEY)
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "voice-trace-gateway"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    attributes = {sc.GEN_AI_CONVERSATION_ID: "conv-9", sc.GEN_AI_OPERATION_NAME: sc.OPERATION_INVOKE_AGENT}
    provider.get_tracer("gateway").start_span(sc.SPAN_TURN, attributes=attributes).end()
    assert exporter.export(memory.get_finished_spans()) is SpanExportResult.SUCCESS
    turn = fake.spans[sc.SPAN_TURN].attributes
    assert turn["langfuse.observation.type"] == "agent"
    assert turn["langfuse.trace.name"] == "voice_session"
    assert turn["session.id"] == "conv-9"
    assert not {"user.id", "langfuse.trace.tags", "langfuse.environment", "langfuse.release"} & set(turn)


def test_span_identity_times_kind_events_and_resource_are_unchanged(session):
    server, originals = session
    for name, original in originals.items():
        received = server.spans[name]
        assert received.span_id == original.context.span_id.to_bytes(8, "big")
        parent = original.parent.span_id.to_bytes(8, "big") if original.parent else b""
        assert received.parent_span_id == parent
        assert (received.start, received.end) == (original.start_time, original.end_time)
        assert received.events == tuple((e.name, e.timestamp) for e in original.events)
        assert received.resource["deployment.environment.name"] == "Prod EU"
    assert server.spans[f"{sc.SPAN_INFERENCE} {MODEL}"].kind == Span.SPAN_KIND_CLIENT
    assert server.spans[sc.SPAN_SESSION].kind == Span.SPAN_KIND_INTERNAL
    assert server.spans[f"{sc.SPAN_TOOL} lookup_order"].status_code == PbStatus.STATUS_CODE_ERROR


def test_no_bare_input_output_or_model_attribute_reaches_langfuse(langfuse):
    for name, span in langfuse.items():
        assert not {"input", "output", "model"} & set(span.attributes), name


def test_input_spans_are_not_mutated(session):
    _, originals = session
    for name, span in originals.items():
        assert not [key for key in span.attributes if key.startswith("langfuse.")], name
    assert dict(originals[sc.SPAN_CONNECTION].attributes) == {
        **FACTS,
        "input": "raw frame",
        "model": "m",
        "output": "x",
    }


def test_session_that_joined_a_callers_trace_is_marked_as_langfuse_root(fake):
    caller = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    exporter = LangfuseSpanExporter(host=fake.url, public_key=PUBLIC_KEY, secret_key=SECRET_KEY)
    run_session(exporter, trace.set_span_in_context(NonRecordingSpan(caller)))
    root = fake.spans[sc.SPAN_SESSION]
    assert root.parent_span_id == (0xDEF).to_bytes(8, "big")
    assert root.attributes["langfuse.internal.as_root"] is True


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Production", "production"),
        ("Staging EU/1", "staging-eu-1"),
        ("langfuse-prod", "prod"),
        ("x" * 50, "x" * 40),
        ("Langfuse", "default"),
        ("!!!", "default"),
    ],
)
def test_environment_is_put_in_langfuses_allowed_form(raw, expected):
    assert langfuse_environment(raw) == expected


def test_missing_keys_raise_config_error_naming_both(monkeypatch):
    monkeypatch.delenv("LANGFUSE_PUBLIC_KEY", raising=False)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "  ")
    with pytest.raises(ConfigError) as error:
        LangfuseSpanExporter()
    assert error.value.key == "LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY"


def test_missing_secret_key_raises_config_error_naming_it(monkeypatch):
    monkeypatch.delenv("LANGFUSE_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError) as error:
        LangfuseSpanExporter(public_key=PUBLIC_KEY)
    assert error.value.key == "LANGFUSE_SECRET_KEY"


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"compression": "brotli"}, "compression"),
        ({"timeout": "soon"}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"host": "cloud.langfuse.com"}, "host"),
        ({"endpont": "http://x"}, "endpont"),
    ],
)
def test_bad_settings_raise_config_error_naming_the_setting(settings, key):
    with pytest.raises(ConfigError) as error:
        LangfuseSpanExporter(public_key=PUBLIC_KEY, secret_key=SECRET_KEY, **settings)
    assert error.value.key == key


def test_environment_variables_configure_an_exporter_built_without_arguments(fake, monkeypatch):
    monkeypatch.setenv("LANGFUSE_HOST", fake.url)
    monkeypatch.delenv("LANGFUSE_BASE_URL", raising=False)
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", PUBLIC_KEY)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", SECRET_KEY)
    exporter = LangfuseSpanExporter()
    assert exporter.export([any_span(exporter)]) is SpanExportResult.SUCCESS
    assert fake.problems == []
    assert list(fake.spans) == ["user_speech"]


def test_langfuse_base_url_is_accepted_and_wins_over_langfuse_host(fake, monkeypatch):
    monkeypatch.setenv("LANGFUSE_BASE_URL", fake.url + "/")
    monkeypatch.setenv("LANGFUSE_HOST", "http://127.0.0.1:9")
    exporter = LangfuseSpanExporter(public_key=PUBLIC_KEY, secret_key=SECRET_KEY, timeout=1000)
    assert exporter.export([any_span(exporter)]) is SpanExportResult.SUCCESS
    assert fake.problems == []


def test_arguments_win_over_environment_variables(fake, monkeypatch):
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-wrong")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-wrong")
    monkeypatch.setenv("LANGFUSE_BASE_URL", "http://127.0.0.1:9")
    exporter = LangfuseSpanExporter(host=fake.url, public_key=PUBLIC_KEY, secret_key=SECRET_KEY, timeout=1000)
    assert exporter.export([any_span(exporter)]) is SpanExportResult.SUCCESS
    assert fake.problems == []


def test_otlp_exporter_environment_never_reaches_langfuse(fake, monkeypatch):
    collector = "x-collector-key=collector-secret"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"{collector},authorization=Bearer collector-token")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", collector)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "deflate")
    exporter = LangfuseSpanExporter(host=fake.url, public_key=PUBLIC_KEY, secret_key=SECRET_KEY)
    assert exporter.export([any_span(exporter)]) is SpanExportResult.SUCCESS
    assert fake.problems == []
    assert "x-collector-key" not in fake.headers[0]


def test_compression_none_sends_plain_protobuf(fake):
    exporter = LangfuseSpanExporter(
        host=fake.url, public_key=PUBLIC_KEY, secret_key=SECRET_KEY, compression="none", timeout="5000"
    )
    assert exporter.export([any_span(exporter)]) is SpanExportResult.SUCCESS
    assert fake.problems == []
    assert "content-encoding" not in fake.headers[0]


def test_server_error_makes_export_return_failure_without_raising(fake):
    fake.status = 500
    exporter = LangfuseSpanExporter(host=fake.url, public_key=PUBLIC_KEY, secret_key=SECRET_KEY)
    assert exporter.export([any_span(exporter)]) is SpanExportResult.FAILURE
    assert list(fake.spans) == ["user_speech"]


def test_closed_port_makes_export_return_failure_without_raising():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exporter = LangfuseSpanExporter(
        host=f"http://127.0.0.1:{port}", public_key=PUBLIC_KEY, secret_key=SECRET_KEY, timeout=300
    )
    assert exporter.export([any_span(exporter)]) is SpanExportResult.FAILURE


def test_a_span_that_cannot_be_translated_fails_the_batch_without_raising(fake):
    exporter = LangfuseSpanExporter(host=fake.url, public_key=PUBLIC_KEY, secret_key=SECRET_KEY)
    assert exporter.export([object()]) is SpanExportResult.FAILURE  # type: ignore[list-item]
    assert fake.spans == {}


def test_unparseable_transcript_still_exports_the_root_without_io(fake):
    exporter = LangfuseSpanExporter(host=fake.url, public_key=PUBLIC_KEY, secret_key=SECRET_KEY)
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    attributes = {**FACTS, sc.VOICE_SESSION_TRANSCRIPT: "not json ["}
    provider.get_tracer("gateway").start_span(sc.SPAN_SESSION, attributes=attributes).end()
    assert exporter.export(memory.get_finished_spans()) is SpanExportResult.SUCCESS
    root = fake.spans[sc.SPAN_SESSION].attributes
    assert root["langfuse.observation.type"] == "agent"
    assert "langfuse.trace.input" not in root


def test_after_shutdown_export_fails_and_flush_still_answers(fake):
    exporter = LangfuseSpanExporter(host=fake.url, public_key=PUBLIC_KEY, secret_key=SECRET_KEY)
    exporter.shutdown()
    exporter.shutdown()
    assert exporter.export([any_span(exporter)]) is SpanExportResult.FAILURE
    assert exporter.force_flush() is True
    assert fake.spans == {}
