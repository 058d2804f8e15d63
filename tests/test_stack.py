"""Static checks of the deployable stack: Dockerfile, docker-compose.yml, collectors/, deploy/.

No Docker engine runs where these tests run, so nothing is started: the files are parsed and
cross-checked. Service names, ports, credentials and endpoints must agree between the compose
file, the collector pipelines it mounts, the gateway config in deploy/ and otel-config.yaml; the
gateway configs must load with the real OTel declarative-config loader; every image is pinned.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from opentelemetry.configuration import load_config_file

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COLLECTORS_DIR = ROOT / "collectors"
DEPLOY_DIR = ROOT / "deploy"
DEFAULT_GATEWAY_CONFIG = ROOT / "otel-config.yaml"

LANGFUSE_OTEL_PATH = "/api/public/otel"
LANGFUSE_TRACES_PATH = LANGFUSE_OTEL_PATH + "/v1/traces"
OTLP_TRACES_PATH = "/v1/traces"
OTLP_METRICS_PATH = "/v1/metrics"


def _yaml_files(directory: Path) -> list[Path]:
    return sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])


COLLECTOR_CONFIGS = _yaml_files(COLLECTORS_DIR)
DEPLOY_CONFIGS = _yaml_files(DEPLOY_DIR)
GATEWAY_CONFIGS = [*DEPLOY_CONFIGS, DEFAULT_GATEWAY_CONFIG]
ALL_YAML = [COMPOSE_FILE, *COLLECTOR_CONFIGS, *DEPLOY_CONFIGS, DEFAULT_GATEWAY_CONFIG]


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


# ---- variable substitution, one dialect per tool ----------------------------------------------

# docker compose: $$ escapes; ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, $VAR.
_COMPOSE_VAR = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)
# OTel declarative config: $$ escapes; ${VAR} and ${VAR:-default}.
_OTEL_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
# Collector: ${env:VAR}, ${env:VAR:-default} (and ${VAR}, which defaults to the env provider).
_COLLECTOR_VAR = re.compile(r"\$\{(?:env:)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def compose_interpolate(text: str, env: Mapping[str, str] | None = None) -> str:
    """What docker compose makes of a value, given `env` (the defaults alone when None)."""
    env = env or {}

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        value = env.get(name)
        op, arg = match.group("op"), match.group("arg") or ""
        if op == ":-":
            return value if value else arg
        if op == "-":
            return arg if value is None else value
        if op == ":+":
            return arg if value else ""
        if op == "+":
            return arg if value is not None else ""
        if op in (":?", "?") and not value:
            raise AssertionError(f"compose variable {name} is required ({arg})")
        return value or ""

    return _COMPOSE_VAR.sub(replace, text)


def otel_vars(text: str) -> list[tuple[str, str | None]]:
    """The (name, default) variable references in an OTel declarative config text."""
    return [(m["name"], m["default"]) for m in _OTEL_VAR.finditer(text) if m["name"]]


def collector_vars(text: str) -> list[tuple[str, str | None]]:
    return [(m["name"], m["default"]) for m in _COLLECTOR_VAR.finditer(text)]


def collector_resolve(value: Any, env: Mapping[str, str]) -> Any:
    """Resolve ${env:...} references in a collector config value (recursively)."""
    if isinstance(value, str):
        return _COLLECTOR_VAR.sub(lambda m: env.get(m["name"]) or (m["default"] or ""), value)
    if isinstance(value, list):
        return [collector_resolve(v, env) for v in value]
    if isinstance(value, dict):
        return {k: collector_resolve(v, env) for k, v in value.items()}
    return value


def _walk_strings(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [_walk_strings(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: _walk_strings(v, fn) for k, v in value.items()}
    return value


# ---- docker-compose.yml ------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose_raw() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


def compose() -> dict[str, Any]:
    """docker-compose.yml as compose sees it with no .env file: variables take their defaults."""
    return _walk_strings(compose_raw(), compose_interpolate)


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def service_env(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {k: v for k, v in pairs}
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _port_spec(spec: Any) -> tuple[int | None, int]:
    """(host port or None, container port) of a compose `ports`/`expose` entry."""
    if isinstance(spec, dict):
        published = spec.get("published")
        return (int(published) if published else None, int(spec["target"]))
    parts = str(spec).split("/")[0].split(":")
    container = int(parts[-1])
    host = int(parts[-2]) if len(parts) >= 2 and parts[-2] else None
    return host, container


def container_ports(service: Mapping[str, Any]) -> set[int]:
    specs = [*service.get("expose", []), *service.get("ports", [])]
    return {_port_spec(spec)[1] for spec in specs}


def published_ports(service: Mapping[str, Any]) -> set[int]:
    return {host for host, _ in map(_port_spec, service.get("ports", [])) if host is not None}


def bind_mounts(service: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of every bind mount; named volumes are left out."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/", "~")):
            mounts.append((source, target))
    return mounts


def find_service(predicate: Callable[[str, dict[str, Any]], bool], what: str) -> str:
    names = [name for name, svc in services().items() if predicate(name, svc)]
    assert len(names) == 1, f"expected exactly one {what} service in docker-compose.yml, found {names}"
    return names[0]


def image_of(service: Mapping[str, Any]) -> str:
    return str(service.get("image", ""))


def gateway_service() -> str:
    return find_service(lambda _, svc: "build" in svc, "gateway (built from the Dockerfile)")


def collector_service() -> str:
    return find_service(lambda _, svc: "opentelemetry-collector" in image_of(svc), "OTel Collector")


def jaeger_service() -> str:
    return find_service(lambda _, svc: "jaegertracing/" in image_of(svc), "Jaeger")


def langfuse_web_service() -> str:
    return find_service(lambda _, svc: re.search(r"langfuse/langfuse:", image_of(svc)) is not None, "Langfuse web")


def langfuse_worker_service() -> str:
    return find_service(lambda _, svc: "langfuse/langfuse-worker:" in image_of(svc), "Langfuse worker")


def mounted_repo_file(service_name: str, target: str) -> Path:
    service = services()[service_name]
    for source, mount_target in bind_mounts(service):
        if mount_target == target:
            return (ROOT / source).resolve()
    raise AssertionError(f"service {service_name} mounts nothing at {target}")


def collector_config_path() -> Path:
    """The collectors/ file the compose collector runs (the one passed with --config)."""
    name = collector_service()
    command = services()[name].get("command") or []
    args = shlex.split(command) if isinstance(command, str) else list(command)
    config_args = [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    config_args += [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"]
    assert len(config_args) == 1, f"{name} must run exactly one --config file, got {args}"
    return mounted_repo_file(name, config_args[0])


def gateway_config_path() -> Path:
    name = gateway_service()
    env = service_env(services()[name])
    assert "OTEL_CONFIG_FILE" in env, f"{name} must select its config file with OTEL_CONFIG_FILE"
    return mounted_repo_file(name, env["OTEL_CONFIG_FILE"])


# ---- collector configs -------------------------------------------------------------------------

# Component types of otelcol-contrib 0.159.0 used in collectors/. Deprecated aliases are refused so
# the configs keep working when the aliases go away.
KNOWN_COMPONENTS = {
    "receivers": {"otlp"},
    "processors": {"batch", "memory_limiter"},
    "exporters": {"otlp_grpc", "otlp_http", "load_balancing", "debug"},
    "extensions": {"health_check", "basicauth"},
}
DEPRECATED_ALIASES = {"exporters": {"otlp": "otlp_grpc", "otlphttp": "otlp_http", "loadbalancing": "load_balancing"}}
SIGNALS = {"traces", "metrics", "logs", "profiles"}


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def listeners(config: Mapping[str, Any], env: Mapping[str, str] | None = None) -> dict[int, dict[str, Any]]:
    """Port -> {receiver, protocol, path} for every port the collector config listens on."""
    config = collector_resolve(config, env or {})
    ports: dict[int, dict[str, Any]] = {}

    def add(port: int, entry: dict[str, Any]) -> None:
        assert port not in ports, f"port {port} is bound twice: {ports[port]} and {entry}"
        ports[port] = entry

    for receiver_id, receiver in (config.get("receivers") or {}).items():
        protocols = (receiver or {}).get("protocols") or {}
        if "grpc" in protocols:
            endpoint = (protocols["grpc"] or {}).get("endpoint", "localhost:4317")
            add(int(endpoint.rsplit(":", 1)[1]), {"receiver": receiver_id, "protocol": "grpc"})
        if "http" in protocols:
            http = protocols["http"] or {}
            endpoint = http.get("endpoint", "localhost:4318")
            path = http.get("traces_url_path", OTLP_TRACES_PATH)
            metrics_path = http.get("metrics_url_path", OTLP_METRICS_PATH)
            add(
                int(endpoint.rsplit(":", 1)[1]),
                {"receiver": receiver_id, "protocol": "http", "path": path, "metrics_path": metrics_path},
            )
    for extension_id, extension in (config.get("extensions") or {}).items():
        endpoint = (extension or {}).get("endpoint")
        if component_type(extension_id) == "health_check" and endpoint:
            add(int(endpoint.rsplit(":", 1)[1]), {"extension": extension_id, "protocol": "http"})
    return ports


def pipelines_of(config: Mapping[str, Any], signal: str) -> dict[str, dict[str, Any]]:
    """The service pipelines carrying `signal` (`traces`, `traces/jaeger`, ...)."""
    pipelines = config["service"].get("pipelines") or {}
    return {name: p for name, p in pipelines.items() if component_type(name) == signal}


def exporters_fed_by(config: Mapping[str, Any], receiver_id: str, signal: str) -> set[str]:
    pipelines = pipelines_of(config, signal).values()
    return {e for p in pipelines if receiver_id in p.get("receivers", []) for e in p["exporters"]}


def endpoint_host_port(endpoint: str) -> tuple[str, int, str]:
    """(host, port, path) of `http://host:port/path` or `host:port`."""
    parts = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}")
    assert parts.hostname and parts.port, f"endpoint {endpoint!r} must name a host and a port"
    return parts.hostname, parts.port, parts.path


def compose_collector_config() -> tuple[dict[str, Any], dict[str, str]]:
    config = load_yaml(collector_config_path())
    return config, service_env(services()[collector_service()])


# ---- gateway configs (OTel declarative format) -------------------------------------------------


def load_gateway_config(path: Path, monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> Any:
    """Load with the real OTel loader, the environment being exactly `env` for the referenced vars."""
    for name, _ in otel_vars(path.read_text(encoding="utf-8")):
        if name in env:
            monkeypatch.setenv(name, env[name])
        else:
            monkeypatch.delenv(name, raising=False)
    return load_config_file(path)


def gateway_metric_exporters(config: Any) -> Iterator[tuple[str, Any]]:
    """(exporter type, its settings) for every push (periodic) metric reader of a loaded config."""
    for reader in (config.meter_provider.readers if config.meter_provider else None) or []:
        if reader.periodic is None:
            continue
        exporter = reader.periodic.exporter
        for name in ("otlp_http", "otlp_grpc", "otlp_file_development", "console"):
            if getattr(exporter, name, None) is not None:
                yield name, getattr(exporter, name)
        yield from (getattr(exporter, "additional_properties", None) or {}).items()


def gateway_exporters(config: Any) -> Iterator[tuple[str, Any]]:
    """(exporter type, its settings) for every span processor of a loaded config."""
    for processor in config.tracer_provider.processors:
        span_processor = processor.batch or processor.simple
        exporter = span_processor.exporter
        for name in ("otlp_http", "otlp_grpc", "otlp_file_development", "console"):
            if getattr(exporter, name) is not None:
                yield name, getattr(exporter, name)
        yield from getattr(exporter, "additional_properties", {}).items()


def deployed_gateway_config(monkeypatch: pytest.MonkeyPatch) -> Any:
    env = service_env(services()[gateway_service()])
    return load_gateway_config(gateway_config_path(), monkeypatch, env)


def only_exporter(config: Any, kind: str) -> Any:
    found = [settings for name, settings in gateway_exporters(config) if name == kind]
    assert len(found) == 1, f"expected one {kind} exporter in the deployed gateway config, found {len(found)}"
    return found[0]


# ---- Dockerfile ----------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    lines = DOCKERFILE.read_text(encoding="utf-8").splitlines()
    joined, current = [], ""
    for line in lines:
        if not current and line.strip().startswith("#"):
            continue
        current += line.rstrip("\\").rstrip() + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            if current.strip():
                joined.append(current.strip())
            current = ""
    return [(ins.split(None, 1)[0].upper(), ins.split(None, 1)[1] if " " in ins else "") for ins in joined]


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction, args in dockerfile_instructions():
        if instruction == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction, args))
    return stages


def dockerfile_base_images() -> list[str]:
    args: dict[str, str] = {}
    images, stage_names = [], set()
    for instruction, value in dockerfile_instructions():
        if instruction == "ARG" and "=" in value and not images:
            name, default = value.split("=", 1)
            args[name.strip()] = default.strip()
        if instruction == "FROM":
            words = [w for w in value.split() if not w.startswith("--")]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), ""), words[0])
            if image not in stage_names:
                images.append(image)
            if len(words) >= 3 and words[1].upper() == "AS":
                stage_names.add(words[2])
    return images


def exec_form(args: str) -> list[str]:
    return list(yaml.safe_load(args)) if args.strip().startswith("[") else shlex.split(args)


# ---- image pinning ---------------------------------------------------------------------------------


# Vendors whose release numbers have two parts, the second being the patch (PostgreSQL 10+:
# 17.11). Everyone else in the stack publishes major.minor.patch tags next to floating major.minor
# ones (clickhouse-server:25.12 moves with every 25.12.x), so two parts are not a pin for them.
TWO_PART_RELEASES = {"postgres"}


def image_repository_and_tag(reference: str) -> tuple[str, str]:
    """(repository without registry or library/, tag or "") of an image reference."""
    name = reference.split("@", 1)[0]
    path, _, last = name.rpartition("/")
    last, _, tag = last.partition(":")
    parts = [*path.split("/"), last] if path else [last]
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]  # registry host
    if parts[:1] == ["library"]:
        parts = parts[1:]
    return "/".join(parts), tag


def image_is_pinned(reference: str) -> bool:
    """True for a digest, a dated release (RELEASE.2025-09-07...) or a full version tag: major.minor.patch
    (7.4.11, 25.12.9.61, 3.11.15-slim), or major.minor for TWO_PART_RELEASES; never latest or a floating 25.12."""
    if "@sha256:" in reference:
        return True
    repository, tag = image_repository_and_tag(reference)
    if not tag or tag == "latest" or "$" in tag:
        return False
    if re.search(r"\d{4}-\d{2}-\d{2}", tag):
        return True
    parts = 2 if repository in TWO_PART_RELEASES else 3
    return re.match(rf"v?\d+(\.\d+){{{parts - 1}}}", tag) is not None


# =================================================================================================
# Tests
# =================================================================================================


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


def test_dockerfile_base_images_are_pinned_python_311_slim():
    images = dockerfile_base_images()
    assert images, "Dockerfile has no FROM"
    for image in images:
        assert image_is_pinned(image), f"Dockerfile base image {image!r} is not pinned"
        assert re.fullmatch(r"(docker\.io/(library/)?)?python:3\.11\.\d+-slim(-\w+)?(@sha256:\w+)?", image), image


# ---- compose wiring -----------------------------------------------------------------------------


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


def test_gateway_otlp_stream_reaches_the_collector_otlp_receiver(monkeypatch):
    config = deployed_gateway_config(monkeypatch)
    host, port, path = endpoint_host_port(only_exporter(config, "otlp_http").endpoint)
    assert host == collector_service(), f"gateway OTLP endpoint names {host}, not the collector service"
    ports = listeners(*compose_collector_config())
    assert port in ports and ports[port]["protocol"] == "http", f"the collector has no OTLP/HTTP receiver on {port}"
    assert path == ports[port]["path"] == OTLP_TRACES_PATH


def test_gateway_langfuse_stream_reaches_the_collector_langfuse_receiver(monkeypatch):
    config = deployed_gateway_config(monkeypatch)
    host, port, path = endpoint_host_port(only_exporter(config, "langfuse")["host"])
    assert host == collector_service(), f"gateway langfuse host names {host}, not the collector service"
    assert path in ("", "/")
    ports = listeners(*compose_collector_config())
    assert port in ports, f"the collector listens on nothing at {port}"
    assert ports[port]["protocol"] == "http" and ports[port]["path"] == LANGFUSE_TRACES_PATH


def test_collector_sends_clean_spans_to_jaeger_and_the_langfuse_view_to_langfuse_only(monkeypatch):
    config, env = compose_collector_config()
    resolved = collector_resolve(config, env)
    ports = listeners(config, env)
    gateway = deployed_gateway_config(monkeypatch)
    otlp_port = endpoint_host_port(only_exporter(gateway, "otlp_http").endpoint)[1]
    langfuse_port = endpoint_host_port(only_exporter(gateway, "langfuse")["host"])[1]

    def targets(receiver_port: int) -> set[str]:
        exporters = exporters_fed_by(resolved, ports[receiver_port]["receiver"], "traces")
        return {endpoint_host_port(resolved["exporters"][e]["endpoint"])[0] for e in exporters}

    assert targets(otlp_port) == {jaeger_service()}, "the clean OTLP stream must go to Jaeger only"
    assert targets(langfuse_port) == {langfuse_web_service()}, "the Langfuse view must go to Langfuse only"


def test_gateway_metrics_reach_the_collector_otlp_receiver(monkeypatch):
    config = deployed_gateway_config(monkeypatch)
    assert config.meter_provider is not None, "the compose gateway config needs a meter_provider"
    exporters = list(gateway_metric_exporters(config))
    assert [name for name, _ in exporters] == ["otlp_http"], f"expected one OTLP/HTTP metric reader, got {exporters}"
    host, port, path = endpoint_host_port(exporters[0][1].endpoint)
    assert host == collector_service(), f"gateway metrics endpoint names {host}, not the collector service"
    ports = listeners(*compose_collector_config())
    assert port in ports and ports[port]["protocol"] == "http", f"the collector has no OTLP/HTTP receiver on {port}"
    assert component_type(ports[port]["receiver"]) == "otlp"
    assert path == ports[port]["metrics_path"] == OTLP_METRICS_PATH


def test_collector_metrics_pipeline_takes_the_gateway_metrics_and_sends_none_to_langfuse(monkeypatch):
    config, env = compose_collector_config()
    resolved = collector_resolve(config, env)
    metrics = pipelines_of(resolved, "metrics")
    assert metrics, f"{collector_config_path().name} has no metrics pipeline: the gateway's metrics would be refused"
    gateway = deployed_gateway_config(monkeypatch)
    port = endpoint_host_port(dict(gateway_metric_exporters(gateway))["otlp_http"].endpoint)[1]
    receiver = listeners(config, env)[port]["receiver"]
    assert exporters_fed_by(resolved, receiver, "metrics"), f"no metrics pipeline receives from {receiver}"
    for pipeline in metrics.values():
        for exporter_id in pipeline["exporters"]:
            endpoint = str((resolved["exporters"][exporter_id] or {}).get("endpoint", ""))
            assert LANGFUSE_OTEL_PATH not in endpoint, f"{exporter_id}: Langfuse takes no metrics"


def test_collector_jaeger_exporter_targets_the_jaeger_service_otlp_grpc_port():
    config, env = compose_collector_config()
    resolved = collector_resolve(config, env)
    jaeger = jaeger_service()
    found = []
    for exporter_id, exporter in resolved["exporters"].items():
        if not (exporter or {}).get("endpoint"):
            continue  # e.g. debug
        host, port, _ = endpoint_host_port(exporter["endpoint"])
        if host == jaeger:
            found.append(exporter_id)
            assert component_type(exporter_id) == "otlp_grpc", f"{exporter_id}: Jaeger takes OTLP gRPC on 4317"
            assert port == 4317 and port in container_ports(services()[jaeger])
            assert exporter.get("tls", {}).get("insecure") is True, "Jaeger in compose speaks plain-text gRPC"
    assert found, f"no exporter in {collector_config_path().name} targets the {jaeger} service"


def test_collector_langfuse_exporter_targets_langfuse_web_on_its_otel_path():
    config, env = compose_collector_config()
    resolved = collector_resolve(config, env)
    web = langfuse_web_service()
    endpoints = [
        exporter["endpoint"]
        for exporter in resolved["exporters"].values()
        if LANGFUSE_OTEL_PATH in (exporter or {}).get("endpoint", "")
    ]
    assert len(endpoints) == 1, f"expected one Langfuse exporter, found {endpoints}"
    host, port, path = endpoint_host_port(endpoints[0])
    assert host == web and port in container_ports(services()[web])
    assert path == LANGFUSE_OTEL_PATH


def test_langfuse_keys_used_by_collector_and_gateway_are_the_preprovisioned_project_keys(monkeypatch):
    all_services = services()
    init = service_env(all_services[langfuse_web_service()])
    public, secret = init["LANGFUSE_INIT_PROJECT_PUBLIC_KEY"], init["LANGFUSE_INIT_PROJECT_SECRET_KEY"]
    assert public.startswith("pk-lf-") and secret.startswith("sk-lf-")
    assert init.get("LANGFUSE_INIT_ORG_ID") and init.get("LANGFUSE_INIT_PROJECT_ID"), "keys need an org and project"

    config, env = compose_collector_config()
    resolved = collector_resolve(config, env)
    exporters = [e for e in resolved["exporters"].values() if "auth" in (e or {})]
    auths = [resolved["extensions"][e["auth"]["authenticator"]] for e in exporters]
    assert auths, "the collector must authenticate to Langfuse"
    for auth in auths:
        assert auth["client_auth"] == {"username": public, "password": secret}

    gateway = only_exporter(deployed_gateway_config(monkeypatch), "langfuse")
    assert (gateway["public_key"], gateway["secret_key"]) == (public, secret)


def test_langfuse_init_settings_create_a_user_that_langfuse_accepts():
    init = service_env(services()[langfuse_web_service()])
    assert re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", init["LANGFUSE_INIT_USER_EMAIL"])
    password = init["LANGFUSE_INIT_USER_PASSWORD"]
    # Langfuse's password policy: 8+ characters with a letter, a digit and a special character.
    assert len(password) >= 8 and re.search(r"[A-Za-z]", password) and re.search(r"\d", password)
    assert re.search(r"[^A-Za-z0-9]", password)


def test_langfuse_storage_settings_match_the_storage_services():
    all_services = services()
    web = service_env(all_services[langfuse_web_service()])
    worker = service_env(all_services[langfuse_worker_service()])
    browser_facing = {"LANGFUSE_S3_MEDIA_UPLOAD_ENDPOINT"}
    for key in worker.keys() - browser_facing:
        assert web.get(key) == worker[key], f"langfuse web and worker disagree on {key}"

    for env in (web, worker):
        db = urlsplit(env["DATABASE_URL"])
        postgres = service_env(all_services[db.hostname])
        assert (db.username, db.password) == (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"])
        assert db.path.lstrip("/") == postgres["POSTGRES_DB"]

        clickhouse_host = urlsplit(env["CLICKHOUSE_URL"]).hostname
        assert urlsplit(env["CLICKHOUSE_MIGRATION_URL"]).hostname == clickhouse_host
        clickhouse = service_env(all_services[clickhouse_host])
        assert (env["CLICKHOUSE_USER"], env["CLICKHOUSE_PASSWORD"]) == (
            clickhouse["CLICKHOUSE_USER"],
            clickhouse["CLICKHOUSE_PASSWORD"],
        )
        assert env["CLICKHOUSE_CLUSTER_ENABLED"] == "false", "a single ClickHouse node has no cluster"

        redis = all_services[env["REDIS_HOST"]]
        assert int(env["REDIS_PORT"]) in container_ports(redis)
        command = redis.get("command") or []
        args = shlex.split(command) if isinstance(command, str) else command
        assert env["REDIS_AUTH"] == args[args.index("--requirepass") + 1], "REDIS_AUTH must be redis's password"

        assert re.fullmatch(r"[0-9a-f]{64}", env["ENCRYPTION_KEY"]), "ENCRYPTION_KEY must be 64 hex characters"
        assert env["SALT"]

        for bucket_kind in ("EVENT", "MEDIA"):
            prefix = f"LANGFUSE_S3_{bucket_kind}_UPLOAD_"
            s3_host = urlsplit(env[prefix + "ENDPOINT"]).hostname
            minio_name = s3_host if s3_host in all_services else "minio"
            minio = all_services[minio_name]
            minio_env = service_env(minio)
            assert env[prefix + "ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"]
            assert env[prefix + "SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]
            assert f"/data/{env[prefix + 'BUCKET']}" in str(minio.get("command")), "the bucket must be created"
    assert "NEXTAUTH_SECRET" in web and "NEXTAUTH_URL" in web


# ---- env vars referenced by configs are provided --------------------------------------------------


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


@pytest.mark.parametrize("path", GATEWAY_CONFIGS, ids=_ids(GATEWAY_CONFIGS))
def test_gateway_config_loads_with_the_otel_declarative_config_loader(path, monkeypatch):
    env = {"LANGFUSE_PUBLIC_KEY": "pk-lf-test", "LANGFUSE_SECRET_KEY": "sk-lf-test"}
    config = load_gateway_config(path, monkeypatch, env)
    assert config.file_format.split("-")[0] == "1.0"
    exporters = list(gateway_exporters(config))
    assert exporters, f"{path.name} configures no exporter"
    for name, settings in exporters:
        assert settings is not None, f"{path.name}: exporter {name} has no settings"
    section = (config.distribution or {}).get("voice_gateway")
    assert isinstance(section, dict), f"{path.name} needs distribution.voice_gateway"


@pytest.mark.parametrize("path", GATEWAY_CONFIGS, ids=_ids(GATEWAY_CONFIGS))
def test_gateway_itself_accepts_the_config_in_the_environment_compose_gives_it(path, monkeypatch, capsys):
    cli = pytest.importorskip("gateway.__main__")
    for name in list(os.environ):
        if name.startswith(("OTEL_", "LANGFUSE_", "VTG_")):
            monkeypatch.delenv(name)
    env = service_env(services()[gateway_service()])
    env.pop("OTEL_CONFIG_FILE", None)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # `voice-trace-gateway check-config` builds the whole pipeline (exporters, gateway settings)
    # without serving, and exits 2 naming the bad key when anything is off.
    code = cli.main(["check-config", "--config", str(path)])
    assert code == 0, capsys.readouterr().err


def test_default_gateway_config_otlp_endpoint_matches_the_collectors_otlp_receivers(monkeypatch):
    config = load_gateway_config(DEFAULT_GATEWAY_CONFIG, monkeypatch, {})
    _, port, path = endpoint_host_port(only_exporter(config, "otlp_http").endpoint)
    for collector in COLLECTOR_CONFIGS:
        data = load_yaml(collector)
        if "otlp" in (data.get("receivers") or {}):
            entry = listeners(data).get(port)
            assert entry and entry["receiver"] == "otlp", f"{collector.name}: no OTLP/HTTP receiver on {port}"
            assert entry["path"] == path == OTLP_TRACES_PATH


# ---- collector configs are internally consistent ---------------------------------------------------


@pytest.mark.parametrize("path", COLLECTOR_CONFIGS, ids=_ids(COLLECTOR_CONFIGS))
def test_collector_pipelines_use_only_defined_components_and_define_only_used_ones(path):
    config = load_yaml(path)
    for section in ("receivers", "exporters", "service"):
        assert config.get(section), f"{path.name} has no {section}"
    pipelines = config["service"].get("pipelines") or {}
    assert pipelines, f"{path.name} has no service.pipelines"
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for pipeline_id, pipeline in pipelines.items():
        assert component_type(pipeline_id) in SIGNALS, f"{path.name}: pipeline {pipeline_id} is no signal"
        assert pipeline.get("receivers") and pipeline.get("exporters"), f"{path.name}: {pipeline_id} is incomplete"
        for kind in used:
            for component_id in pipeline.get(kind) or []:
                assert component_id in (config.get(kind) or {}), (
                    f"{path.name}: {pipeline_id} uses undefined {component_id}"
                )
                used[kind].add(component_id)
    for kind, ids in used.items():
        unused = set(config.get(kind) or {}) - ids
        assert not unused, f"{path.name}: {kind} {sorted(unused)} are defined but in no pipeline"

    enabled = set(config["service"].get("extensions") or [])
    assert enabled == set(config.get("extensions") or {}), f"{path.name}: extensions defined != enabled"
    for kind in ("receivers", "exporters"):
        for component_id, component in (config.get(kind) or {}).items():
            text = yaml.safe_dump(component)
            for authenticator in re.findall(r"authenticator: (\S+)", text):
                assert authenticator in enabled, f"{path.name}: {component_id} uses disabled {authenticator}"


@pytest.mark.parametrize("path", COLLECTOR_CONFIGS, ids=_ids(COLLECTOR_CONFIGS))
def test_collector_components_exist_in_the_pinned_contrib_release(path):
    config = load_yaml(path)
    for kind, known in KNOWN_COMPONENTS.items():
        for component_id in config.get(kind) or {}:
            kind_type = component_type(component_id)
            renamed = DEPRECATED_ALIASES.get(kind, {}).get(kind_type)
            assert not renamed, f"{path.name}: {kind} type {kind_type!r} is deprecated, use {renamed!r}"
            assert kind_type in known, f"{path.name}: unknown {kind} type {kind_type!r}"


@pytest.mark.parametrize("path", COLLECTOR_CONFIGS, ids=_ids(COLLECTOR_CONFIGS))
def test_collector_receivers_listen_on_all_interfaces_without_port_clashes(path):
    config = load_yaml(path)
    for port, entry in listeners(config).items():
        assert 0 < port < 65536, entry
    for receiver in (config.get("receivers") or {}).values():
        for protocol in ((receiver or {}).get("protocols") or {}).values():
            assert str((protocol or {}).get("endpoint", "")).startswith("0.0.0.0:"), "bind 0.0.0.0 in containers"


@pytest.mark.parametrize("path", COLLECTOR_CONFIGS, ids=_ids(COLLECTOR_CONFIGS))
def test_collector_langfuse_exporters_use_otlp_http_basic_auth_and_ingestion_version_4(path):
    config = load_yaml(path)
    for exporter_id, exporter in (config.get("exporters") or {}).items():
        if LANGFUSE_OTEL_PATH not in str((exporter or {}).get("endpoint", "")):
            continue
        assert component_type(exporter_id) == "otlp_http", f"{path.name}: Langfuse has no gRPC endpoint"
        assert exporter["endpoint"].endswith(LANGFUSE_OTEL_PATH), "the exporter appends /v1/traces itself"
        assert exporter.get("headers", {}).get("x-langfuse-ingestion-version") == "4"
        assert exporter.get("encoding", "proto") == "proto", "Langfuse ingests OTLP protobuf"
        extension = config["extensions"][exporter["auth"]["authenticator"]]
        assert component_type(exporter["auth"]["authenticator"]) == "basicauth"
        credentials = collector_vars(yaml.safe_dump(extension["client_auth"]))
        assert sorted(name for name, _ in credentials) == ["LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY"]
        assert dict(extension["client_auth"]).keys() == {"username", "password"}
        assert "LANGFUSE_PUBLIC_KEY" in extension["client_auth"]["username"]


def test_load_balancing_tier_routes_by_trace_id_to_resolved_backends():
    config = load_yaml(COLLECTORS_DIR / "loadbalancing.yaml")
    balancers = {k: v for k, v in config["exporters"].items() if component_type(k) == "load_balancing"}
    assert balancers, "loadbalancing.yaml needs a load_balancing exporter"
    for exporter_id, exporter in balancers.items():
        assert exporter.get("routing_key") == "traceID", f"{exporter_id} must route by trace id"
        assert "otlp" in exporter.get("protocol", {}), f"{exporter_id} must export OTLP to the backends"
        assert "endpoint" not in exporter["protocol"]["otlp"], "the resolver supplies the endpoints"
        resolver = exporter.get("resolver") or {}
        assert resolver.keys() & {"static", "dns", "k8s", "aws_cloud_map"}, f"{exporter_id} needs a resolver"
        pipelines = config["service"]["pipelines"]
        assert any(exporter_id in p["exporters"] and component_type(n) == "traces" for n, p in pipelines.items())


# ---- Dockerfile and build context ------------------------------------------------------------------


def test_dockerfile_runs_the_gateway_as_non_root_on_8080_with_a_healthz_check():
    final = dockerfile_stages()[-1]
    instructions = dict(final)  # last wins, like Docker
    user = instructions.get("USER", "root").split(":")[0]
    assert user not in ("root", "0"), "the runtime stage must drop root"
    assert "8080" in instructions.get("EXPOSE", "").split()
    assert "/healthz" in instructions.get("HEALTHCHECK", "") and "8080" in instructions["HEALTHCHECK"]
    command = exec_form(instructions.get("ENTRYPOINT", "[]")) + exec_form(instructions.get("CMD", "[]"))
    assert command[:2] == ["voice-trace-gateway", "serve"], command
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == "8080"
    assert any(i == "RUN" and "pip install ." in a for stage in dockerfile_stages() for i, a in stage)
    compose_gateway = services()[gateway_service()]
    assert 8080 in container_ports(compose_gateway), "compose must publish the port the image serves on"


def _dockerignore_excludes(path: str) -> bool:
    excluded = False
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        candidates = [path, *(str(Path(path).parents[i]) for i in range(len(Path(path).parts) - 1))]
        patterns = [pattern, pattern.removeprefix("**/")]
        if any(fnmatch.fnmatch(c, p) for c in candidates for p in patterns):
            excluded = not negate
    return excluded


def test_dockerignore_check_sees_excluded_paths():
    assert _dockerignore_excludes(".git")
    assert _dockerignore_excludes("gateway/__pycache__/x.pyc")
    assert not _dockerignore_excludes("gateway/app.py")


def test_docker_build_context_has_everything_the_dockerfile_copies():
    for stage in dockerfile_stages():
        for instruction, args in stage:
            if instruction not in ("COPY", "ADD") or "--from=" in args:
                continue
            words = exec_form(args) if args.strip().startswith("[") else args.split()
            sources = [w for w in words if not w.startswith("--")][:-1]
            for source in sources:
                assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repo"
                assert not _dockerignore_excludes(source.rstrip("/")), f".dockerignore excludes {source}"
