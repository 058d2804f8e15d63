"""Configuration: the OTel declarative config file, or the standard ``OTEL_*`` env vars.

The file (``--config`` or ``OTEL_CONFIG_FILE``; the legacy
``OTEL_EXPERIMENTAL_CONFIG_FILE`` with a warning) is loaded and schema-checked
by the SDK's own loader, so a bad file fails at startup naming its key path.
Processors are built here rather than by ``create_tracer_provider`` because
each exporter needs the gateway's instrumentation around it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import unquote

from opentelemetry.configuration import ConfigurationError, OpenTelemetryConfiguration, load_config_file
from opentelemetry.configuration._tracer_provider import _create_span_exporter
from opentelemetry.configuration.file import create_meter_provider, create_resource, create_tracer_provider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased

from gateway import __version__
from gateway.delivery.export import BatchSettings, ExporterInfo, attach
from gateway.errors import ConfigError
from gateway.metrics import GatewayMetrics
from gateway.settings import GatewaySettings, load_settings

log = logging.getLogger("gateway.config")

DEFAULT_SERVICE_NAME = "voice-trace-gateway"


@dataclass
class Telemetry:
    provider: TracerProvider
    exporters: list[ExporterInfo]
    settings: GatewaySettings
    source: str  # "file:<path>", "env" or "embedded defaults"
    disabled: bool = False
    meter_provider: MeterProvider | None = None
    metric_exporters: list[str] = dataclasses.field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        settings = {
            f.name: getattr(self.settings, f.name)
            for f in dataclasses.fields(self.settings)
            if f.name not in ("extra", "signing_key", "previous_signing_keys", "api_keys", "admin_key")
        }
        settings["signing_key"] = "random per process" if self.settings.signing_key_generated else "configured"
        # Secrets are described, never printed.
        settings["previous_signing_keys"] = len(self.settings.previous_signing_keys)
        settings["api_keys"] = len(self.settings.api_keys)
        settings["admin_key"] = "configured" if self.settings.admin_key else "none: viewer is loopback-only"
        return {
            "source": self.source,
            "disabled": self.disabled,
            "resource": dict(self.provider.resource.attributes),
            "sampler": self.provider.sampler.get_description(),
            "exporters": [e.describe() for e in self.exporters] or ["none: recent sessions kept in memory"],
            "metric_exporters": self.metric_exporters or ["none"],
            "gateway": settings,
        }


def config_path(explicit: str | None, env: Mapping[str, str]) -> str | None:
    if explicit:
        return explicit
    if env.get("OTEL_CONFIG_FILE"):
        return env["OTEL_CONFIG_FILE"]
    if env.get("OTEL_EXPERIMENTAL_CONFIG_FILE"):
        log.warning("OTEL_EXPERIMENTAL_CONFIG_FILE is deprecated; use OTEL_CONFIG_FILE")
        return env["OTEL_EXPERIMENTAL_CONFIG_FILE"]
    return None


def _exporter_kind(exporter_config: Any) -> str:
    for name in ("otlp_http", "otlp_grpc", "console", "otlp_file_development"):
        if getattr(exporter_config, name, None) is not None:
            return name
    extra = getattr(exporter_config, "additional_properties", None) or {}
    return next(iter(extra), "unknown")


def _from_file(path: str, env: Mapping[str, str], metrics: GatewayMetrics, overrides: dict[str, Any]) -> Telemetry:
    try:
        config: OpenTelemetryConfiguration = load_config_file(path)
    except (ConfigurationError, TypeError) as exc:
        raise ConfigError(path, str(exc)) from None
    distribution = config.distribution or {}
    settings = load_settings(distribution.get("voice_gateway"), env, **overrides)
    tp = config.tracer_provider
    resource = create_resource(config.resource)
    if not config.resource or SERVICE_NAME_KEY not in {a.name for a in (config.resource.attributes or [])}:
        resource = resource.merge(Resource({SERVICE_NAME_KEY: DEFAULT_SERVICE_NAME}))
    resource = resource.merge(Resource({"service.version": resource.attributes.get("service.version", __version__)}))
    if config.disabled:
        return Telemetry(TracerProvider(resource=resource, shutdown_on_exit=False), [], settings, f"file:{path}",
                         disabled=True)
    try:
        provider = create_tracer_provider(
            dataclasses.replace(tp, processors=[]) if tp is not None else None, resource, config.attribute_limits
        )
    except ConfigurationError as exc:
        raise ConfigError("tracer_provider", str(exc)) from None
    infos: list[ExporterInfo] = []
    for index, processor in enumerate(tp.processors if tp is not None else []):
        key = f"tracer_provider.processors[{index}]"
        block = processor.batch or processor.simple
        if block is None:
            raise ConfigError(key, "expected a 'batch' or 'simple' processor")
        kind = _exporter_kind(block.exporter)
        try:
            exporter = _create_span_exporter(block.exporter)
        except ConfigError as exc:
            raise ConfigError(f"{key}.{'batch' if processor.batch else 'simple'}.exporter.{kind}.{exc.key}",
                              exc.message) from None
        except (ConfigurationError, TypeError, ValueError) as exc:
            raise ConfigError(f"{key}.exporter.{kind}", str(exc)) from None
        if processor.batch is not None:
            b = processor.batch
            infos.append(attach(provider, kind, exporter, metrics, BatchSettings(
                max_queue_size=b.max_queue_size, max_export_batch_size=b.max_export_batch_size,
                schedule_delay_millis=b.schedule_delay, export_timeout_millis=b.export_timeout,
                **_durability(settings)), infos))
        else:
            infos.append(attach(provider, kind, exporter, metrics, None, infos))
    meters = None
    if config.meter_provider is not None:
        try:
            meters = create_meter_provider(config.meter_provider, resource)
        except (ConfigurationError, TypeError, ValueError) as exc:
            raise ConfigError("meter_provider", str(exc)) from None
    readers = list(config.meter_provider.readers) if config.meter_provider else []
    return Telemetry(provider, infos, settings, f"file:{path}", meter_provider=meters,
                     metric_exporters=[f"reader[{i}]" for i in range(len(readers))])


SERVICE_NAME_KEY = "service.name"


def _otlp_from_env(env: Mapping[str, str]) -> tuple[str, SpanExporter]:
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    protocol = protocol.strip().lower() or "http/protobuf"
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return "otlp_grpc", GrpcExporter()
    if protocol != "http/protobuf":
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%r is not supported; using http/protobuf", protocol)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return "otlp_http", HttpExporter()


def _sampler_from_env(env: Mapping[str, str]) -> Sampler:
    """OTEL_TRACES_SAMPLER(_ARG), as the SDK reads them, but from the mapping given (tests, embedding)."""
    name = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    raw_arg = env.get("OTEL_TRACES_SAMPLER_ARG")
    ratio = 1.0
    if raw_arg is not None:
        try:
            ratio = float(raw_arg)
            if not 0 <= ratio <= 1:
                raise ValueError
        except ValueError:
            log.warning("ignoring OTEL_TRACES_SAMPLER_ARG=%r: expected a ratio in [0, 1]; using 1.0", raw_arg)
            ratio = 1.0
    samplers: dict[str, Sampler] = {
        "always_on": ALWAYS_ON, "always_off": ALWAYS_OFF, "traceidratio": TraceIdRatioBased(ratio),
        "parentbased_always_on": ParentBased(ALWAYS_ON), "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(TraceIdRatioBased(ratio)),
    }
    if name not in samplers:
        log.warning("ignoring OTEL_TRACES_SAMPLER=%r; using parentbased_always_on", name)
        name = "parentbased_always_on"
    return samplers[name]


def _durability(settings: GatewaySettings) -> dict[str, Any]:
    return {
        "retry_max_elapsed_s": settings.export_retry_max_elapsed_s,
        "retry_max_backoff_s": settings.export_retry_max_backoff_s,
        "spool_dir": settings.export_spool_dir,
        "spool_max_bytes": settings.export_spool_max_bytes,
    }


_BSP_ENV = {
    "OTEL_BSP_SCHEDULE_DELAY": "schedule_delay_millis",
    "OTEL_BSP_MAX_QUEUE_SIZE": "max_queue_size",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "max_export_batch_size",
    "OTEL_BSP_EXPORT_TIMEOUT": "export_timeout_millis",
}


def _bsp_from_env(env: Mapping[str, str]) -> dict[str, int]:
    """The standard batch-processor variables, applied to the gateway's own queue."""
    out: dict[str, int] = {}
    for var, arg in _BSP_ENV.items():
        raw = env.get(var)
        if raw is None:
            continue
        try:
            value = int(raw)
            if value < 0:
                raise ValueError
            out[arg] = value
        except ValueError:
            log.warning("ignoring %s=%r: expected a non-negative integer", var, raw)
    return out


