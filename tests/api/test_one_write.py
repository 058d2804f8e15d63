"""The 202 in one write: the bytes and the cycle's state uvicorn's own two sends leave, under its httptools
protocol (a real ``RequestResponseCycle``; the transport records what it is asked to write)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from gateway.api.events_endpoint import send_accepted
from gateway.api.one_write import write_accepted

BODY = b'{"accepted":50,"duplicates":0,"rejected":[]}'
CONTENT_TYPE = (b"content-type", b"application/json")


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def cycle(keep_alive: bool, access_log: bool, logger: logging.Logger) -> tuple[RequestResponseCycle, Transport]:
    transport = Transport()
    scope: Any = {"type": "http", "method": "POST", "http_version": "1.1", "path": "/v1/sessions/s1/events",
                  "raw_path": b"/v1/sessions/s1/events", "query_string": b"token=t", "client": ("127.0.0.1", 5000),
                  "server": ("127.0.0.1", 8080), "headers": [], "scheme": "http", "root_path": ""}
    return RequestResponseCycle(
        scope, transport, FlowControl(transport), logging.getLogger("test"), logger, access_log,
        [(b"date", b"Tue, 01 Dec 2026 06:00:00 GMT"), (b"server", b"uvicorn")], asyncio.Event(), False,
        keep_alive, lambda: None), transport


def state(c: RequestResponseCycle) -> tuple[Any, ...]:
    return (c.response_started, c.response_complete, c.message_event.is_set(), c.expected_content_length,
            c.chunked_encoding, c.waiting_for_100_continue)


@pytest.mark.parametrize("keep_alive", [True, False])
@pytest.mark.parametrize("access_log", [True, False])
def test_the_202_in_one_write_is_what_uvicorns_two_sends_write(
    keep_alive: bool, access_log: bool, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("test.access")
    caplog.set_level(logging.INFO, logger="test.access")
    theirs, their_transport = cycle(keep_alive, access_log, logger)

    async def two_sends() -> None:
        await theirs.send({"type": "http.response.start", "status": 202,
                           "headers": [(b"content-length", str(len(BODY)).encode()), CONTENT_TYPE]})
        await theirs.send({"type": "http.response.body", "body": BODY})

    asyncio.run(two_sends())
    their_log = [r.getMessage() for r in caplog.records]
    caplog.clear()
    ours, our_transport = cycle(keep_alive, access_log, logger)
    assert write_accepted(ours.send, BODY, CONTENT_TYPE)
    assert our_transport.writes == [b"".join(their_transport.writes)] and len(their_transport.writes) == 2
    assert our_transport.closed is their_transport.closed is (not keep_alive)
    assert state(ours) == state(theirs)
    assert [r.getMessage() for r in caplog.records] == their_log and len(their_log) == access_log


def test_the_one_write_steps_aside_for_any_other_send() -> None:
    sent: list[Any] = []

    async def other(message: Any) -> None:
        sent.append(message)

    assert not write_accepted(other, BODY, CONTENT_TYPE)
    asyncio.run(send_accepted(other, BODY))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    started, _ = cycle(True, False, logging.getLogger("test.access"))
    started.response_started = True  # something was sent already: uvicorn's own send says what is wrong
    assert not write_accepted(started.send, BODY, CONTENT_TYPE)
