"""Runs ``voice-trace-gateway`` with every pause of Python's cyclic garbage collector logged.

Used by bench/run.py for its diagnostic (profiling) runs only, never for the measured ones:

    VTG_BENCH_GC_LOG=/tmp/gc.log python bench/gc_trace.py serve --port 8080

Each collection appends one line: ``<start, time.monotonic()> <duration s> <generation> <objects collected>``.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from typing import Any

_log = open(os.environ["VTG_BENCH_GC_LOG"], "a", buffering=1)  # noqa: SIM115 - lives as long as the process
_started = [0.0]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.monotonic()
    else:
        now = time.monotonic()
        _log.write(f"{_started[0]:.6f} {now - _started[0]:.6f} {info['generation']} {info['collected']}\n")


gc.callbacks.append(_on_gc)

if __name__ == "__main__":
    from gateway.__main__ import main

    sys.exit(main(sys.argv[1:]))
