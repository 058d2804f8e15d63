"""CPU per event of turning a request body into validated events, in-process (no HTTP), old against new.

The bodies are the load generator's own (``bench/loadgen.py``: the simulated three-turn call chained into one
long session), as single-event posts and as batches of 50. Each body goes from its bytes to a list of events
the way ``POST /v1/sessions/{id}/events`` takes it, stopping before the session state:

- ``pydantic``: the gateway before msgspec: ``orjson.loads`` of the body, the envelope checks, then each event
  through pydantic's discriminated union. Its ``gateway/events.py`` is read from git at ``--baseline`` (the last
  commit that validated with pydantic) and loaded beside today's.
- ``msgspec``: today's gateway: ``gateway.service.body_events`` (the whole batch decoded typed in one pass;
  only when that fails, the envelope with each event as raw JSON), then ``SessionService._validate``'s loop
  (``gateway.events.parse_event`` on each event not decoded yet).
- ``apart``: the other way the issue named, which the gateway does only when a batch has a bad event: the
  envelope with each event as raw JSON, then each event decoded on its own.

Also with one bad event in each batch of 50 (a ``tool.call`` without ``call_id``), where the two msgspec ways
differ most: the gateway's pays for the failed typed pass before decoding the events apart; and with every
event bad, where each is examined field by field to report all its errors. CPU time of the
process (``time.process_time_ns``), best of ``--rounds``, the ways taking turns within each round; the ratios
are within one run, so they hold on a loaded machine better than the absolute figures.

    python bench/validate_cpu.py [--rounds 15] [--baseline REV] [--out FILE.json]   # prints a table and JSON
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import orjson
from loadgen import batched_bodies, long_session, single_bodies

from gateway import events as ev
from gateway.errors import FieldError, RequestError, ValidationFailed
from gateway.service import body_events

ROOT = Path(__file__).resolve().parent.parent
# The last commit whose gateway/events.py validated with pydantic.
BASELINE = "e73593a"

Validate = Callable[[bytes], int]


def load_baseline(rev: str) -> ModuleType:
    source = subprocess.run(["git", "show", f"{rev}:gateway/events.py"], cwd=ROOT, check=True,
                            capture_output=True).stdout
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events_pydantic.py"
        path.write_bytes(source)
        spec = importlib.util.spec_from_file_location("events_pydantic", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # pydantic resolves the module's annotations through it
        spec.loader.exec_module(module)
    return module


def _each(events: Sequence[object], prefix: str, parse: Callable[[object, str], object]) -> int:
    """SessionService._validate's loop, without the metrics: the valid events, the invalid ones listed."""
    valid, rejected = [], []
    for index, raw in enumerate(events):
        if isinstance(raw, ev.BaseEvent):
            valid.append(raw)
            continue
        try:
            valid.append(parse(raw, f"{prefix}[{index}]" if prefix else ""))
        except RequestError as exc:
            rejected.append({"index": index, "errors": [e.to_json() for e in exc.errors]})
    return len(valid) + len(rejected)


def pydantic_way(old: ModuleType) -> Validate:
    def validate(body: bytes) -> int:
        value = orjson.loads(body)
        # The old service.body_events.
        if isinstance(value, dict) and "events" in value and "type" not in value:
            events = value["events"]
            if not isinstance(events, list):
                raise ValidationFailed("'events' must be a list", [FieldError("events", "must be a list")])
            return _each(events, "events", old.parse_event)
        return _each([value], "", old.parse_event)
    return validate


def msgspec_way(body: bytes) -> int:
    events, _, prefix = body_events(body)
    return _each(events, prefix, ev.parse_event)


class _RawBatch(msgspec.Struct, forbid_unknown_fields=False):
    events: list[msgspec.Raw] | msgspec.UnsetType = msgspec.UNSET
    type: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    sent_at: Any = None


_apart = msgspec.json.Decoder(_RawBatch)


def apart_way(body: bytes) -> int:
    batch = _apart.decode(body)
    if batch.type is msgspec.UNSET and isinstance(batch.events, list):
        return _each(batch.events, "events", ev.parse_event)
    return _each([msgspec.Raw(body)], "", ev.parse_event)


def best(rounds: int, bodies: list[tuple[int, bytes]], ways: dict[str, Validate]) -> dict[str, float]:
    """Best CPU µs per event of each way over the rounds; the ways take turns within each round, so that a
    change in the machine's load falls on all of them alike."""
    events = sum(n for n, _ in bodies)
    per_event: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, validate in ways.items():
            t0 = time.process_time_ns()
            for _, body in bodies:
                validate(body)
            per_event[name].append((time.process_time_ns() - t0) / events / 1000)
    return {name: min(times) for name, times in per_event.items()}


def with_bad_events(bodies: list[tuple[int, bytes]], every: bool = False) -> list[tuple[int, bytes]]:
    """The batches with a bad event (a tool.call without call_id) in the middle, or with every event bad."""
    out = []
    for n, body in bodies:
        batch = json.loads(body)
        for i in range(len(batch["events"])) if every else [len(batch["events"]) // 2]:
            batch["events"][i] = {"type": "tool.call", "id": f"bad{i}", "name": "lookup", "seq": i}
        out.append((n, json.dumps(batch, separators=(",", ":")).encode()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=25, help="three-turn scenarios chained into the session "
                        "(25, as bench/run.py's sessions)")
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the pydantic gateway/events.py")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    events = long_session(random.Random(7), args.repeats, time.time() * 1000)
    workloads = {
        "batch of 50": batched_bodies(events, 50),
        "single event": single_bodies(events),
        "batch of 50, one bad": with_bad_events(batched_bodies(events, 50)),
        "batch of 50, all bad": with_bad_events(batched_bodies(events, 50), every=True),
    }
    ways: dict[str, Validate] = {"pydantic": pydantic_way(load_baseline(args.baseline)), "msgspec": msgspec_way,
                                 "apart": apart_way}
    for bodies in workloads.values():  # every way gives the same count, and warms up
        counts = {name: sum(validate(body) for _, body in bodies) for name, validate in ways.items()}
        assert len(set(counts.values())) == 1, counts
    results: dict[str, dict[str, float]] = {}
    for workload, bodies in workloads.items():
        results[workload] = best(args.rounds, bodies, ways)

    print(f"{len(events)} events; CPU µs per event, best of {args.rounds} rounds")
    print(f"{'workload':<22} {'pydantic':>9} {'msgspec':>9} {'apart':>9} {'msgspec/pydantic':>17} "
          f"{'msgspec/apart':>14}")
    for workload, r in results.items():
        print(f"{workload:<22} {r['pydantic']:9.2f} {r['msgspec']:9.2f} {r['apart']:9.2f} "
              f"{r['msgspec'] / r['pydantic']:17.3f} {r['msgspec'] / r['apart']:14.3f}")
    report = {"events": len(events), "rounds": args.rounds, "baseline": args.baseline, "us_per_event": results}
    print(json.dumps(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
