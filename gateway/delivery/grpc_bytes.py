"""OTLP/gRPC export of spans encoded already: the request's bytes go through the stock exporter as they are.

The stock gRPC exporter turns SDK spans into protobuf messages (``encode_spans``) before its stub serializes
them, which needs an SDK span built per finished span and is most of the export's CPU. Here its stub is one
whose ``Export`` method takes the serialized ``ExportTraceServiceRequest`` as it is (an identity serializer on
the same channel and method path), and its own export loop does the rest unchanged: the deadline
(``OTEL_EXPORTER_OTLP_TIMEOUT``), metadata headers, retries with backoff and the collector's RetryInfo, the
channel rebuilt after UNAVAILABLE, compression and TLS credentials (both on the channel it builds from the
``OTEL_EXPORTER_OTLP_*`` settings). The bytes are what the stock serialization writes for the same spans
(``gateway.delivery.otlp_records``), so the collector receives the very same request.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from gateway.delivery.otlp_encode import OtlpEncoder

log = logging.getLogger("gateway.delivery.export")

_GRPC_MODULE = "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"
EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def is_stock_grpc(exporter: SpanExporter) -> bool:
    """Whether this is the stock OTLP/gRPC span exporter (its module is loaded only when one was made)."""
    module = sys.modules.get(_GRPC_MODULE)
    return module is not None and type(exporter) is module.OTLPSpanExporter


class _BytesTraceStub:
    """The trace service's stub with ``Export`` taking a serialized request (no serializer: bytes as they are)."""

    def __init__(self, channel: Any) -> None:
        self.Export = channel.unary_unary(EXPORT_METHOD, request_serializer=None,
                                          response_deserializer=ExportTraceServiceResponse.FromString)


class _Request:
    """What the stock export loop is handed: the request's bytes and its span count (for its own metrics)."""

    __slots__ = ("count", "data")

    def __init__(self, data: bytes, count: int) -> None:
        self.data = data
        self.count = count


def _request_bytes(request: _Request) -> bytes:
    return request.data


def _span_count(request: _Request) -> int:
    return request.count


class FastOtlpGrpcExporter(SpanExporter):
    """The stock OTLP/gRPC exporter sending requests encoded already (``export_encoded``), or encoded here from
    SDK spans by the direct encoder (``export``)."""

    def __init__(self, stock: Any) -> None:
        self._stock = stock
        self._encoder = OtlpEncoder()
        # The export loop calls ``_translate_data`` and ``_count_data`` on what it is given, and rebuilds the stub
        # from ``_stub`` when it reconnects: all three take the bytes here.
        stock._translate_data = _request_bytes
        stock._count_data = _span_count
        stock._stub = _BytesTraceStub
        if stock._channel is not None:
            stock._client = _BytesTraceStub(stock._channel)

    @property
    def _endpoint(self) -> str:
        return str(self._stock._endpoint)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            data = self._encoder.request(spans)
        except Exception:
            log.exception("could not encode %d spans", len(spans))
            return SpanExportResult.FAILURE
        return self.export_encoded(data, len(spans))

    def export_encoded(self, data: bytes, count: int = 0) -> SpanExportResult:
        """Send an OTLP request encoded already."""
        result: SpanExportResult = self._stock._export(_Request(data, count))
        return result

    def shutdown(self) -> None:
        self._stock.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
