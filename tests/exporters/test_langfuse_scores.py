"""Session scores on the Langfuse path, against the fake Langfuse's /api/public/scores."""

from __future__ import annotations

import base64
import math
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from langfuse_server import AGENT, FACTS, PUBLIC_KEY, RESOURCE, SECRET_KEY, FakeLangfuse, run_session
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from gateway import semconv as sc
from gateway.errors import ConfigError
from gateway.exporters.langfuse import LangfuseSpanExporter
from gateway.exporters.langfuse_scores import ScorePoster, ScoreStats, session_scores

COMPLETED = {
    sc.VOICE_SESSION_END_REASON: "completed",
    sc.VOICE_SESSION_TURN_COUNT: 4,
    sc.VOICE_SESSION_INTERRUPTION_COUNT: 1,
    sc.VOICE_LATENCY_TTFA_P95_MS: 850.5,
    sc.VOICE_SESSION_TOOL_ERROR_COUNT: 2,
}
AUTHORIZATION = "Basic " + base64.b64encode(f"{PUBLIC_KEY}:{SECRET_KEY}".encode()).decode()


@pytest.fixture
def fake() -> Iterator[FakeLangfuse]:
    with FakeLangfuse() as server:
        yield server


def exporter_for(fake: FakeLangfuse, **settings: Any) -> LangfuseSpanExporter:
    return LangfuseSpanExporter(host=fake.url, public_key=PUBLIC_KEY, secret_key=SECRET_KEY, **settings)


