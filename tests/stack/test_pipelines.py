"""The stack's telemetry wiring checked statically: the gateway configs in deploy/ and otel-config.yaml load
with the real OTel declarative-config loader and point at receivers the collector configs in collectors/ open;
the collector pipelines reach Jaeger and Langfuse with the right paths and keys."""

from __future__ import annotations

import os
import re
import shlex
from urllib.parse import urlsplit

import pytest
import yaml
from stack_files import (
    COLLECTOR_CONFIGS,
    COLLECTORS_DIR,
    DEFAULT_GATEWAY_CONFIG,
    DEPRECATED_ALIASES,
    GATEWAY_CONFIGS,
    KNOWN_COMPONENTS,
    LANGFUSE_OTEL_PATH,
    LANGFUSE_TRACES_PATH,
    OTLP_METRICS_PATH,
    OTLP_TRACES_PATH,
    SIGNALS,
    _ids,
    collector_config_path,
    collector_resolve,
    collector_service,
    collector_vars,
    component_type,
    compose_collector_config,
    container_ports,
    deployed_gateway_config,
    endpoint_host_port,
    exporters_fed_by,
    gateway_exporters,
    gateway_metric_exporters,
    gateway_service,
    jaeger_service,
    langfuse_web_service,
    langfuse_worker_service,
    listeners,
    load_gateway_config,
    load_yaml,
    only_exporter,
    pipelines_of,
    service_env,
    services,
)


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
