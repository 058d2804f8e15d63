"""Event times on a session's timeline: client time, corrected for clock skew, within bounds.

Two allowances keep times that are right although they look odd from the gateway:

- ahead of arrival, up to ``MAX_AHEAD_MS``: a player knows when its first chunk will sound (now plus its
  buffer) and says so before that moment (``model.playback_start``); a time further ahead is a wrong
  clock, and the receive time replaces it.
- before the session existed, up to ``MAX_BEFORE_START_MS``: a page that talks to the model while
  ``POST /v1/sessions`` is in flight reports what it buffered once it has its token; the root then starts
  at the earliest such event. A time earlier than that is a wrong clock, and the session's start replaces it.

Skew: receive minus send (``sent_at``) is the client's clock offset plus the time the batch took to arrive and
be read; the smallest seen per session is the estimate (``SessionState.skew_ns``). A positive estimate up to
``LATENCY_ALLOWANCE_MS`` cannot be told from that delay (a busy gateway or network alone makes it), so the
client's clock is taken as it is; a larger one, or any negative one (a client clock ahead), corrects times.

Otherwise times never run backwards within a session: an event older than the one before it takes that
one's time. A time ahead of its arrival does not move that floor, so a predicted playback start does not
push the events after it (which happened before the moment it predicts) into the future.
"""

from __future__ import annotations

from datetime import datetime

from gateway import events as ev
from gateway.sessions.state import SessionState

MAX_AHEAD_MS = 5_000
MAX_BEFORE_START_MS = 60_000
LATENCY_ALLOWANCE_MS = 2_000
_MAX_AHEAD_NS = MAX_AHEAD_MS * 1_000_000
_MAX_BEFORE_START_NS = MAX_BEFORE_START_MS * 1_000_000


def skew_ns(state: SessionState) -> int:
    """What to add to a client time to get the gateway's."""
    skew = state.skew_ns or 0
    return 0 if 0 <= skew <= LATENCY_ALLOWANCE_MS * 1_000_000 else skew


def event_time_ns(state: SessionState, event: ev.Event, received_ns: int, skew: int | None = None) -> int:
    """``skew``: ``skew_ns(state)``, when the caller has it (it changes once per batch, not per event)."""
    ts = event.ts
    if ts is None:
        return max(state.last_event_ns, received_ns) if state.first_event_ns is not None else received_ns
    if skew is None:
        skew = skew_ns(state)
    t = (int(ts.timestamp() * 1e9) if isinstance(ts, datetime) else int(ts * 1_000_000)) + skew
    if t > received_ns + _MAX_AHEAD_NS:
        t = received_ns
    if state.first_event_ns is None:
        earliest = state.start_ns - _MAX_BEFORE_START_NS
        return t if t >= earliest else state.start_ns
    last = state.last_event_ns
    return t if t > last else last


def settle(state: SessionState, t: int, received_ns: int | None) -> None:
    """Record an applied event's time as the floor for the next ones, unless it lies ahead of its arrival."""
    # Comparisons rather than min() and max(): this runs for every event.
    if state.first_event_ns is None:
        state.first_event_ns = t
        state.last_event_ns = t if received_ns is None or t <= received_ns else received_ns
    elif (received_ns is None or t <= received_ns) and t > state.last_event_ns:
        state.last_event_ns = t
