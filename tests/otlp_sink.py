"""A real OTLP collector (rotel) in the loop, forwarding to a sink the tests read.

The gateway exports to rotel over gRPC or http/protobuf; rotel forwards over
OTLP/HTTP to the sink below, which decodes every request with
opentelemetry-proto. What the tests assert is what crossed two real OTLP hops.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def any_value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]]
    status_code: int
    status_message: str
    resource: dict[str, Any]

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass
class MetricPoint:
    name: str
    kind: str
    attributes: dict[str, Any]
    value: float
    count: int | None


class Sink:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.metric_points: list[MetricPoint] = []
        self.scores: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                encoding = self.headers.get("content-encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                sink.paths.append(self.path)
                if self.path.endswith("/scores"):
                    with sink._cond:
                        sink.scores.append(json.loads(body))
                        sink._cond.notify_all()
                elif self.path.endswith("/v1/metrics"):
                    metrics = ExportMetricsServiceRequest()
                    metrics.ParseFromString(body)
                    sink.add_metrics(metrics)
                else:
                    req = ExportTraceServiceRequest()
                    req.ParseFromString(body)
                    sink.add(req, {k.lower(): v for k, v in self.headers.items()})
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()
                self.wfile.write(b"")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, req: ExportTraceServiceRequest, headers: dict[str, str]) -> None:
        with self._cond:
            self.requests.append(headers)
            for rs in req.resource_spans:
                resource = {kv.key: any_value(kv.value) for kv in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.spans.append(ReceivedSpan(
                            s.name, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.kind,
                            s.start_time_unix_nano, s.end_time_unix_nano,
                            {kv.key: any_value(kv.value) for kv in s.attributes},
                            [(e.name, e.time_unix_nano, {kv.key: any_value(kv.value) for kv in e.attributes})
                             for e in s.events],
                            s.status.code, s.status.message, resource,
                        ))
            self._cond.notify_all()

    def add_metrics(self, req: ExportMetricsServiceRequest) -> None:
        with self._cond:
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        kind = metric.WhichOneof("data")
                        for point in getattr(metric, kind).data_points:
                            attrs = {kv.key: any_value(kv.value) for kv in point.attributes}
                            value = point.as_int if hasattr(point, "as_int") and point.HasField("as_int") else (
                                point.as_double if hasattr(point, "as_double") else point.sum)
                            count = getattr(point, "count", None)
                            self.metric_points.append(MetricPoint(metric.name, kind, attrs, value, count))
            self._cond.notify_all()

    def wait_for_metrics(
        self, predicate: Callable[[list[MetricPoint]], bool], timeout: float = 20
    ) -> list[MetricPoint]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.metric_points):
                left = deadline - time.monotonic()
                if left <= 0:
                    names = sorted({p.name for p in self.metric_points})
                    raise AssertionError(f"timed out waiting for metrics; have {names}")
                self._cond.wait(left)
            return list(self.metric_points)

    def wait_for(self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 20) -> list[ReceivedSpan]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.spans):
                left = deadline - time.monotonic()
                if left <= 0:
                    names = sorted(s.name for s in self.spans)
                    raise AssertionError(f"timed out waiting for spans; have {len(self.spans)}: {names}")
                self._cond.wait(left)
            return list(self.spans)

    def trace(self, trace_id: str, root_name: str = "voice_session", timeout: float = 20) -> list[ReceivedSpan]:
        spans = self.wait_for(
            lambda got: any(s.trace_id == trace_id and s.name == root_name for s in got), timeout
        )
        return [s for s in spans if s.trace_id == trace_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class HungServer:
    """Accepts connections (the kernel does, from the backlog) and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


def rotel_binary() -> Path:
    import rotel

    return Path(rotel.__file__).parent / "rotel-agent"


class Collector:
    """rotel receiving OTLP on gRPC and HTTP, exporting to a Sink."""

    def __init__(self, sink: Sink, workdir: Path) -> None:
        self.sink = sink
        self.workdir = workdir
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    def start(self) -> None:
        log = open(self.workdir / "rotel.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [
                str(rotel_binary()), "start",
                "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
                "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}",
                "--pid-file", str(self.workdir / "rotel.pid"),
                "--log-file", str(self.workdir / "rotel-agent.log"),
                "--exporter", "otlp",
                "--otlp-exporter-endpoint", f"http://127.0.0.1:{self.sink.port}",
                "--otlp-exporter-protocol", "http",
                "--batch-timeout", "100ms",
            ],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "ROTEL_ENVIRONMENT": "dev"},
        )
        wait_port(self.http_port)
        wait_port(self.grpc_port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout} s")


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> Iterator[ReceivedSpan]:
    return (s for s in spans if s.parent_span_id == parent.span_id)
