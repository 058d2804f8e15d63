"""Open span records: opening them, adding events, and finishing them into ``FinishedSpan``s.

An open span holds only what the session cannot tell again when the span ends: attributes that follow from
the session (its ids, user, agent, tags, the model and the operation a span kind stands for) are added by
``finish``, so thousands of idle sessions do not each keep a copy of them.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from gateway import semconv as sc
from gateway.sessions.state import (
    Attrs,
    AttrValue,
    FinishedSpan,
    OpenSpan,
    SessionState,
    SpanAttrs,
    SpanEvent,
    SpanKindName,
    new_span_int,
)

MAX_ROOT_EVENTS = 128
MAX_SPAN_EVENTS = 128  # the SDK's default; also what keeps a session's state from growing with a chatty client


def session_attributes(state: SessionState) -> Attrs:
    """Facts every span carries, so a backend can group by session without waiting for the root."""
    attrs: Attrs = {sc.SESSION_ID: state.session_id, sc.GEN_AI_CONVERSATION_ID: state.session_id}
    if state.user_id:
        attrs[sc.USER_ID] = state.user_id
    if state.agent:
        attrs[sc.GEN_AI_AGENT_NAME] = state.agent
    if state.tags:
        attrs[sc.VOICE_SESSION_TAGS] = list(state.tags)
    return attrs


def model_attributes(state: SessionState, attrs: Attrs) -> Attrs:
    """``attrs`` with the session's provider and model."""
    if state.provider:
        attrs[sc.GEN_AI_PROVIDER_NAME] = state.provider
    if state.model:
        attrs[sc.GEN_AI_REQUEST_MODEL] = state.model
    return attrs


def inference_attributes(state: SessionState, attrs: Attrs) -> Attrs:
    model_attributes(state, attrs)
    attrs[sc.GEN_AI_OPERATION_NAME] = sc.OPERATION_GENERATE_CONTENT
    return attrs


def named(kind: str, what: str | None) -> str:
    """A span name like "invoke_agent weather": the same string object for every session that uses it."""
    return sys.intern(f"{kind} {what}") if what else kind


def open_span(
    name: str, parent: int | str | None, t: int, attrs: SpanAttrs = (), kind: SpanKindName = "internal"
) -> OpenSpan:
    """``parent``: an open span's ``id``, or a hex id (the session's root: pass ``TraceRef.root_span_id`` itself,
    shared rather than copied). ``attrs``: a flat tuple of at most ``TUPLE_PAIRS`` pairs, else a dict."""
    return OpenSpan(name, new_span_int(), parent, t, kind, attrs)


def child(parent: OpenSpan, name: str, t: int, attrs: SpanAttrs = (), kind: SpanKindName = "internal") -> OpenSpan:
    span = OpenSpan(name, new_span_int(), parent.id, t, kind, attrs)
    span.trace_id = parent.trace_id
    return span


# An open span's attributes: a flat tuple (key, value, key, value) while they are few (what an idle session's
# spans mostly hold: 72 bytes for two pairs, where a dict takes 184), a dict of their own from the third pair on
# (cheaper to change, and merged at C speed when the span finishes). In the tuple, keys are looked up among the
# keys only (attrs[::2]): ``in`` over the whole tuple would also compare the key with every value.
TUPLE_PAIRS = 2


def get_attr(span: OpenSpan, key: str, default: AttrValue | None = None) -> AttrValue | None:
    attrs = span.attrs
    if isinstance(attrs, dict):
        found: AttrValue | None = attrs.get(key, default)
        return found
    keys = attrs[::2]
    if key in keys:
        value: AttrValue = attrs[keys.index(key) * 2 + 1]
        return value
    return default


def set_attr(span: OpenSpan, key: str, value: AttrValue) -> None:
    attrs = span.attrs
    if not attrs:
        span.attrs = (key, value)
        return
    if isinstance(attrs, dict):
        attrs[key] = value
        return
    keys = attrs[::2]
    if key in keys:
        i = keys.index(key) * 2 + 1
        span.attrs = attrs[:i] + (value,) + attrs[i + 1:]  # noqa: RUF005 (concatenation: no unpacking)
    elif len(keys) < TUPLE_PAIRS:
        span.attrs = attrs + (key, value)  # noqa: RUF005
    else:
        pairs = iter(attrs)
        grown = dict(zip(pairs, pairs))  # noqa: B905 (one iterator twice: key, value)
        grown[key] = value
        span.attrs = grown


def set_attrs(span: OpenSpan, *items: Any) -> None:
    """``set_attr`` for each key, value in ``items``: one new tuple when none of the keys is there yet."""
    attrs = span.attrs
    if isinstance(attrs, tuple) and len(attrs) + len(items) <= 2 * TUPLE_PAIRS:
        keys = attrs[::2]
        for key in items[::2]:
            if key in keys:
                break
        else:
            span.attrs = attrs + items
            return
    for i in range(0, len(items), 2):
        set_attr(span, items[i], items[i + 1])


def set_default_attr(span: OpenSpan, key: str, value: AttrValue) -> None:
    attrs = span.attrs
    if key not in (attrs if isinstance(attrs, dict) else attrs[::2]):
        set_attr(span, key, value)


def update_attrs(span: OpenSpan, values: Mapping[str, AttrValue]) -> None:
    attrs = span.attrs
    if isinstance(attrs, dict):
        attrs.update(values)
        return
    for key, value in values.items():
        set_attr(span, key, value)


def add_event(span: OpenSpan, event: SpanEvent) -> None:
    # A tuple, not a list: a span has a few events at most, and an idle session's open spans are smaller so
    # (a tuple of one is 48 bytes, a list 88).
    if len(span.events) < MAX_SPAN_EVENTS:
        span.events = (*span.events, event)


def root_event(state: SessionState, event: SpanEvent) -> None:
    if len(state.root_events) < MAX_ROOT_EVENTS:
        state.root_events = (*state.root_events, event)


def finish(
    state: SessionState, span: OpenSpan, t: int, error: str | None = None, implied: Attrs | None = None,
    last: Attrs | None = None,
) -> FinishedSpan:
    """The finished record: the session's attributes, then ``implied`` (what the span's kind implies), then
    the span's own, then ``last`` (what its ending adds, handed over as a dict rather than set on the span)."""
    attrs = session_attributes(state)
    if implied:
        attrs.update(implied)
    own = span.attrs
    if isinstance(own, dict):
        attrs.update(own)
    elif own:
        for i in range(0, len(own), 2):  # at most TUPLE_PAIRS: cheaper than any zip
            attrs[own[i]] = own[i + 1]
    if last:
        attrs.update(last)
    # The ids as OpenSpan.span_id and .parent_id give them, without two property calls per span.
    parent = span.parent
    return FinishedSpan(
        span.name, span.id.to_bytes(8, "big").hex(),
        parent.to_bytes(8, "big").hex() if isinstance(parent, int) else parent,
        span.start_ns, max(t, span.start_ns), span.kind, attrs, tuple(span.events), error, span.trace_id, span.links,
    )