def _from_env(env: Mapping[str, str], metrics: GatewayMetrics, overrides: dict[str, Any]) -> Telemetry:
    settings = load_settings(None, env, **overrides)
    attrs: dict[str, Any] = {"service.version": __version__, SERVICE_NAME_KEY: DEFAULT_SERVICE_NAME}
    for pair in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = pair.partition("=")
        if sep and key.strip():
            attrs[key.strip()] = unquote(value.strip())
    if env.get("OTEL_SERVICE_NAME"):
        attrs[SERVICE_NAME_KEY] = env["OTEL_SERVICE_NAME"]
    resource = Resource.create(attrs)
    disabled = env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    provider = TracerProvider(resource=resource, sampler=_sampler_from_env(env), shutdown_on_exit=False)
    infos: list[ExporterInfo] = []
    batch_settings = BatchSettings(**{**_bsp_from_env(env), **_durability(settings)})
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    for name in [] if disabled or names == ["none"] else names:
        exporter: SpanExporter
        try:
            if name == "otlp":
                kind, exporter = _otlp_from_env(env)
            elif name == "console":
                kind, exporter = "console", ConsoleSpanExporter()
            else:
                found = list(entry_points(group="opentelemetry_traces_exporter", name=name))
                if not found:
                    log.warning("OTEL_TRACES_EXPORTER names %r, which no installed package provides; skipped", name)
                    continue
                kind, exporter = name, found[0].load()()
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"OTEL_TRACES_EXPORTER={name}", f"cannot create exporter: {exc}") from None
        infos.append(attach(provider, kind, exporter, metrics, batch_settings, infos))
    source = "env" if names else "embedded defaults"
    meters, metric_names = (None, []) if disabled else _meters_from_env(env, names, resource)
    return Telemetry(provider, infos, settings, source, disabled=disabled, meter_provider=meters,
                     metric_exporters=metric_names)


