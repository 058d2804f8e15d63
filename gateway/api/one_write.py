"""The events route's 202 in one socket write, under uvicorn's httptools protocol.

uvicorn writes a response as it is sent: the status line and headers on ``http.response.start``, the body on
``http.response.body``, each a ``write`` on the socket. On loopback in this VM a ``write`` costs some 20 µs of
kernel time, a tenth of a single-event post. For the 202, whose headers and body are all known at once,
``write_accepted`` writes the bytes uvicorn would write, in one call, and leaves the cycle as those two sends
would (started, complete, the keep-alive decision, the access log line). It steps aside (returns False, and the
caller sends the two messages) unless ``send`` is the bound ``send`` of uvicorn's httptools
``RequestResponseCycle``, in the state the first send expects, with the attributes it reads;
``tests/api/test_one_write.py`` compares the bytes and the cycle's state with uvicorn's own two sends.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Send
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

try:
    from uvicorn.protocols.http import httptools_impl
except ImportError:  # no httptools: uvicorn runs h11, and the two sends go as they are
    httptools_impl = None  # type: ignore[assignment]

_CYCLE: Any = getattr(httptools_impl, "RequestResponseCycle", None)
_STATUS: bytes | None = getattr(httptools_impl, "STATUS_LINE", {}).get(202)

_READS = ("transport", "flow", "default_headers", "keep_alive", "access_log", "access_logger", "message_event",
          "response_started", "response_complete", "disconnected", "scope")


_fits: list[bool] = []  # whether uvicorn's cycle has what is read and set here: checked on the first one


def _cycle(send: Send) -> Any:
    cycle = getattr(send, "__self__", None)
    if _CYCLE is None or type(cycle) is not _CYCLE:
        return None
    if not _fits:
        _fits.append(all(hasattr(cycle, name) for name in _READS))
    return cycle if _fits[0] else None


def write_accepted(send: Send, body: bytes, content_type: tuple[bytes, bytes]) -> bool:
    """The 202 with ``content-length`` and ``content_type`` written at once, if ``send`` allows it."""
    cycle = _cycle(send)
    if (cycle is None or _STATUS is None or cycle.response_started or cycle.disconnected or cycle.flow.write_paused
            or cycle.scope["method"] == "HEAD"):
        return False
    parts: list[bytes] = [_STATUS]
    for name, value in cycle.default_headers:
        parts += (name.lower(), b": ", value, b"\r\n")
    parts += (b"content-length: ", str(len(body)).encode(), b"\r\n", content_type[0], b": ", content_type[1],
              b"\r\n")
    if not cycle.keep_alive:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", body)
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    if cycle.access_log:
        scope = cycle.scope
        cycle.access_logger.info('%s - "%s %s HTTP/%s" %d', get_client_addr(scope), scope["method"],
                                 get_path_with_query_string(scope), scope["http_version"], 202)
    cycle.chunked_encoding = False
    cycle.expected_content_length = 0
    cycle.transport.write(b"".join(parts))
    cycle.response_complete = True
    cycle.message_event.set()
    if not cycle.keep_alive:
        cycle.transport.close()
    return True
