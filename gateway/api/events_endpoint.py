"""``POST /v1/sessions/{session_id}/events`` as a plain ASGI app: the hottest route, one request per event for
clients that post events one at a time.

Starlette's function endpoints build a ``Request`` (and its ``Headers`` and ``QueryParams`` on each access), a
wrapper per request to route exceptions, and a ``Response`` object; here the few headers this route reads come
from one pass over the scope's raw headers, the body straight from ``receive``, and the answer is two
messages. The behaviour is the function endpoint's, step for step and in the same order: token (401/403),
declared length (413), body under the limit (413), events (400/422), rate limits (413/429), the session
(404/409). Errors are raised as the same ``RequestError``s, which the app's exception handlers (reached through
Starlette's ``ExceptionMiddleware``) render as problem+json and count, as for every other route; CORS wraps
the whole app, so it applies here unchanged.
"""

from __future__ import annotations

from asyncio import Future

import orjson
from starlette.datastructures import QueryParams
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from gateway.api.http import check_declared_length, header_bearer
from gateway.api.one_write import write_accepted
from gateway.errors import PayloadTooLarge
from gateway.limits import IngestGuard
from gateway.service import SessionService, body_events

_CONTENT_TYPE = (b"content-type", b"application/json")


async def send_accepted(send: Send, body: bytes) -> None:
    """The 202 as Starlette's JSONResponse sends it: the same two headers, in the same order (in one write under
    uvicorn's httptools protocol, gateway/api/one_write.py)."""
    if write_accepted(send, body, _CONTENT_TYPE):
        return
    await send({"type": "http.response.start", "status": 202,
                "headers": [(b"content-length", str(len(body)).encode()), _CONTENT_TYPE]})
    await send({"type": "http.response.body", "body": body})


class PostEvents:
    """One event, or ``{"events": [...], "sent_at": ms}``; answers 202 with what was accepted."""

    __name__ = "post_events"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body, applied = await self.answer(scope, receive)
        await send_accepted(send, body)
        if applied is not None:
            await applied

    async def answer(self, scope: Scope, receive: Receive) -> tuple[bytes, Future[None] | None]:
        """The 202's body; a RequestError for anything refused. Sends nothing: an error is always answered.
        With the body, what to await once it is sent: a batch applied after the answer (gateway.sessions.backlog).
        """
        state = scope["app"].state
        service: SessionService = state.service
        guard: IngestGuard = state.guard
        session_id: str = scope["path_params"]["session_id"]
        authorization = length = forwarded = None
        # The first of each, as Starlette's Headers.get answers (ASGI header names are lowercase).
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is None:
                    authorization = value
            elif name == b"content-length":
                if length is None:
                    length = value
            elif name == b"x-forwarded-for" and forwarded is None:
                forwarded = value
        token = header_bearer(authorization.decode("latin-1")) if authorization is not None else None
        if token is None:
            token = QueryParams(scope["query_string"]).get("token")
        service.signer.verify(token, session_id)
        limit = service.settings.max_body_bytes
        check_declared_length(None if length is None else length.decode("latin-1"), limit)
        events, sent_at, prefix = body_events(await receive_body(receive, limit))
        client = scope.get("client")
        guard.events(guard.client(client[0] if client is not None else None,
                                  None if forwarded is None else forwarded.decode("latin-1")),
                     session_id, len(events))
        result = await service.ingest(session_id, events, sent_at, prefix, later=True)
        return orjson.dumps(result.to_json()), result.applied


async def receive_body(receive: Receive, limit: int) -> bytes:
    """``http.read_body`` straight from ``receive``: the same size limit and error, a disconnect raising
    Starlette's ``ClientDisconnect`` as ``Request.stream`` does."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"the body is over the {limit} byte limit")
            if not message.get("more_body", False):
                break
        elif kind == "http.disconnect":
            raise ClientDisconnect()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
