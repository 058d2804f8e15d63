"""The events route straight from the app's entry, past Starlette's middleware and router, when nothing of theirs
would change its answer.

A single-event post pays Starlette's error middleware, exception middleware (a ``Request`` and two wrappers per
request) and the router (a regex per route before its own) on top of the work; for one event that is a
tenth of the request. ``GatewayApp`` does what those layers would do for this one route, and no more: the
same route regex on the same path (the route comes first in the router, so the router would pick it too),
the same scope keys, the app's own exception handlers by the exception's class as ``ExceptionMiddleware``
looks them up, and the 500 handler then the exception re-raised to the server as ``ServerErrorMiddleware``
does. With the gateway's CORS configured, its answer to a POST is what its middleware does for one: the same
headers added to what is sent (the 202 and handled errors, not the 500, which is sent outside it). Any other
middleware, or an app-wide body limit, and everything goes through Starlette as before.
"""

from __future__ import annotations

from typing import Any, cast

from starlette._utils import get_route_path, is_async_callable
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.api.cors import PathCORS
from gateway.api.events_endpoint import PostEvents, send_accepted


class GatewayApp(Starlette):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        first = self.router.routes[0] if self.router.routes else None
        self._direct: Route | None = None
        self._endpoint: PostEvents | None = None
        if (isinstance(first, Route) and isinstance(first.endpoint, PostEvents)
                and first.methods == {"POST"} and first.app is first.endpoint):
            self._direct, self._endpoint = first, first.endpoint
        self._front: tuple[bool, PathCORS | None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._direct
        if route is not None and scope["type"] == "http" and scope["method"] == "POST":
            direct, cors = self._front or self._in_front()
            if direct:
                match = route.path_regex.match(get_route_path(scope))
                if match is not None:
                    await self._post_events(route, match.groupdict(), scope, receive, send, cors)
                    return
        await super().__call__(scope, receive, send)

    @property
    def direct(self) -> bool:
        """Whether the events route's POSTs take the direct way (with this app's middleware as it is now)."""
        return self._direct is not None and (self._front or self._in_front())[0]

    def _in_front(self) -> tuple[bool, PathCORS | None]:
        """Whether the direct way may be taken, and the CORS middleware to answer through: none, or the
        gateway's ``PathCORS`` alone (its answer for a POST is a wrapped ``send``). Settled once the middleware
        stack is built (Starlette refuses new middleware from then on)."""
        if self.max_body_size is not None or self.debug:
            front: tuple[bool, PathCORS | None] = (False, None)
        elif not self.user_middleware:
            front = (True, None)
        elif len(self.user_middleware) == 1 and cast(object, self.user_middleware[0].cls) is PathCORS:
            if self.middleware_stack is None:
                self.middleware_stack = self.build_middleware_stack()
            cors = getattr(self.middleware_stack, "app", None)  # inside ServerErrorMiddleware
            front = (True, cors) if isinstance(cors, PathCORS) else (False, None)
        else:
            front = (False, None)
        if self.middleware_stack is not None:
            self._front = front
        return front

    async def _post_events(self, route: Route, params: dict[str, str], scope: Scope, receive: Receive,
                           send: Send, cors: PathCORS | None) -> None:
        assert self._endpoint is not None
        # What the router would have put there (the path's only convertor is str's, which keeps the text).
        scope["app"] = self
        scope["router"] = self.router
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = params
        # CORS sits inside the error middleware and outside the exception middleware: its headers go on the
        # 202 and on handled errors, not on the 500.
        inner = send if cors is None else cors.simple_send(scope, send)
        try:
            body, applied = await self._endpoint.answer(scope, receive)
        except Exception as exc:
            await self._failed(exc, scope, receive, send, inner)
            return
        # Failures to send propagate as they would through Starlette once a response has started; so does a
        # failure to apply a batch after its answer.
        await send_accepted(inner, body)
        if applied is not None:
            await applied

    async def _failed(self, exc: Exception, scope: Scope, receive: Receive, send: Send, inner: Send) -> None:
        """Nothing was sent yet (``answer`` sends nothing): the handler ``ExceptionMiddleware`` would pick, else
        the 500 handler and the exception re-raised, as ``ServerErrorMiddleware`` does."""
        handler = self._handler_for(exc)
        if handler is not None:
            response = await _call(handler, Request(scope, receive, inner), exc)
            if response is not None:
                await response(scope, receive, inner)
            exc.__traceback__ = None  # as ExceptionMiddleware does: a reused exception gathers no tracebacks
            return
        fallback = self.exception_handlers.get(500) or self.exception_handlers.get(Exception)
        if fallback is not None:
            response = await _call(fallback, Request(scope), exc)
        else:
            response = PlainTextResponse("Internal Server Error", status_code=500)
        if response is not None:
            await response(scope, receive, send)
        raise exc

    def _handler_for(self, exc: Exception) -> Any:
        handlers: dict[Any, Any] = self.exception_handlers
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None  # the 500 handler: ServerErrorMiddleware's, not ExceptionMiddleware's
            if cls in handlers:
                return handlers[cls]
        return None


async def _call(handler: Any, request: Request, exc: Exception) -> Response | None:
    """As Starlette calls an exception handler: awaited, or in a thread when it is a plain function."""
    if is_async_callable(handler):
        response: Response | None = await handler(request, exc)
    else:
        response = await run_in_threadpool(handler, request, exc)
    return response
