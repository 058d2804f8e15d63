"""docker-compose.yml checked statically: every file parses, images are pinned, services, ports, mounts and
environment agree (no Docker engine runs here)."""

from __future__ import annotations

import re

import pytest
from stack_files import (
    ALL_YAML,
    COLLECTOR_CONFIGS,
    COLLECTORS_DIR,
    COMPOSE_FILE,
    DEPLOY_DIR,
    ROOT,
    _ids,
    bind_mounts,
    collector_config_path,
    collector_service,
    collector_vars,
    compose,
    compose_collector_config,
    compose_interpolate,
    compose_raw,
    container_ports,
    gateway_config_path,
    gateway_service,
    image_is_pinned,
    jaeger_service,
    langfuse_web_service,
    listeners,
    load_yaml,
    otel_vars,
    published_ports,
    service_env,
    services,
)


@pytest.mark.parametrize("path", ALL_YAML, ids=_ids(ALL_YAML))
def test_every_stack_yaml_file_parses_to_a_mapping(path):
    data = load_yaml(path)
    assert isinstance(data, dict) and data, f"{path.name} must be a non-empty YAML mapping"


def test_collectors_dir_has_a_pipeline_for_each_documented_setup():
    names = {p.stem for p in COLLECTOR_CONFIGS}
    assert {"jaeger", "langfuse", "tempo", "jaeger-and-langfuse", "loadbalancing"} <= names


@pytest.mark.parametrize("path", COLLECTOR_CONFIGS, ids=_ids(COLLECTOR_CONFIGS))
def test_every_collector_config_opens_with_a_when_to_use_header(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    assert header, f"{path.name} must open with a comment header"
    assert any("when to use" in line.lower() for line in header), f"{path.name}: header must say when to use it"


# ---- images -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "pinned"),
    [
        ("redis", False),
        ("redis:latest", False),
        ("docker.io/redis:7", False),
        ("docker.io/redis:7.4", False),
        ("docker.io/clickhouse/clickhouse-server:25.12", False),
        ("jaegertracing/jaeger:2.20", False),
        ("python:3.11-slim", False),
        ("docker.io/postgres:17", False),
        ("localhost:5000/gateway", False),
        ("localhost:5000/gateway:1.2", False),
        (compose_interpolate("postgres:${POSTGRES_VERSION:-latest}"), False),
        ("docker.io/redis:7.4.11", True),
        ("docker.io/clickhouse/clickhouse-server:25.12.9.61", True),
        ("docker.io/library/postgres:17.11", True),
        ("postgres:17.11", True),
        ("python:3.11.15-slim-trixie", True),
        ("otel/opentelemetry-collector-contrib:0.159.0", True),
        ("localhost:5000/gateway:1.2.3", True),
        ("localhost:5000/gateway:v1.2.3", True),
        ("quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z", True),
        ("python@sha256:" + "a" * 64, True),
    ],
)
def test_image_pin_check_tells_versions_from_floating_tags(reference, pinned):
    assert image_is_pinned(reference) is pinned


def test_every_compose_image_is_pinned_to_a_version():
    for name, service in services().items():
        assert "image" in service or "build" in service, f"service {name} has neither image nor build"
        if "image" in service and "build" not in service:
            assert image_is_pinned(service["image"]), f"service {name}: image {service['image']!r} is not pinned"


def test_compose_depends_on_targets_exist_and_healthy_targets_have_healthchecks():
    all_services = services()
    for name, service in all_services.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {target: {"condition": "service_started"} for target in depends}
        for target, spec in depends.items():
            assert target in all_services, f"{name} depends on unknown service {target!r}"
            condition = (spec or {}).get("condition", "service_started")
            assert condition in {"service_started", "service_healthy", "service_completed_successfully"}
            if condition == "service_healthy":
                assert "healthcheck" in all_services[target], f"{name} waits for {target} to be healthy"


def test_compose_bind_mounts_exist_in_the_repo_and_named_volumes_are_declared():
    declared = set((compose().get("volumes") or {}).keys())
    for name, service in services().items():
        for source, _ in bind_mounts(service):
            assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repo"
        for volume in service.get("volumes", []):
            source = volume.get("source") if isinstance(volume, dict) else volume.split(":")[0]
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} uses volume {source!r}, not declared under volumes:"


