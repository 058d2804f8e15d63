"""The gateway's OTLP/HTTP exporter posts through a lean keep-alive transport, sending what requests would."""

from __future__ import annotations

import datetime
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from opentelemetry.exporter.http.transport._requests import RequestsHTTPTransport
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from otlp_sink import Collector, HungServer, Sink

from gateway.delivery.export import InstrumentedExporter
from gateway.delivery.http_post import LeanHttpTransport, lean_transport_for
from gateway.otel_config import load_telemetry
from gateway.sessions.state import FinishedSpan, TraceRef
from gateway.spans import SpanEmitter

TRACE = TraceRef("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", None, True)


def batch(names: list[str]) -> bytes:
    emitter = SpanEmitter(ALWAYS_ON, Resource.create({"service.name": "vtg-test"}), [])
    records = [FinishedSpan(name, f"{index + 1:016x}", TRACE.root_span_id, 1_000 + index, 2_000 + index,
                            "internal", {"session.id": "s-1", "voice.turn.gap_ms": 1.5}, ())
               for index, name in enumerate(names)]
    return emitter.encoder.request(TRACE, records)


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A function building the exporter the gateway builds for OTEL_TRACES_EXPORTER=otlp (the stock exporter
    reads its OTEL_EXPORTER_OTLP_* settings from the process environment)."""
    built: list[Any] = []

    def make(endpoint: str, **env: str) -> InstrumentedExporter:
        for name, value in {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, **env}.items():
            monkeypatch.setenv(name, value)
        telemetry = load_telemetry(env={"OTEL_TRACES_EXPORTER": "otlp", "VTG_SIGNING_KEY": "k" * 40})
        processor = telemetry.exporters[0].processor
        built.append(processor)
        exporter: InstrumentedExporter = processor.exporter  # type: ignore[attr-defined]
        return exporter

    yield make
    for processor in built:
        processor.shutdown()


def transport_of(exporter: InstrumentedExporter) -> Any:
    return exporter.inner._stock._client._transport  # type: ignore[attr-defined]


def test_spans_reach_a_real_collector_over_one_kept_alive_connection(
    exporter: Any, collector: Collector, sink: Sink
) -> None:
    otlp = exporter(collector.http_endpoint)
    transport = transport_of(otlp)
    assert isinstance(transport, LeanHttpTransport)
    assert otlp.export_encoded(batch(["first", "second"]), 2) == SpanExportResult.SUCCESS
    connection = transport._conn
    assert otlp.export_encoded(batch(["third"]), 1) == SpanExportResult.SUCCESS
    assert transport._conn is connection is not None  # the same connection carried both posts
    spans = sink.wait_for(lambda got: len(got) >= 3)
    assert sorted(s.name for s in spans) == ["first", "second", "third"]
    assert {s.resource["service.name"] for s in spans} == {"vtg-test"}
    assert spans[0].attributes == {"session.id": "s-1", "voice.turn.gap_ms": 1.5}


def test_compression_and_configured_headers_are_sent_as_the_stock_client_sets_them(
    exporter: Any, sink: Sink
) -> None:
    otlp = exporter(sink.url, OTEL_EXPORTER_OTLP_COMPRESSION="gzip", OTEL_EXPORTER_OTLP_HEADERS="x-api-key=secret")
    assert isinstance(transport_of(otlp), LeanHttpTransport)
    assert otlp.export_encoded(batch(["compressed"]), 1) == SpanExportResult.SUCCESS
    assert [s.name for s in sink.wait_for(lambda got: len(got) >= 1)] == ["compressed"]
    headers = sink.requests[0]
    assert headers["content-encoding"] == "gzip"  # the sink gunzipped it to decode the spans above
    assert headers["x-api-key"] == "secret"
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["user-agent"].startswith("OTel-OTLP-Exporter-Python/")


class ClosingCollector:
    """Answers every post with 200, then closes the connection without saying so (as a collector's idle
    timeout does): the client finds out only when it sends the next request."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                collector.bodies.append(self.rfile.read(int(self.headers["content-length"])))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()
                self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_connection_the_collector_closed_is_reopened_and_no_batch_is_lost(exporter: Any) -> None:
    collector = ClosingCollector()
    try:
        otlp = exporter(collector.url)
        sent = [batch([f"span-{n}"]) for n in range(4)]
        for data in sent:
            assert otlp.export_encoded(data, 1) == SpanExportResult.SUCCESS
        assert collector.bodies == sent
    finally:
        collector.close()


