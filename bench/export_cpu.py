"""CPU cost of the export path per span, in-process: SDK span → OTLP protobuf bytes.

Real gateway spans come from simulated sessions played through the gateway's own pieces (the
session service that ``create_app`` builds, i.e. ``gateway.sessions.machine`` +
``gateway.spans.SpanEmitter`` with the gateway's resource and processors, plus an in-memory
exporter). Then, per batch of 512 spans (the export batch size), it times:

- ``encode_spans(batch)``: the stock SDK → protobuf-message conversion (what the issue wants ≤ 20 µs),
- ``.SerializePartialToString()`` of an already encoded batch: the serialization alone,
- both together, which is exactly what the stock OTLP/HTTP exporter does before sending,
- with ``--otlp-endpoint``: the exporter the gateway itself builds for ``OTEL_TRACES_EXPORTER=otlp``,
  called directly against a running collector (encoding + HTTP post, whatever encoder the gateway uses
  at the time), on spans of new sessions every round: in production no span is encoded twice, and
  re-encoding the same batches would let the encoder's attribute cache flatter it.

For context it also times what happens before export, per span and per event: building the SDK
span from a finished record (``SpanEmitter.emit``) and the whole in-process ingest (validation +
state machine + span building, no HTTP). CPU time of the process (``time.process_time_ns``; the
exporter's HTTP client runs in this thread), best of ``--rounds``.

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
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway import events as ev
from gateway.app import create_app
from gateway.otel_config import load_telemetry
from gateway.simulate import MODEL, three_turn_session

BATCH = 512
KEY = "bench-signing-key-0123456789abcdef0123456789"


def best(rounds: int, fn: Callable[[], int]) -> tuple[float, float]:
    """(best, median) of CPU ns per unit over the rounds; fn returns the number of units it did."""
    per_unit = []
    for _ in range(rounds):
        t0 = time.process_time_ns()
        n = fn()
        per_unit.append((time.process_time_ns() - t0) / n)
    return min(per_unit), statistics.median(per_unit)


def build(sessions: int, seed: int, rounds: int) -> dict[str, Any]:
    # The gateway's own composition (create_app): its resource, span emitter and processors, a memory store.
    telemetry = load_telemetry(env={"OTEL_TRACES_EXPORTER": "none", "VTG_SIGNING_KEY": KEY})
    service = create_app(telemetry).state.service
    emitter = service.emitter
    memory = InMemorySpanExporter()
    collect = SimpleSpanProcessor(memory)
    if isinstance(getattr(emitter, "processors", None), list):
        emitter.processors.append(collect)  # an emitter that hands spans to its own processor list
    else:
        telemetry.provider.add_span_processor(collect)  # an emitter that goes through the SDK's Tracer
    records: list[tuple[Any, list[Any]]] = []
    emit = emitter.emit

    def capture(trace: Any, spans: Any) -> int:
        spans = list(spans)
        records.append((trace, spans))
        return int(emit(trace, spans))

    emitter.emit = capture
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
    per_round: list[tuple[list[ReadableSpan], list[tuple[Any, list[Any]]]]] = []
    ingest_ns: list[float] = []
    for _ in range(rounds):
        memory.clear()
        records.clear()
        t0 = time.process_time_ns()
        n_events = asyncio.run(play())
        ingest_ns.append((time.process_time_ns() - t0) / n_events)
        spans: Sequence[ReadableSpan] = memory.get_finished_spans()
        per_round.append((list(spans), list(records)))
    return {"rounds": per_round, "events": n_events, "ingest_ns_per_event": min(ingest_ns),
            "emit": emit, "memory": memory}


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
    spans: list[ReadableSpan] = built["rounds"][0][0]
    batches = [spans[i:i + BATCH] for i in range(0, len(spans), BATCH)]
    fresh = [[r[i:i + BATCH] for i in range(0, len(r), BATCH)] for r, _ in built["rounds"]]
    turn = {"span_build": 0, "gateway_exporter": 0}

    def next_round(step: str) -> int:
        index = turn[step] % len(built["rounds"])
        turn[step] += 1
        return index
    encoded = [encode_spans(b) for b in batches]
    payload = sum(len(m.SerializePartialToString()) for m in encoded)

    def encode() -> int:
        for b in batches:
            encode_spans(b)
        return len(spans)

    def serialize() -> int:
        for m in encoded:
            m.SerializePartialToString()
        return len(spans)

    def both() -> int:
        for b in batches:
            encode_spans(b).SerializePartialToString()
        return len(spans)

    memory: InMemorySpanExporter = built["memory"]
    emit = built["emit"]

    def build_spans() -> int:
        memory.clear()
        count = 0
        for trace, records in built["rounds"][next_round("span_build")][1]:
            count += emit(trace, records)
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
    steps: list[tuple[str, Callable[[], int]]] = [("encode", encode), ("serialize", serialize),
                                                  ("encode_serialize", both), ("span_build", build_spans)]
    exporter = gateway_exporter(args.otlp_endpoint) if args.otlp_endpoint else None
    if exporter is not None:
        from opentelemetry.sdk.trace.export import SpanExportResult

        def export() -> int:
            count = 0
            for b in fresh[next_round("gateway_exporter")]:
                if exporter.export(b) != SpanExportResult.SUCCESS:
                    raise RuntimeError("the collector refused a batch")
                count += len(b)
            return count

        steps.append(("gateway_exporter", export))
        out["gateway_exporter"] = type(getattr(exporter, "inner", exporter)).__module__
    for name, fn in steps:
        lo, med = best(args.rounds, fn)
        out[f"{name}_us_per_span"] = lo / 1000
        out[f"{name}_us_per_span_median"] = med / 1000
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
