"""What the Langfuse exporter sends for a voice session: observation types, input and output, usage and cost
keys, trace names, sessions, users and tags, as Langfuse's OTel endpoint reads them."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from langfuse_server import (
    AGENT,
    FACTS,
    MODEL,
    MODEL_MESSAGES,
    PUBLIC_KEY,
    SECRET_KEY,
    TOOL_ARGUMENTS,
    TOOL_RESULT,
    USER_MESSAGES,
    FakeLangfuse,
    Received,
    run_session,
)
from opentelemetry import trace
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from gateway import semconv as sc
from gateway.exporters.langfuse import LangfuseSpanExporter, usage_details


@pytest.fixture
def fake() -> Iterator[FakeLangfuse]:
    with FakeLangfuse() as server:
        yield server


@pytest.fixture(scope="module")
def session() -> Iterator[tuple[FakeLangfuse, dict[str, ReadableSpan]]]:
    with FakeLangfuse() as server:
        exporter = LangfuseSpanExporter(host=server.url, public_key=PUBLIC_KEY, secret_key=SECRET_KEY)
        originals = run_session(exporter)
        exporter.shutdown()
        yield server, originals


@pytest.fixture
def langfuse(session: tuple[FakeLangfuse, dict[str, ReadableSpan]]) -> dict[str, Received]:
    return session[0].spans


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
