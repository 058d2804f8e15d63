"""A turn's cost: priced from its usage, or estimated from how long each side spoke."""

from __future__ import annotations

from gateway.analytics.pricing import Cost, Pricer
from gateway.analytics.usage import Usage
from gateway.sessions.state import SessionState, TurnState


def turn_cost(pricer: Pricer | None, state: SessionState, turn: TurnState, t: int) -> Cost | None:
    if pricer is None:
        return None
    if turn.usage is not None:
        return pricer.price(state.provider, state.model, turn.usage)
    # No usage reported: estimate from how long each side spoke (the model from its first audio).
    model_audio_ms = (t - turn.first_audio_ns) / 1e6 if turn.first_audio_ns is not None else 0.0
    if not turn.user_audio_ms and not model_audio_ms:
        return None
    return pricer.estimate_from_audio(state.provider, state.model, turn.user_audio_ms, model_audio_ms)


def reprice_last_turn(pricer: Pricer | None, state: SessionState, usage: Usage) -> None:
    """Usage that arrived after its turn was exported replaces that turn's share of the session's cost."""
    cost = pricer.price(state.provider, state.model, usage) if pricer is not None else None
    if cost is None:
        return
    total = state.cost_total
    if total is not None and state.last_turn_cost is not None:
        total = total - state.last_turn_cost
    state.cost_total = cost if total is None else total + cost
    state.last_turn_cost = cost
