"""A local server that plays Langfuse's OTel and score endpoints, and a voice session shaped like the gateway's
to export to it: what the Langfuse exporter's tests share."""

from __future__ import annotations

import base64
import gzip
import json
import math
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from gateway import semconv as sc
from gateway.exporters.langfuse import LangfuseSpanExporter

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
                try:
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (the never-answering endpoint's test): nothing to answer

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

    def __enter__(self) -> FakeLangfuse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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



def any_span(exporter: LangfuseSpanExporter, name: str = "user_speech") -> ReadableSpan:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.get_tracer("gateway").start_span(name, attributes=FACTS).end()
    return memory.get_finished_spans()[0]