def test_shutdown_cuts_a_post_to_a_collector_that_never_answers_short(exporter: Any) -> None:
    hung = HungServer()
    try:
        otlp = exporter(hung.url, OTEL_EXPORTER_OTLP_TIMEOUT="300")  # seconds: far longer than this test waits
        transport = transport_of(otlp)
        results: list[SpanExportResult] = []
        sending = threading.Thread(target=lambda: results.append(otlp.export_encoded(batch(["stuck"]), 1)))
        sending.start()
        for _ in range(2000):  # until the post is on the wire
            if transport._conn is not None and transport._conn.sock is not None:
                break
            threading.Event().wait(0.01)
        otlp.shutdown()  # returns without waiting for the post, and the post fails now, not in 300 s
        sending.join(timeout=60)
        assert not sending.is_alive() and results == [SpanExportResult.FAILURE]
    finally:
        hung.close()


def test_a_proxy_or_a_session_of_its_own_keeps_the_requests_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = "http://collector.internal:4318/v1/traces"
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert isinstance(lean_transport_for(RequestsHTTPTransport(), endpoint), LeanHttpTransport)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    assert lean_transport_for(RequestsHTTPTransport(), endpoint) is None  # requests would go through the proxy
    monkeypatch.setenv("NO_PROXY", "collector.internal")
    assert isinstance(lean_transport_for(RequestsHTTPTransport(), endpoint), LeanHttpTransport)
    authed = requests.Session()
    authed.auth = ("user", "password")
    assert lean_transport_for(RequestsHTTPTransport(session=authed), endpoint) is None
    with_header = requests.Session()
    with_header.headers["authorization"] = "Bearer token-from-a-credential-provider"
    assert lean_transport_for(RequestsHTTPTransport(session=with_header), endpoint) is None
    assert lean_transport_for(object(), endpoint) is None


def _certificate(subject: str, key: Any, issuer: tuple[x509.Name, Any] | None, ca: bool) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(path: Path, certificate: x509.Certificate, key: Any | None = None) -> str:
    data = certificate.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        data += key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    path.write_bytes(data)
    return str(path)


def test_an_https_collector_is_verified_against_the_configured_ca_and_gets_the_client_certificate(
    exporter: Any, tmp_path: Path
) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("test CA", ca_key, None, ca=True)
    issuer = (ca.subject, ca_key)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_file = _pem(tmp_path / "ca.pem", ca)
    server_file = _pem(tmp_path / "server.pem", _certificate("localhost", server_key, issuer, ca=False), server_key)
    client_cert = _pem(tmp_path / "client.pem", _certificate("gateway", client_key, issuer, ca=False))
    client_key_file = str(tmp_path / "client-key.pem")
    Path(client_key_file).write_bytes(client_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    received: list[tuple[bytes, str]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            peer = self.connection.getpeercert()  # an SSL socket
            subject = dict(item[0] for item in peer["subject"])["commonName"] if peer else ""
            received.append((self.rfile.read(int(self.headers["content-length"])), subject))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server_file)
    context.load_verify_locations(ca_file)
    context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: the gateway must show its certificate
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://localhost:{server.server_address[1]}"
    try:
        otlp = exporter(url, OTEL_EXPORTER_OTLP_CERTIFICATE=ca_file, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=client_cert,
                        OTEL_EXPORTER_OTLP_CLIENT_KEY=client_key_file)
        assert isinstance(transport_of(otlp), LeanHttpTransport)
        data = batch(["over TLS"])
        assert otlp.export_encoded(data, 1) == SpanExportResult.SUCCESS
        assert received == [(data, "gateway")]
        assert ExportTraceServiceRequest.FromString(received[0][0]).resource_spans[0].scope_spans[0].spans[0].name \
            == "over TLS"
        # Without the private CA (requests' default bundle) the server's certificate is refused: a connection
        # error, which the stock client retries and the queue keeps the batch for.
        default = lean_transport_for(RequestsHTTPTransport(verify=True), f"{url}/v1/traces")
        assert default is not None
        refused = default.request("POST", f"{url}/v1/traces", headers={}, timeout=5, data=data)
        assert isinstance(refused.error, ssl.SSLCertVerificationError)
        assert default.is_connection_error(refused.error)
        assert len(received) == 1
    finally:
        server.shutdown()
        server.server_close()