def test_compose_environment_values_are_strings_or_numbers():
    for name, service in compose_raw()["services"].items():
        env = service.get("environment") or {}
        if isinstance(env, dict):
            for key, value in env.items():
                assert not isinstance(value, bool), f"{name}.{key}: quote booleans, compose refuses them"


def test_compose_collector_runs_a_config_from_collectors_dir():
    path = collector_config_path()
    assert path.parent == COLLECTORS_DIR.resolve(), f"the compose collector runs {path}, not a collectors/ file"
    assert path.exists()


def test_compose_gateway_runs_a_config_from_deploy_dir():
    path = gateway_config_path()
    assert path.parent == DEPLOY_DIR.resolve(), f"the compose gateway runs {path}, not a deploy/ file"


def test_compose_publishes_gateway_jaeger_ui_and_langfuse_ui():
    all_services = services()
    assert 8080 in published_ports(all_services[gateway_service()])
    assert 16686 in published_ports(all_services[jaeger_service()])
    assert 3000 in published_ports(all_services[langfuse_web_service()])


def test_compose_gateway_sets_an_overridable_admin_key_so_the_host_browser_can_open_ui():
    # Published ports reach the container from the Docker bridge, not loopback: without a key /ui is 403.
    raw = compose_raw()["services"][gateway_service()]["environment"]["VTG_ADMIN_KEY"]
    assert re.fullmatch(r"\$\{VTG_ADMIN_KEY:-[^}]+\}", raw), "take VTG_ADMIN_KEY from the env, with a dev default"
    line = next(line for line in COMPOSE_FILE.read_text(encoding="utf-8").splitlines() if "VTG_ADMIN_KEY:" in line)
    assert "CHANGEME" in line, "mark the dev default like the other local secrets"
    key = service_env(services()[gateway_service()])["VTG_ADMIN_KEY"]
    assert key and compose_interpolate(raw, {"VTG_ADMIN_KEY": "from-env"}) == "from-env"
    settings = pytest.importorskip("gateway.settings")
    assert settings.load_settings(env={"VTG_ADMIN_KEY": key}).admin_key == key


_ADDRESS = re.compile(
    r"(?:(?P<scheme>[a-z][a-z0-9+.-]*)://)?(?:[^\s/@]+@)?(?P<host>[A-Za-z][A-Za-z0-9_.-]*):(?P<port>\d+)"
)


def test_compose_urls_use_ports_their_target_service_listens_on():
    all_services = services()
    host_ports = {port for svc in all_services.values() for port in published_ports(svc)}
    for name, service in all_services.items():
        for key, value in service_env(service).items():
            for match in _ADDRESS.finditer(value):
                host, port = match["host"], int(match["port"])
                if host in all_services:
                    listening = container_ports(all_services[host])
                    assert port in listening, f"{name}.{key}={value}: {host} listens on {sorted(listening)}"
                elif host == "localhost":
                    assert port in host_ports, f"{name}.{key}={value}: no service publishes {port}"


def test_collector_listens_on_every_port_compose_exposes_for_it():
    config, env = compose_collector_config()
    bound = set(listeners(config, env))
    exposed = container_ports(services()[collector_service()])
    assert exposed == bound, f"compose exposes {sorted(exposed)}, the collector config binds {sorted(bound)}"


# ---- gateway -> collector -> backends ---------------------------------------------------------


def test_compose_collector_gets_every_env_var_its_config_requires():
    text = collector_config_path().read_text(encoding="utf-8")
    env = service_env(services()[collector_service()])
    missing = {name for name, default in collector_vars(text) if default is None and not env.get(name)}
    assert not missing, f"the compose collector's config needs {sorted(missing)}, which compose does not set"


def test_compose_gateway_gets_every_env_var_its_config_requires():
    text = gateway_config_path().read_text(encoding="utf-8")
    env = service_env(services()[gateway_service()])
    missing = {name for name, default in otel_vars(text) if default is None and not env.get(name)}
    assert not missing, f"the compose gateway's config needs {sorted(missing)}, which compose does not set"


# ---- gateway configs load with the real OTel loader ----------------------------------------------
