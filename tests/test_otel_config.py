from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from gateway.errors import ConfigError
from gateway.otel_config import load_telemetry
from gateway.settings import load_settings


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_no_config_means_embedded_defaults_without_exporters() -> None:
    t = load_telemetry(env={"VTG_SIGNING_KEY": "x" * 32})
    assert t.exporters == [] and t.source == "embedded defaults"
    assert t.provider.resource.attributes["service.name"] == "voice-trace-gateway"


def test_env_exporter_list_builds_one_processor_each() -> None:
    t = load_telemetry(env={"OTEL_TRACES_EXPORTER": "otlp,console", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                            "OTEL_SERVICE_NAME": "mine", "VTG_SIGNING_KEY": "x" * 32})
    assert [e.kind for e in t.exporters] == ["otlp_grpc", "console"]
    assert len({id(e.processor) for e in t.exporters}) == 2
    assert t.provider.resource.attributes["service.name"] == "mine"
    t.provider.shutdown()


def test_unknown_env_exporter_warns_and_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    t = load_telemetry(env={"OTEL_TRACES_EXPORTER": "nosuchthing", "VTG_SIGNING_KEY": "x" * 32})
    assert t.exporters == []
    assert "nosuchthing" in caplog.text


def test_bad_env_gateway_value_warns_and_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    s = load_settings(None, {"VTG_SESSION_IDLE_TIMEOUT_S": "soon", "VTG_SIGNING_KEY": "k"})
    assert s.session_idle_timeout_s == 300
    assert "VTG_SESSION_IDLE_TIMEOUT_S" in caplog.text


def test_file_gateway_settings_are_read_and_env_overrides_them(tmp_path: Path) -> None:
    path = write(tmp_path, 'file_format: "1.0"\ndistribution:\n  voice_gateway:\n'
                           "    session_idle_timeout_s: 42\n    capture_content: true\n")
    t = load_telemetry(path, env={"VTG_CAPTURE_CONTENT": "false", "VTG_SIGNING_KEY": "x" * 32})
    assert t.settings.session_idle_timeout_s == 42
    assert t.settings.capture_content == ()


def test_bad_gateway_setting_in_file_names_its_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, 'file_format: "1.0"\ndistribution:\n  voice_gateway:\n    session_idle_timeout_s: soon\n')
    with pytest.raises(ConfigError) as info:
        load_telemetry(path, env={})
    assert info.value.key == "distribution.voice_gateway.session_idle_timeout_s"


def test_schema_violation_names_the_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, 'file_format: "1.0"\ntracer_provider:\n  processors:\n    - batch:\n'
                           "        schedule_delay: -5\n        exporter:\n          console: {}\n")
    with pytest.raises(ConfigError) as info:
        load_telemetry(path, env={})
    assert "tracer_provider -> processors -> 0 -> batch -> schedule_delay" in str(info.value)


def test_two_batch_blocks_give_two_isolated_exporters(tmp_path: Path) -> None:
    path = write(tmp_path, 'file_format: "1.0"\ntracer_provider:\n  processors:\n'
                           "    - batch:\n        exporter:\n          otlp_http:\n"
                           "            endpoint: http://127.0.0.1:1/v1/traces\n"
                           "    - batch:\n        exporter:\n          otlp_http:\n"
                           "            endpoint: http://127.0.0.1:2/v1/traces\n")
    t = load_telemetry(path, env={"VTG_SIGNING_KEY": "x" * 32})
    assert [e.name for e in t.exporters] == ["otlp_http", "otlp_http_2"]
    assert [e.endpoint for e in t.exporters] == ["http://127.0.0.1:1/v1/traces", "http://127.0.0.1:2/v1/traces"]
    t.provider.shutdown()


def test_repo_default_config_loads() -> None:
    t = load_telemetry(str(REPO / "otel-config.yaml"), env={"VTG_SIGNING_KEY": "x" * 32})
    assert [e.kind for e in t.exporters] == ["otlp_http"]
    assert t.exporters[0].endpoint == "http://localhost:4318/v1/traces"
    assert t.meter_provider is not None and t.metric_exporters == ["reader[0]"]
    t.provider.shutdown()
    t.meter_provider.shutdown()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=REPO,
                          env={"PATH": "/usr/bin:/bin", **(env or {})}, timeout=60)


def test_check_config_prints_the_resolved_pipeline() -> None:
    r = run_cli("check-config", "--config", "otel-config.yaml")
    assert r.returncode == 0, r.stderr
    assert '"endpoint": "http://localhost:4318/v1/traces"' in r.stdout
    assert '"session_idle_timeout_s": 300' in r.stdout


def test_check_config_fails_naming_the_bad_key(tmp_path: Path) -> None:
    path = write(tmp_path, 'file_format: "1.0"\ndistribution:\n  voice_gateway:\n    idle: 5\n')
    r = run_cli("check-config", "--config", path)
    assert r.returncode == 2
    assert "distribution.voice_gateway.idle" in r.stderr


def test_langfuse_exporter_shows_its_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    # The exporter reads its keys from the process environment, as an entry-point exporter does.
    for key, value in {"LANGFUSE_HOST": "https://lf.example", "LANGFUSE_PUBLIC_KEY": "pk-lf-1",
                       "LANGFUSE_SECRET_KEY": "sk-lf-1"}.items():
        monkeypatch.setenv(key, value)
    t = load_telemetry(env={"VTG_SIGNING_KEY": "x" * 32, "OTEL_TRACES_EXPORTER": "langfuse"})
    assert [e.endpoint for e in t.exporters] == ["https://lf.example/api/public/otel/v1/traces"]
    t.provider.shutdown()
