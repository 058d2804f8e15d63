"""Gateways killed by SIGKILL at random moments while sessions go on: the outbox's end-to-end check.

Shared by tests/delivery/test_outbox.py (a short loop) and bench/outbox_kills.py (the 200-kill run). Each
session is played batch by batch; at a random batch a gateway is killed, either right after the 202 or while
the batch is in flight (a few ms after it was sent, so the kill lands before, during or after the commit). A
batch that got no answer is sent again, with the same event ids, to a live gateway: the client's own retry.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
from conftest import GatewayProcess
from otlp_sink import ReceivedSpan, Sink

from gateway.simulate import three_turn_session

WHOLE = {"voice_session": 1, "invoke_agent": 3, "realtime_inference": 3, "execute_tool": 1, "user_speech": 2,
         "voice.connection": 2}
SPANS_PER_SESSION = sum(WHOLE.values())


def start_gateway(env: dict[str, str], workdir: Path) -> GatewayProcess:
    """``serve`` in its own process group, so a kill reaches all of it and nothing else."""
    popen = subprocess.Popen

    def in_group(*args: Any, **kw: Any) -> Any:
        return popen(*args, **kw, start_new_session=True)

    with mock.patch("subprocess.Popen", in_group):
        return GatewayProcess(env, workdir)


def kill(gw: GatewayProcess) -> None:
    """SIGKILL to the gateway's process group: nothing of it runs another instruction."""
    if gw.proc.poll() is None:
        os.killpg(gw.proc.pid, signal.SIGKILL)
    gw.proc.wait(10)


def spans_of(sink: Sink, trace_id: str) -> list[ReceivedSpan]:
    with sink._cond:
        return [x for x in sink.spans if x.trace_id == trace_id]


def whole(spans: list[ReceivedSpan]) -> bool:
    unique = {x.span_id: x for x in spans}.values()
    return dict(Counter(x.name.split(" ")[0] for x in unique)) == WHOLE


def check_copies(spans: list[ReceivedSpan]) -> int:
    """Duplicates among the spans; each must be the very span it repeats (same ids, same content)."""
    by_id: dict[str, list[ReceivedSpan]] = defaultdict(list)
    for span in spans:
        by_id[span.span_id].append(span)
    for copies in by_id.values():
        assert all(c == copies[0] for c in copies), f"span {copies[0].span_id} differs between its copies"
    return len(spans) - len(by_id)


def wait_whole(sink: Sink, trace_ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        missing = [t for t in trace_ids if not whole(spans_of(sink, t))]
        if not missing:
            return
        if time.monotonic() > deadline:
            got = {t: sorted(x.name for x in spans_of(sink, t)) for t in missing[:3]}
            raise AssertionError(f"{len(missing)} of {len(trace_ids)} traces incomplete, e.g. {got}")
        time.sleep(0.2)


@dataclass
class Report:
    kills: int = 0
    kills_in_flight: int = 0
    sessions: list[str] = field(default_factory=list)
    resent: int = 0
    duplicates: int = 0
    max_duplicates_per_session: int = 0
    delivered_after_s: float = 0.0


class KillLoop:
    """``replicas`` gateways on one store (1 for sqlite); the killed one is started again at once."""

    def __init__(self, env: dict[str, str], workdir: Path, replicas: int, seed: int) -> None:
        self.env = env
        self.workdir = workdir
        self.rng = random.Random(seed)
        self.gateways = [start_gateway(env, workdir) for _ in range(replicas)]
        self.report = Report()

    def close(self) -> None:
        for gw in self.gateways:
            gw.stop()

    @contextmanager
    def _client(self, index: int) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=self.gateways[index].url, timeout=30) as client:
            yield client

    def _post(self, index: int, path: str, body: dict[str, Any], token: str | None) -> httpx.Response | None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        try:
            with self._client(index) as client:
                return client.post(path, json=body, headers=headers)
        except httpx.HTTPError:
            return None  # the gateway died under the request

    def _send(self, index: int, path: str, body: dict[str, Any], token: str | None, ok: int) -> dict[str, Any]:
        """Send until a live gateway answers ``ok`` (another replica, or this one restarted)."""
        for attempt in range(200):
            gw_index = (index + attempt) % len(self.gateways)
            if self.gateways[gw_index].proc.poll() is not None:
                self._restart(gw_index)
            r = self._post(gw_index, path, body, token)
            if r is not None and r.status_code == ok:
                body_out: dict[str, Any] = r.json()
                return body_out
            assert r is None, f"{path}: {r.status_code} {r.text}"
            self.report.resent += 1
            time.sleep(0.05)  # pacing only: the dying process is reaped meanwhile
        raise AssertionError(f"{path}: no gateway took it")

    def _restart(self, index: int) -> None:
        self.gateways[index].stop()
        self.gateways[index] = start_gateway(self.env, self.workdir)

    def _kill_soon(self, index: int, delay_s: float) -> threading.Thread:
        gw = self.gateways[index]

        def later() -> None:
            time.sleep(delay_s)
            kill(gw)

        thread = threading.Thread(target=later)
        thread.start()
        return thread

    def session(self, kills: int) -> None:
        """One three-turn session across the gateways, with ``kills`` kills at random batches."""
        script = three_turn_session(time.time() * 1000 - 60_000, rng=self.rng, scale=0.01)
        count = len(self.gateways)
        s = self._send(self.rng.randrange(count), "/v1/sessions", {"model": "gemini-live"}, None, 201)
        self.report.sessions.append(s["trace_id"])
        path = f"/v1/sessions/{s['session_id']}"
        at = sorted(self.rng.randrange(len(script.batches)) for _ in range(kills))
        for number, (sent_at, events) in enumerate(script.batches):
            index = number % count
            body = {"events": events, "sent_at": sent_at}
            for _ in range(at.count(number)):
                if self.rng.random() < 0.5:
                    killer = self._kill_soon(index, self.rng.uniform(0, 0.02))  # lands around the commit
                    self._send(index, f"{path}/events", body, s["token"], 202)
                    killer.join()
                    self.report.kills_in_flight += 1
                else:
                    self._send(index, f"{path}/events", body, s["token"], 202)
                    kill(self.gateways[index])  # right after the 202
                self.report.kills += 1
                if self.gateways[index].proc.poll() is not None:
                    self._restart(index)
            self._send(index, f"{path}/events", body, s["token"], 202)  # a replay of seen ids is harmless
        self._send(self.rng.randrange(count), f"{path}/end", {"reason": "completed"}, s["token"], 200)

    def finish(self, sink: Sink, timeout: float) -> Report:
        started = time.monotonic()
        wait_whole(sink, self.report.sessions, timeout)
        self.report.delivered_after_s = time.monotonic() - started
        time.sleep(1)  # a late duplicate would arrive by now
        for trace_id in self.report.sessions:
            dups = check_copies(spans_of(sink, trace_id))
            self.report.duplicates += dups
            self.report.max_duplicates_per_session = max(self.report.max_duplicates_per_session, dups)
        return self.report


def run(env: dict[str, str], workdir: Path, sink: Sink, replicas: int, kills: int, seed: int = 13,
        kills_per_session: int = 2, timeout: float = 120, progress: Callable[[Report], None] | None = None) -> Report:
    loop = KillLoop(env, workdir, replicas, seed)
    try:
        while loop.report.kills < kills:
            loop.session(min(kills_per_session, kills - loop.report.kills))
            if progress is not None:
                progress(loop.report)
        return loop.finish(sink, timeout)
    finally:
        loop.close()
