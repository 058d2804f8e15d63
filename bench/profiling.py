"""py-spy profiles of the gateway: where each event's CPU goes, by category, and what each suggests."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from harness import REPO


def short_file(path: str) -> str:
    for marker in ("site-packages/", str(REPO) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path.rsplit("/", 2)[-1] if "/" in path else path


# Leaf frames that mean "waiting", should one slip through py-spy's --gil filter.
IDLE_LEAVES = ("Condition.wait (", "Event.wait (", "Thread._wait_for_tstate_lock (", "select (", "poll (")

# Frames every sample of the event loop has: the process's entry point.
ROOT_FRAMES = ("<module> (", "main (gateway/__main__.py)", "_serve (gateway/__main__.py)")
# Where a sample's time goes: the first category whose marker is in the stack (markers are "function (file"
# fragments of the gateway's current code; a sample matching none lands in the last two rows).
CATEGORIES = [
    ("cyclic garbage collector (`gc_collect_main`, wherever it triggers)", "gc_collect_main ("),
    ("export thread: joining encoded spans + HTTP post to the collector", "@thread:export"),
    ("ingest token check (PyJWT decode + HS256 verify)", "TokenSigner.verify ("),
    ("span encoding (finished records → OTLP bytes once per request, handed to the queues and the viewer)",
     "SpanEmitter.emit (|SpanEncoder.entry ("),
    ("OTel voice metrics (gateway/analytics/voice_metrics.py)", "(gateway/analytics/voice_metrics.py)"),
    ("Prometheus counters (gateway/metrics.py, prometheus_client)", "(prometheus_client/"),
    ("event validation (msgspec, from the body's bytes)", "body_events (|SessionService._validate ("),
    ("session state machine, dedup, clock (service._apply, machine; after the answer: service._applying)",
     "SessionService._apply (|SessionService._applying (|SessionService._admitted ("),
    ("rate limits, client address", "IngestGuard."),
    ("request body read (http.read_body)", "read_body (|read_json (|receive_body ("),
    ("response: JSON encoding", "JSONResponse.render ("),
    ("rest of the gateway's request handling (routes, service glue)", "@gateway"),
    ("HTTP server and event loop (uvicorn, httptools, uvloop, starlette)", "@thread:MainThread"),
    ("other threads", ""),
]


# What each budget row suggests to whoever optimizes the gateway (printed for the biggest rows).
ADVICE = {
    CATEGORIES[0][0]: "full collections traverse every tracked object (SDK spans in the export queue and the "
    "recent-traces buffer, open sessions' state); `gc.freeze()` after startup, higher `gc.set_threshold` values, "
    "and fewer container objects per span and per event would cut both this and the pauses behind p99",
    CATEGORIES[1][0]: "the export thread joins the bytes each request encoded into one OTLP request per batch and "
    "posts it; what is left here is the HTTP client and the protobuf framing",
    CATEGORIES[2][0]: "every request decodes and verifies its JWT (base64, JSON, HMAC, claims); "
    "PyJWT's HMAC `prepare_key` even tries `json.loads` on the key string each time (a JWK check that raises "
    "and catches `JSONDecodeError`). A small LRU of verified tokens (token → session id, expiry) would make the "
    "repeat requests of a session nearly free; single-event posts pay this per event",
    CATEGORIES[3][0]: "a request's finished span records are written once as OTLP protobuf "
    "(`gateway/delivery/otlp_records.py`, key/value encodings cached per session); the self-time table shows "
    "whether attribute encoding or the request framing dominates. SDK spans are built only for exporters that need "
    "them (Langfuse, console, third-party)",
    CATEGORIES[4][0]: "OTel metric instruments hash their attribute sets on every measurement (`_hash_attributes`); "
    "fewer measurements per event (aggregate per request), or cached attribute sets, would cut it",
    CATEGORIES[5][0]: "Prometheus label lookups per event; aggregate per request and increment once",
    CATEGORIES[6][0]: "msgspec decodes the whole batch typed in one pass; only a batch holding a bad event is decoded "
    "again event by event (see bench/validate_cpu.py)",
    CATEGORIES[7][0]: "the state machine itself, with dedup and clock handling: small, tune last",
    CATEGORIES[8][0]: "two token buckets per request (session and client address): cheap, tune last",
    CATEGORIES[9][0]: "the body's chunks joined under the size limit; parsing is in the validation row",
    CATEGORIES[10][0]: "stdlib `json` for the response; `orjson` would be faster",
    CATEGORIES[11][0]: "the handlers' own lines and what they call that no row above names (header parsing, "
    "store access, result objects)",
    CATEGORIES[12][0]: "the HTTP floor the bare endpoint pays too (compare its CPU per request, and its profile "
    "above); on loopback `write()` runs the receiving side's TCP stack inline, so a large `write` "
    "share is the kernel, not Python",
}


def categorize(thread: str, keys: set[str]) -> str:
    for label, marker in CATEGORIES:
        if marker == "@gateway":  # any gateway frame below the process's entry point
            if any("(gateway/" in k and not k.startswith(ROOT_FRAMES) for k in keys):
                return label
        elif marker.startswith("@thread:"):
            if thread.startswith(marker.removeprefix("@thread:")):
                return label
        elif any(m in k for m in marker.split("|") for k in keys):
            return label
    return CATEGORIES[-1][0]


def read_profile(path: Path) -> dict[str, Any]:
    """Self and inclusive sample counts by function from a py-spy speedscope file."""
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    keys = [f"{f['name']} ({short_file(f.get('file', '?'))})" for f in frames]
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    budget: Counter[str] = Counter()
    total = idle = 0
    for prof in data["profiles"]:
        # Weights are seconds per sample; count samples instead.
        thread = prof.get("name", "?").split('"')[1] if '"' in prof.get("name", "") else prof.get("name", "?")
        for stack in prof["samples"]:
            if not stack:
                continue
            leaf = keys[stack[-1]]
            if leaf.startswith(IDLE_LEAVES):
                idle += 1
                continue
            total += 1
            threads[thread] += 1
            self_c[leaf] += 1
            in_stack = {keys[i] for i in stack}
            for k in in_stack:
                incl[k] += 1
            budget[categorize(thread, in_stack)] += 1
    return {"total": total, "idle_dropped": idle, "self": self_c, "inclusive": incl, "threads": threads,
            "budget": budget}


def budget_us(data: dict[str, Any], mode: str) -> list[tuple[str, float, float]]:
    """(category, share, µs per event) of a profile, biggest first."""
    prof = (data.get("profiles") or {}).get(mode)
    cpu = (data["runs"].get(f"gateway-1-{mode}-profile") or {}).get("cpu_us_per_event")
    if not prof or not cpu or not prof["total"]:
        return []
    rows = [(k, v / prof["total"], v / prof["total"] * cpu) for k, v in prof["budget"].items()]
    return sorted(rows, key=lambda x: -x[1])


OWN_ENCODER_ADVICE = ("the gateway encodes OTLP itself (the stock `encode_spans` is not in the profile); the "
                      "self-time table shows what is left, and the HTTP client's own cost is part of this row")


def advice_lines(data: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for mode in ("single", "batched"):
        rows = budget_us(data, mode)
        if not rows:
            continue
        stock = any("(opentelemetry/exporter/otlp/proto/common/" in k for k in data["profiles"][mode]["inclusive"])
        out += [f"{mode.capitalize()} posts, biggest first:", ""]
        for k, share, us in rows[:6]:
            if k in ADVICE:
                text = OWN_ENCODER_ADVICE if k == CATEGORIES[1][0] and not stock else ADVICE[k]
                out.append(f"- {k}: ≈ {us:.0f} µs per event ({share:.0%}): {text}.")
        out.append("")
    return out
