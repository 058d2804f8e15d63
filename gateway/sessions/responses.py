"""A turn's model responses: one inference span each.

A turn may hold several responses (OpenAI Realtime: the response that asked for a tool, then the one that
answers with its result). A ``model.response_start`` while the turn's current response has completed
(``model.generation_complete``) ends that response's inference span and opens the next one; usage reports
are cumulative within one response (the last one wins), and the turn's usage is the sum over its responses.
"""

from __future__ import annotations

from gateway import semconv as sc
from gateway.analytics.pricing import Pricer
from gateway.analytics.usage import Usage
from gateway.sessions.state import Attrs, SessionState, TurnState

FINISH_TOOL_CALLS = "tool_calls"


def settle_response(pricer: Pricer | None, state: SessionState, turn: TurnState) -> Attrs:
    """An earlier response's finish reason, usage and cost, for its inference span (returned), folded into the
    totals; then room for the turn's next response."""
    last: Attrs = {sc.GEN_AI_RESPONSE_FINISH_REASONS: [FINISH_TOOL_CALLS if turn.response_tool_calls else "stop"]}
    usage = turn.usage
    if usage is not None:
        last.update(usage.span_attributes())
        last[sc.VOICE_USAGE_REPORTS] = turn.usage_reports
        turn.earlier_usage = usage if turn.earlier_usage is None else turn.earlier_usage + usage
        cost = pricer.price(state.provider, state.model, usage) if pricer is not None else None
        if cost is not None:
            last.update(cost.span_attributes())
            state.cost_total = cost if state.cost_total is None else state.cost_total + cost
    turn.inference = None
    turn.usage = None
    turn.usage_reports = 0
    turn.response_done_ns = None
    turn.response_tool_calls = 0
    turn.responses += 1
    return last


def turn_usage(turn: TurnState) -> Usage | None:
    """The turn's usage: the sum of its responses' last reports."""
    if turn.earlier_usage is None:
        return turn.usage
    return turn.earlier_usage if turn.usage is None else turn.earlier_usage + turn.usage