def _meters_from_env(
    env: Mapping[str, str], trace_exporters: list[str], resource: Resource
) -> tuple[MeterProvider | None, list[str]]:
    """OTEL_METRICS_EXPORTER, defaulting to OTLP when traces go over OTLP (the backends that take traces
    usually take metrics; Langfuse takes none, so it never appears here)."""
    raw = env.get("OTEL_METRICS_EXPORTER")
    names = [n.strip().lower() for n in raw.split(",") if n.strip()] if raw else (
        ["otlp"] if "otlp" in trace_exporters else [])
    readers = []
    for name in [] if names == ["none"] else names:
        exporter: MetricExporter
        if name == "otlp":
            protocol = (env.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                        or "http/protobuf").strip().lower()
            if protocol == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as Grpc

                exporter = Grpc()
            else:
                from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as Http

                exporter = Http()
        elif name == "console":
            exporter = ConsoleMetricExporter()
        else:
            log.warning("OTEL_METRICS_EXPORTER names %r, which the gateway does not know; skipped", name)
            continue
        readers.append(PeriodicExportingMetricReader(exporter))
    if not readers:
        return None, []
    return MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False), names


def load_telemetry(
    path: str | None = None,
    env: Mapping[str, str] | None = None,
    metrics: GatewayMetrics | None = None,
    **overrides: Any,
) -> Telemetry:
    env = os.environ if env is None else env
    metrics = metrics or GatewayMetrics()
    resolved = config_path(path, env)
    if resolved:
        return _from_file(resolved, env, metrics, overrides)
    return _from_env(env, metrics, overrides)
