"""How the Langfuse exporter is configured (arguments, environment, bad values named by key) and how it fails:
never raising from export(), whatever the server or the spans do."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from langfuse_server import (
    FACTS,
    PUBLIC_KEY,
    RESOURCE,
    SECRET_KEY,
    FakeLangfuse,
    any_span,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway import semconv as sc
from gateway.errors import ConfigError
from gateway.exporters.langfuse import LangfuseSpanExporter, langfuse_environment


@pytest.fixture
def fake() -> Iterator[FakeLangfuse]:
    with FakeLangfuse() as server:
        yield server


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
