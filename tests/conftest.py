from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import settings
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

sys.path.insert(0, str(Path(__file__).parent))

from otlp_sink import Collector, Sink, free_port

from gateway.sessions.machine import MachineOptions, SessionMachine
from gateway.spans import SpanEmitter

REPO = Path(__file__).resolve().parent.parent

# CI must judge the change, not the luck of the draw: there the examples are fixed. Anywhere else
# hypothesis explores afresh on every run, which is how new bugs are found (then pinned in a plain test).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "explore"))

# Recording chunks (gateway/api/recordings.py) are audio bytes: the fuzzer sends them as it sends any binary body.
for _audio in ("audio/webm", "audio/ogg", "audio/mp4", "audio/wav"):
    schemathesis.serializer.alias(_audio, "application/octet-stream")


class Recorder:
    """The SDK's in-memory exporter behind the gateway's emitter: what an exporter would receive."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.emitter = SpanEmitter(ALWAYS_ON, Resource.create({}), [SimpleSpanProcessor(self.exporter)])

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name == prefix or s.name.startswith(prefix + " ")]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def machine() -> SessionMachine:
    return SessionMachine(MachineOptions.capture_all())


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.close()


@pytest.fixture
def collector(sink: Sink, tmp_path: Path) -> Iterator[Collector]:
    c = Collector(sink, tmp_path)
    c.start()
    yield c
    c.stop()


class GatewayProcess:
    """``voice-trace-gateway serve`` as a user runs it, in its own process."""

    def __init__(self, env: dict[str, str], workdir: Path, args: list[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"gateway-{self.port}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VTG_", "LANGFUSE_"))}
        # No drain period unless a test asks for one: stopping a test gateway should not wait for load balancers.
        full_env.update({"VTG_SIGNING_KEY": "test-signing-key-of-enough-length-123", "VTG_DRAIN_S": "0", **env})
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", str(self.port), *(args or [])],
            env=full_env, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"gateway not ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[GatewayProcess] = []

    def start(env: dict[str, str], args: list[str] | None = None) -> GatewayProcess:
        g = GatewayProcess(env, tmp_path, args)
        started.append(g)
        return g

    yield start
    for g in started:
        g.stop()
