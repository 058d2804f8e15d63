"""Connection spans: one per WebSocket to the model, with its setup, goAway and resumption as events."""

from __future__ import annotations

from gateway import events as ev
from gateway import semconv as sc
from gateway.sessions.content import Content
from gateway.sessions.records import add_event, finish, model_attributes, open_span, set_attr, set_default_attr
from gateway.sessions.state import Attrs, FinishedSpan, OpenSpan, SessionState, SpanEvent


def finish_connection(state: SessionState, conn: OpenSpan, t: int, last: Attrs) -> FinishedSpan:
    return finish(state, conn, t, implied=model_attributes(state, {}), last=last)


def connection_open(state: SessionState, connection_id: str | None, t: int, out: list[FinishedSpan]) -> None:
    if state.connection is not None:
        out.append(finish_connection(state, state.connection, t, {sc.VOICE_CONNECTION_END_REASON: sc.END_REPLACED}))
    state.connection_count += 1
    attrs = (sc.VOICE_CONNECTION_ID, connection_id) if connection_id else ()
    state.connection = open_span(sc.SPAN_CONNECTION, state.trace.root_span_id, t, attrs)


def connection_event(state: SessionState, e: ev.Event, t: int, out: list[FinishedSpan]) -> None:
    """setup_complete, go_away or resumed, on the open connection (opened here if the client never said)."""
    if state.connection is None:
        connection_open(state, None, t, out)
    conn = state.connection
    assert conn is not None
    attrs: Attrs | None = None
    if isinstance(e, ev.ConnectionGoAway):
        name = sc.EVENT_GO_AWAY
        if e.time_left_ms is not None:
            attrs = {sc.VOICE_GO_AWAY_TIME_LEFT_MS: e.time_left_ms}
    elif isinstance(e, ev.ConnectionResumed):
        name = sc.EVENT_RESUMED
        if e.handle:
            set_attr(conn, sc.VOICE_RESUMPTION_HANDLE, e.handle)
    else:
        name = sc.EVENT_SETUP_COMPLETE
        set_default_attr(conn, sc.VOICE_CONNECTION_SETUP_MS, (t - conn.start_ns) / 1e6)
    add_event(conn, SpanEvent(name, t) if attrs is None else SpanEvent(name, t, attrs))


def connection_close(content: Content, state: SessionState, e: ev.ConnectionClose, t: int,
                     out: list[FinishedSpan]) -> None:
    conn = state.connection
    if conn is None:
        return
    last: Attrs = {}
    if e.code is not None:
        last[sc.VOICE_CONNECTION_CLOSE_CODE] = e.code
    if e.reason:
        last[sc.VOICE_CONNECTION_CLOSE_REASON] = content.message(e.reason)
    last[sc.VOICE_CONNECTION_END_REASON] = "closed"
    out.append(finish_connection(state, conn, t, last))
    state.connection = None
