"""What the static checks of the deployable stack read: Dockerfile, docker-compose.yml, collectors/, deploy/.

No Docker engine runs where these tests run, so nothing is started: the files are parsed and
cross-checked. Service names, ports, credentials and endpoints must agree between the compose
file, the collector pipelines it mounts, the gateway config in deploy/ and otel-config.yaml; the
gateway configs must load with the real OTel declarative-config loader; every image is pinned.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from opentelemetry.configuration import load_config_file

ROOT = Path(__file__).resolve().parents[2]
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