def session(
    attributes: dict[str, Any], resource: Resource = RESOURCE, parent: SpanContext | None = None
) -> tuple[ReadableSpan, ReadableSpan]:
    """A finished session root with ``attributes`` and one finished turn under it: (root, turn)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("gateway")
    context = trace.set_span_in_context(NonRecordingSpan(parent)) if parent is not None else None
    root = tracer.start_span(sc.SPAN_SESSION, context, attributes={**FACTS, **attributes})
    turn_attributes = {**FACTS, sc.GEN_AI_OPERATION_NAME: sc.OPERATION_INVOKE_AGENT}
    tracer.start_span(f"{sc.SPAN_TURN} {AGENT}", trace.set_span_in_context(root), attributes=turn_attributes).end()
    root.end()
    turn, finished_root = memory.get_finished_spans()
    return finished_root, turn


def trace_id_of(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def without_ids(posts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in post.items() if key != "id"} for post in posts]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_completed_session_posts_outcome_interruption_rate_p95_and_tool_errors_on_its_trace(fake):
    root, turn = session(COMPLETED)
    exporter = exporter_for(fake)
    assert exporter.export([turn, root]) is SpanExportResult.SUCCESS
    assert fake.problems == []
    trace_id = trace_id_of(root)
    common = {"traceId": trace_id, "environment": "prod-eu"}
    assert without_ids(fake.score_posts) == [
        {**common, "name": "voice_session_outcome", "value": "completed", "dataType": "CATEGORICAL",
         "comment": "end reason: completed"},
        {**common, "name": "voice_interruption_rate", "value": 0.25, "dataType": "NUMERIC",
         "comment": "1 of 4 turns interrupted"},
        {**common, "name": "voice_time_to_first_audio_p95_ms", "value": 850.5, "dataType": "NUMERIC"},
        {**common, "name": "voice_tool_error_count", "value": 2, "dataType": "NUMERIC"},
    ]
    ids = [uuid.UUID(post["id"]) for post in fake.score_posts]
    assert len(set(ids)) == 4
    assert all(headers["content-type"] == "application/json" for headers in fake.score_headers)
    assert exporter.score_stats == ScoreStats(posted=4, failed=0, already_scored=0)
    assert set(fake.spans) == {sc.SPAN_SESSION, f"{sc.SPAN_TURN} {AGENT}"}


@pytest.mark.parametrize(
    ("end_reason", "outcome"),
    [
        ("completed", "completed"),
        ("user_disconnect", "completed"),
        ("timeout", "abandoned"),
        ("error", "abandoned"),
        ("gateway_shutdown", "abandoned"),
        ("tab_hidden", "abandoned"),
    ],
)
def test_end_reason_decides_whether_the_session_scores_completed_or_abandoned(fake, end_reason, outcome):
    root, _ = session({**COMPLETED, sc.VOICE_SESSION_END_REASON: end_reason})
    assert exporter_for(fake).export([root]) is SpanExportResult.SUCCESS
    assert fake.problems == []
    [score] = [post for post in fake.score_posts if post["name"] == "voice_session_outcome"]
    assert (score["value"], score["comment"]) == (outcome, f"end reason: {end_reason}")


def test_batch_without_a_session_root_posts_no_scores(fake):
    _, turn = session(COMPLETED)
    assert exporter_for(fake).export([turn]) is SpanExportResult.SUCCESS
    assert list(fake.spans) == [f"{sc.SPAN_TURN} {AGENT}"]
    assert fake.score_headers == []


def test_scores_are_posted_only_once_the_spans_are_exported(fake):
    root, turn = session(COMPLETED)
    exporter = exporter_for(fake)
    fake.status = 500
    assert exporter.export([turn, root]) is SpanExportResult.FAILURE
    assert fake.score_headers == []
    fake.status = 200
    assert exporter.export([turn, root]) is SpanExportResult.SUCCESS
    assert len(fake.score_posts) == 4
    assert fake.problems == []


def test_score_endpoint_error_is_counted_and_the_span_export_still_succeeds(fake):
    fake.score_status = 500
    root, turn = session(COMPLETED)
    exporter = exporter_for(fake)
    assert exporter.export([turn, root]) is SpanExportResult.SUCCESS
    assert sc.SPAN_SESSION in fake.spans
    assert len(fake.score_posts) == 4
    assert fake.scores == {}
    assert exporter.score_stats == ScoreStats(posted=0, failed=4, already_scored=0)


def test_score_endpoint_that_drops_the_connection_is_tried_once_per_batch_and_export_succeeds(fake):
    fake.score_mode = "drop"
    first, _ = session(COMPLETED)
    second, _ = session(COMPLETED)
    exporter = exporter_for(fake)
    assert exporter.export([first, second]) is SpanExportResult.SUCCESS
    assert sc.SPAN_SESSION in fake.spans
    assert len(fake.score_headers) == 1
    assert exporter.score_stats == ScoreStats(posted=0, failed=8, already_scored=0)


def test_score_endpoint_that_never_answers_costs_one_timeout_and_export_succeeds(fake):
    fake.score_mode = "hang"
    root, turn = session(COMPLETED)
    exporter = exporter_for(fake, timeout=300)
    assert exporter.export([turn, root]) is SpanExportResult.SUCCESS
    fake.release.set()
    assert len(fake.score_headers) == 1
    assert exporter.score_stats == ScoreStats(posted=0, failed=4, already_scored=0)


def test_unreachable_score_endpoint_is_counted_not_raised():
    root, _ = session(COMPLETED)
    poster = ScorePoster(f"http://127.0.0.1:{closed_port()}", AUTHORIZATION, timeout_s=1.0)
    poster.post([root])
    assert poster.stats == ScoreStats(posted=0, failed=4, already_scored=0)
    poster.close()


def test_same_root_exported_twice_posts_its_scores_once(fake):
    root, turn = session(COMPLETED)
    exporter = exporter_for(fake)
    assert exporter.export([turn, root]) is SpanExportResult.SUCCESS
    assert exporter.export([root]) is SpanExportResult.SUCCESS
    assert len(fake.score_posts) == 4
    assert exporter.score_stats == ScoreStats(posted=4, failed=0, already_scored=1)


def test_score_ids_are_stable_so_another_process_overwrites_instead_of_duplicating(fake):
    root, _ = session(COMPLETED)
    other, _ = session(COMPLETED)
    for exporter in (exporter_for(fake), exporter_for(fake)):
        assert exporter.export([root]) is SpanExportResult.SUCCESS
    assert len(fake.score_posts) == 8
    assert len(fake.scores) == 4
    assert exporter_for(fake).export([other]) is SpanExportResult.SUCCESS
    assert len(fake.scores) == 8


def test_root_without_score_attributes_posts_nothing_and_partial_root_posts_what_it_has(fake):
    bare, _ = session({})
    exporter = exporter_for(fake)
    assert exporter.export([bare]) is SpanExportResult.SUCCESS
    assert fake.score_headers == []
    partial, _ = session({sc.VOICE_SESSION_END_REASON: "timeout", sc.VOICE_SESSION_TURN_COUNT: 3})
    assert exporter.export([partial]) is SpanExportResult.SUCCESS
    assert [(post["name"], post["value"]) for post in fake.score_posts] == [("voice_session_outcome", "abandoned")]


@pytest.mark.parametrize(
    ("change", "missing"),
    [
        ({sc.VOICE_SESSION_END_REASON: "  "}, "voice_session_outcome"),
        ({sc.VOICE_SESSION_TURN_COUNT: 0}, "voice_interruption_rate"),
        ({sc.VOICE_SESSION_INTERRUPTION_COUNT: None}, "voice_interruption_rate"),
        ({sc.VOICE_SESSION_TURN_COUNT: 2.5}, "voice_interruption_rate"),
        ({sc.VOICE_LATENCY_TTFA_P95_MS: math.nan}, "voice_time_to_first_audio_p95_ms"),
        ({sc.VOICE_LATENCY_TTFA_P95_MS: -1}, "voice_time_to_first_audio_p95_ms"),
        ({sc.VOICE_LATENCY_TTFA_P95_MS: "850"}, "voice_time_to_first_audio_p95_ms"),
        ({sc.VOICE_SESSION_TOOL_ERROR_COUNT: True}, "voice_tool_error_count"),
        ({sc.VOICE_SESSION_TOOL_ERROR_COUNT: None}, "voice_tool_error_count"),
    ],
)
def test_missing_or_malformed_attribute_skips_only_its_score(change, missing):
    attributes = {key: value for key, value in {**COMPLETED, **change}.items() if value is not None}
    names = [score.name for score in session_scores(attributes)]
    expected = ["voice_session_outcome", "voice_interruption_rate", "voice_time_to_first_audio_p95_ms",
                "voice_tool_error_count"]
    assert names == [name for name in expected if name != missing]


def test_counts_reported_as_whole_floats_still_score():
    scores = {score.name: score.value for score in session_scores(
        {sc.VOICE_SESSION_TURN_COUNT: 5.0, sc.VOICE_SESSION_INTERRUPTION_COUNT: 2.0,
         sc.VOICE_SESSION_TOOL_ERROR_COUNT: 0.0}
    )}
    assert scores == {"voice_interruption_rate": 0.4, "voice_tool_error_count": 0}


def test_remembered_traces_are_bounded_and_forget_the_oldest_first(fake):
    roots = [session(COMPLETED)[0] for _ in range(3)]
    poster = ScorePoster(fake.url, AUTHORIZATION, timeout_s=2.0, remember=2)
    poster.post(roots)
    poster.post([roots[2]])
    assert poster.stats == ScoreStats(posted=12, failed=0, already_scored=1)
    poster.post([roots[0]])
    assert poster.stats == ScoreStats(posted=16, failed=0, already_scored=1)
    assert fake.problems == []
    poster.close()


def test_session_that_joined_a_callers_trace_is_scored_on_that_trace(fake):
    caller = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    root, _ = session(COMPLETED, parent=caller)
    assert exporter_for(fake).export([root]) is SpanExportResult.SUCCESS
    assert {post["traceId"] for post in fake.score_posts} == {f"{0xABC:032x}"}


def test_score_requests_carry_langfuse_auth_only_and_no_environment_when_the_trace_has_none(fake, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-key=collector-secret")
    root, _ = session(COMPLETED, resource=Resource.create({"service.name": "voice-trace-gateway"}))
    assert exporter_for(fake).export([root]) is SpanExportResult.SUCCESS
    assert fake.problems == []
    assert len(fake.score_posts) == 4
    assert not any("x-collector-key" in headers for headers in fake.score_headers)
    assert not any("environment" in post for post in fake.score_posts)


def test_exporter_session_posts_its_outcome_after_its_spans(fake):
    exporter = exporter_for(fake)
    originals = run_session(exporter)
    exporter.shutdown()
    trace_id = trace_id_of(originals[sc.SPAN_SESSION])
    assert fake.problems == []
    assert [(post["traceId"], post["name"], post["value"]) for post in fake.score_posts] == [
        (trace_id, "voice_session_outcome", "completed")
    ]


def test_scores_false_turns_scores_off(fake):
    exporter = exporter_for(fake, scores="false")
    root, _ = session(COMPLETED)
    assert exporter.export([root]) is SpanExportResult.SUCCESS
    assert sc.SPAN_SESSION in fake.spans
    assert fake.score_headers == []
    assert exporter.score_stats == ScoreStats()
    exporter.shutdown()


def test_scores_host_sends_scores_to_langfuse_when_host_is_a_collector(fake):
    langfuse = FakeLangfuse()
    try:
        exporter = exporter_for(fake, scores_host=langfuse.url + "/")
        root, _ = session(COMPLETED)
        assert exporter.export([root]) is SpanExportResult.SUCCESS
        assert sc.SPAN_SESSION in fake.spans and langfuse.spans == {}
        assert fake.score_headers == []
        assert len(langfuse.scores) == 4
        assert langfuse.problems == []
    finally:
        langfuse.close()


def test_collector_without_a_score_api_gets_a_warning_that_names_scores_host(fake, caplog):
    fake.score_status = 404
    root, _ = session(COMPLETED)
    exporter = exporter_for(fake)
    assert exporter.export([root]) is SpanExportResult.SUCCESS
    assert exporter.score_stats == ScoreStats(posted=0, failed=4, already_scored=0)
    assert "scores_host" in caplog.text


@pytest.mark.parametrize(
    ("settings", "key"), [({"scores": "maybe"}, "scores"), ({"scores_host": "langfuse:3000"}, "scores_host")]
)
def test_bad_score_settings_raise_config_error_naming_the_setting(settings, key):
    with pytest.raises(ConfigError) as error:
        LangfuseSpanExporter(public_key=PUBLIC_KEY, secret_key=SECRET_KEY, **settings)
    assert error.value.key == key
