"""A lean HTTP transport for the stock OTLP/HTTP client: one keep-alive ``http.client`` connection.

The stock exporter posts through ``requests`` (session, adapters, urllib3's pool, hooks, cookie and
redirect handling): about a millisecond of CPU per post here, 2-3 µs per span of a 512-span batch,
which was a fifth of the gateway's whole export CPU. The stock client above the transport
(``_OTLPHTTPClient``: retries with backoff, Retry-After, compression, headers, timeout) is kept as it
is; only the transport under it is swapped, and only where the swap cannot change what is sent or to
whom: a session of the stock exporter's own making (no auth, hooks, adapters, cookies or headers of
its own, as a credential provider's session would have) and no proxy for the endpoint. TLS takes the
session's settings as ``requests`` resolves them (``verify``: its CA bundle, a CA file or directory,
``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, or off; ``cert``: the client certificate and key).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport
from opentelemetry.exporter.http.transport._requests import RequestsHTTPTransport

log = logging.getLogger("gateway.delivery.export")


@dataclass(frozen=True, slots=True)
class LeanHttpResult(BaseHTTPResult):
    body: bytes = b""
    response_headers: http.client.HTTPMessage | None = field(default=None, compare=False)

    def content(self) -> bytes:
        return self.body

    def headers(self) -> Mapping[str, str]:
        # HTTPMessage looks names up case-insensitively, as the stock client's Retry-After reading needs.
        return self.response_headers if self.response_headers is not None else {}  # type: ignore[return-value]


def tls_context(verify: bool | str, cert: str | tuple[str, str] | None) -> ssl.SSLContext:
    """The TLS settings ``requests`` applies for ``verify`` and ``cert``, as an SSL context."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        if verify is True:
            from requests.utils import DEFAULT_CA_BUNDLE_PATH

            verify = DEFAULT_CA_BUNDLE_PATH
        if os.path.isdir(verify):
            context = ssl.create_default_context(capath=verify)
        else:
            context = ssl.create_default_context(cafile=verify)
    if cert is not None:
        certfile, keyfile = cert if isinstance(cert, tuple) else (cert, None)
        context.load_cert_chain(certfile, keyfile)
    return context


class LeanHttpTransport(BaseHTTPTransport):
    """POSTs over one persistent HTTP/1.1 connection to one origin, reconnecting when it drops."""

    def __init__(self, origin: str, context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {origin!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._origin = (parts.scheme, parts.netloc)
        self._context = context if context is not None or not self._https else ssl.create_default_context()
        self._conn: http.client.HTTPConnection | None = None
        self._paths: dict[str, str] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _path(self, url: str) -> str:
        path = self._paths.get(url)
        if path is None:
            parts = urlsplit(url)
            if (parts.scheme, parts.netloc) != self._origin:
                raise ValueError(f"{url!r} is not on {self._origin[0]}://{self._origin[1]}")
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            self._paths[url] = path
        return path

    def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                timeout: float | None = None, data: bytes | None = None) -> BaseHTTPResult:
        with self._lock:
            try:
                if self._closed:  # the client's immediate retry after ``close`` cut a post short
                    raise ConnectionAbortedError("the exporter is shut down")
                path = self._path(url)
                conn = self._conn
                if conn is None:
                    if self._https:
                        conn = http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                                           context=self._context)
                    else:
                        conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
                    self._conn = conn
                else:
                    conn.timeout = timeout
                    if conn.sock is not None:
                        conn.sock.settimeout(timeout)
                conn.request(method, path, body=data, headers=headers or {})
                response = conn.getresponse()
                body = response.read()
            except Exception as error:
                self._drop()
                return LeanHttpResult(error=error)
            if response.will_close:
                self._drop()
            return LeanHttpResult(status_code=response.status, reason=response.reason, body=body,
                                  response_headers=response.headers)

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def is_connection_error(self, exception: Exception | None) -> bool:
        # Refused, reset, timed out, TLS failures (all OSErrors), or a connection closed mid-response.
        return isinstance(exception, OSError | http.client.HTTPException)

    def close(self) -> None:
        """Without waiting for a post in flight (the exporter's shutdown must not wait out its timeout): its
        socket is shut down, so the post fails now and the queue keeps its batch."""
        self._closed = True
        conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # not connected (any more)
                sock.shutdown(socket.SHUT_RDWR)
        if self._lock.acquire(blocking=False):
            try:
                self._drop()
            finally:
                self._lock.release()


def _plain_session(session: Any) -> bool:
    """Whether a requests session is as the stock exporter makes it: nothing of its own that a post would use."""
    import requests
    from requests.adapters import HTTPAdapter

    return (type(session) is requests.Session and session.auth is None and not session.cookies
            and not session.params and not session.proxies
            and session.headers == requests.utils.default_headers()
            and all(not hooks for hooks in session.hooks.values())
            and all(type(adapter) is HTTPAdapter for adapter in session.adapters.values()))


def lean_transport_for(transport: Any, endpoint: str) -> LeanHttpTransport | None:
    """The lean transport that posts to ``endpoint`` exactly as the stock ``requests`` one would, or None where
    it might not (a session of someone else's making, a proxy for the endpoint, not an http(s) URL)."""
    if type(transport) is not RequestsHTTPTransport:
        return None
    session: Any = getattr(transport, "_session", None)
    try:
        if session is None or not _plain_session(session):
            return None
        # Proxies and CA bundles from the environment, as requests would merge them for this URL.
        settings = session.merge_environment_settings(endpoint, {}, None, session.verify, session.cert)
        if settings.get("proxies"):
            return None
        https = urlsplit(endpoint).scheme == "https"
        context = tls_context(settings["verify"], settings["cert"]) if https else None
        return LeanHttpTransport(endpoint, context)
    except Exception:  # anything unexpected: the stock transport, which knows how to report it
        log.warning("keeping the requests transport for %s", endpoint, exc_info=True)
        return None
