"""CPU cost of the export path per span, in-process: the stock SDK conversion against the gateway's own path.

Real gateway spans come from simulated sessions played through the gateway's own pieces (the
session service that ``create_app`` builds, i.e. ``gateway.sessions.machine`` +
``gateway.spans.SpanEmitter`` with the gateway's resource, span limits and processors), each
emission's finished span records kept as they left the state machine. Then, per batch of 512 spans
(the export batch size), it times:

- ``encode_spans(batch)``: the stock SDK → protobuf-message conversion of the SDK spans,
- ``.SerializePartialToString()`` of an already encoded batch: the serialization alone,
- both together (``encode_serialize``), which is what the stock OTLP/HTTP exporter does before sending:
  the reference of the issue's ratio,
- ``records_encode``: the gateway's path without the post: each emission's records → OTLP bytes
  (``SpanEmitter.encode``, on the request's thread in the gateway), then a batch's bytes joined into one
  request, as the export queue does (``export_queue.request_of``); no SDK object,
- ``sdk_span_path``, for an A/B against the previous design: records → SDK spans (``SpanEmitter.build``)
  → the direct SDK-span encoder (``OtlpEncoder.request``),
- with ``--otlp-endpoint``: ``gateway_exporter``, the gateway's whole export path per span: the records
  encoded as above and each batch posted by the exporter the gateway builds for
  ``OTEL_TRACES_EXPORTER=otlp`` (``export_encoded``: the HTTP post to a running collector included).

Every step that encodes takes records of new sessions every round: in production no span is encoded
twice, and re-encoding the same ones would let the attribute caches flatter it. ``ratio`` is the
gateway's path (``gateway_exporter`` if measured, else ``records_encode``) over ``encode_serialize``;
the issue's goal is ≤ 0.15. For context it also times building SDK spans from records
(``span_build``: what only Langfuse, console and third-party exporters still need) and the whole
in-process ingest (validation + state machine + encoding for the viewer's buffer, no HTTP). CPU time of
the process (``time.process_time_ns``; the exporter's HTTP client runs in this thread), best of
``--rounds``.

    python bench/export_cpu.py [--sessions 200] [--rounds 7] [--otlp-endpoint URL]   # prints JSON
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.internal import api_implementation
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan

from gateway import events as ev
from gateway.app import create_app
from gateway.delivery.export_queue import request_of
from gateway.delivery.otlp_encode import OtlpEncoder
from gateway.delivery.otlp_records import RecordEncoder
from gateway.otel_config import load_telemetry
from gateway.sessions.state import FinishedSpan, TraceRef
from gateway.simulate import MODEL, three_turn_session
from gateway.spans import SpanEmitter

BATCH = 512
KEY = "bench-signing-key-0123456789abcdef0123456789"


def interleaved(rounds: int, steps: list[tuple[str, Callable[[], int]]]) -> dict[str, tuple[float, float]]:
    """Per step, (best, median) of CPU ns per unit over the rounds; fn returns the number of units it did. The
    steps take turns within each round, so a ratio between two steps compares them under the same load."""
    per_unit: dict[str, list[float]] = {name: [] for name, _ in steps}
    for _ in range(rounds):
        for name, fn in steps:
            t0 = time.process_time_ns()
            n = fn()
            per_unit[name].append((time.process_time_ns() - t0) / n)
    return {name: (min(v), statistics.median(v)) for name, v in per_unit.items()}


def build(sessions: int, seed: int, rounds: int) -> dict[str, Any]:
    # The gateway's own composition (create_app): its resource, span emitter and processors, a memory store.
    telemetry = load_telemetry(env={"OTEL_TRACES_EXPORTER": "none", "VTG_SIGNING_KEY": KEY})
    service = create_app(telemetry).state.service
    emitter: SpanEmitter = service.emitter
    records: list[tuple[TraceRef, list[FinishedSpan]]] = []
    emit = emitter.emit

    def capture(trace: TraceRef, spans: Any) -> int:
        spans = list(spans)
        if trace.sampled:
            records.append((trace, spans))
        return emit(trace, spans)

    emitter.emit = capture  # type: ignore[method-assign]
    rng = random.Random(seed)

    async def play() -> int:
        events = 0
        for _ in range(sessions):
            created = await service.start(ev.SessionCreate(
                user_id=f"user-{rng.randrange(1000)}", provider="gcp.gemini", model=MODEL, agent="weather-assistant",
                tags=["simulated", "bench"]), None)
            script = three_turn_session(time.time() * 1000, rng, 0.001)
            *batches, last = script.batches
            for sent_at, batch in batches:
                await service.ingest(created["session_id"], batch, sent_at)
                events += len(batch)
            await service.end(created["session_id"], "user_disconnect", script.end_at, last[1], last[0])
            events += len(last[1])
        return events

    # First pass warms everything up; then one timed pass per round (validation + machine + span build, no
    # HTTP), each with sessions of its own: the steps that encode spans get new spans every round, as in
    # production, where no span is encoded twice (a warm attribute cache would otherwise flatter them).
    asyncio.run(play())
    per_round: list[tuple[list[ReadableSpan], list[tuple[TraceRef, list[FinishedSpan]]]]] = []
    ingest_ns: list[float] = []
    # Two sets of sessions per round: the stock path and the gateway's each encode spans no step saw before.
    for _ in range(2 * rounds):
        records.clear()
        t0 = time.process_time_ns()
        n_events = asyncio.run(play())
        ingest_ns.append((time.process_time_ns() - t0) / n_events)
        spans: Sequence[ReadableSpan] = [emitter.build(t, r) for t, rs in records for r in rs]
        per_round.append((list(spans), list(records)))
    return {"rounds": per_round, "events": n_events, "ingest_ns_per_event": min(ingest_ns), "emitter": emitter}


def gateway_exporter(endpoint: str) -> Any:
    """The span exporter the gateway builds for ``OTEL_TRACES_EXPORTER=otlp`` (with its instrumentation), or None."""
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "VTG_SIGNING_KEY": KEY}
    os.environ.update(env)  # the SDK's exporters read their OTEL_EXPORTER_OTLP_* settings from the process env
    telemetry = load_telemetry(env=env)
    for info in telemetry.exporters:
        exporter = getattr(info.processor, "exporter", None) or getattr(info.processor, "span_exporter", None)
        if exporter is not None:
            return exporter
    return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=200)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--otlp-endpoint", help="a running OTLP/HTTP collector: also time the gateway's own exporter "
                   "end to end (encoding + HTTP post), in this thread")
    args = p.parse_args(argv)
    built = build(args.sessions, args.seed, args.rounds)
    emitter: SpanEmitter = built["emitter"]
    rounds = built["rounds"]
    stock_rounds, gateway_rounds = rounds[0::2], rounds[1::2]
    spans: list[ReadableSpan] = stock_rounds[0][0]
    batches = [spans[i:i + BATCH] for i in range(0, len(spans), BATCH)]
    turn: dict[str, int] = {}

    def next_round(step: str, of: list[Any]) -> Any:
        index = turn.get(step, 0)
        turn[step] = index + 1
        return of[index % len(of)]

    encoded = [encode_spans(b) for b in batches]
    payload = sum(len(m.SerializePartialToString()) for m in encoded)

    def encode() -> int:
        s = next_round("encode", stock_rounds)[0]
        for i in range(0, len(s), BATCH):
            encode_spans(s[i:i + BATCH])
        return len(s)

    def serialize() -> int:
        for m in encoded:
            m.SerializePartialToString()
        return len(spans)

    def both() -> int:
        s = next_round("encode_serialize", stock_rounds)[0]
        for i in range(0, len(s), BATCH):
            encode_spans(s[i:i + BATCH]).SerializePartialToString()
        return len(s)

    # Each step has an encoder of its own, as the gateway's (same resource, scope, limits) but whose caches
    # never saw these sessions (the gateway's emitter encoded them for the viewer's buffer while they played,
    # and another step may have encoded them before); it lives across the step's rounds, as in production.
    encoders: dict[str, RecordEncoder] = {}
    sdk_encoder = OtlpEncoder()

    def gateway_batches(step: str) -> list[tuple[bytes, int]]:
        """The gateway's path: each emission's records encoded once (the request's thread), then each batch of
        the export queue joined into one request (the export thread)."""
        queued: list[Any] = []
        encoder = encoders.setdefault(step, RecordEncoder(emitter.resource, emitter.scope, emitter.limits))
        for trace, records in next_round(step, gateway_rounds)[1]:
            encoded_spans = encoder.encode(trace, records)
            queued.extend((encoded_spans.frame, span) for _, span in encoded_spans.spans)
        return [(request_of(queued[i:i + BATCH]), len(queued[i:i + BATCH])) for i in range(0, len(queued), BATCH)]

    def records_encode() -> int:
        return sum(count for _, count in gateway_batches("records_encode"))

    def sdk_span_path() -> int:
        built_spans = [emitter.build(t, r) for t, rs in next_round("sdk_span_path", gateway_rounds)[1] for r in rs]
        for i in range(0, len(built_spans), BATCH):
            sdk_encoder.request(built_spans[i:i + BATCH])
        return len(built_spans)

    def build_spans() -> int:
        count = 0
        for trace, records in next_round("span_build", gateway_rounds)[1]:
            for record in records:
                emitter.build(trace, record)
            count += len(records)
        return count

    out: dict[str, Any] = {
        "protobuf_backend": api_implementation.Type(),
        "sessions": args.sessions,
        "events": built["events"],
        "spans": len(spans),
        "spans_per_event": len(spans) / built["events"],
        "bytes_per_span": payload / len(spans),
        "batch": BATCH,
        "rounds": args.rounds,
        "ingest_us_per_event": built["ingest_ns_per_event"] / 1000,
    }
    steps: list[tuple[str, Callable[[], int]]] = [
        ("encode", encode), ("serialize", serialize), ("encode_serialize", both), ("records_encode", records_encode),
        ("sdk_span_path", sdk_span_path), ("span_build", build_spans)]
    exporter = gateway_exporter(args.otlp_endpoint) if args.otlp_endpoint else None
    if exporter is not None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import SpanExportResult

        def export() -> int:
            count = 0
            for data, n in gateway_batches("gateway_exporter"):
                if exporter.export_encoded(data, n) != SpanExportResult.SUCCESS:
                    raise RuntimeError("the collector refused a batch")
                count += n
            return count

        # The post alone, the same encoded batches every round: through the gateway's exporter (its lean
        # transport) and through the stock exporter's client (requests), as an A/B of the transports.
        posted = gateway_batches("post")
        stock_client = OTLPSpanExporter()._client

        def post(send: Callable[[bytes, int], bool]) -> Callable[[], int]:
            def run() -> int:
                for data, n in posted:
                    if not send(data, n):
                        raise RuntimeError("the collector refused a batch")
                return sum(n for _, n in posted)
            return run

        steps += [("gateway_exporter", export),
                  ("post", post(lambda d, n: exporter.export_encoded(d, n) == SpanExportResult.SUCCESS)),
                  ("post_requests", post(lambda d, n: bool(stock_client.export(d).success)))]
        out["gateway_exporter"] = type(getattr(exporter, "inner", exporter)).__module__
        stock = getattr(getattr(exporter, "inner", None), "_stock", None)
        out["gateway_transport"] = type(stock._client._transport).__name__ if stock is not None else None
    for name, (lo, med) in interleaved(args.rounds, steps).items():
        out[f"{name}_us_per_span"] = lo / 1000
        out[f"{name}_us_per_span_median"] = med / 1000
    ours = out.get("gateway_exporter_us_per_span", out["records_encode_us_per_span"])
    out["ratio"] = ours / out["encode_serialize_us_per_span"]
    out["ratio_of"] = "gateway_exporter" if "gateway_exporter_us_per_span" in out else "records_encode"
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
