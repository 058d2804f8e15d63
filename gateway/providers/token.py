"""What a provider handed out."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MintedToken:
    provider: str
    value: str
    expires_at: float  # epoch seconds

    def to_json(self) -> dict[str, Any]:
        return {"provider": self.provider, "value": self.value, "expires_at": self.expires_at}

    @property
    def expires_at_iso(self) -> str:
        moment = datetime.datetime.fromtimestamp(self.expires_at, datetime.UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
