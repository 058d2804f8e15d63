"""What a mutation commits to a store's outbox beside the state, and the refusal when the outbox is full."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from gateway.errors import Overloaded

T = TypeVar("T")

# An outbox entry: one OTLP ExportTraceServiceRequest (protobuf) and the number of spans in it.
OutboxEntry = tuple[bytes, int]
# What a mutation's result commits to the outbox beside the state; None: nothing.
OutboxOf = Callable[[T], OutboxEntry | None]


class OutboxFull(Overloaded):
    """The outbox holds its bound of entries or bytes: the backends are behind, so events wait at the client."""

    @property
    def reason(self) -> str:
        return "outbox_full"


def outbox_full(entries: int, size: int) -> OutboxFull:
    return OutboxFull(f"the span outbox is full ({entries} entries, {size} bytes) while the trace backends catch "
                      "up; retry shortly", retry_after_s=5)
