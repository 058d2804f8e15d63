"""Redaction of captured content, applied before any span is built, so no exporter ever sees the original."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Examples that ship enabled; operators add their own regexes with redact_patterns.
BUILTIN_PATTERNS: dict[str, str] = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    # Card numbers: 13 to 19 digits, optionally grouped by spaces or dashes.
    "card": r"\b(?:\d[ -]?){12,18}\d\b",
    # Phone numbers: an optional +country code, then 7 or more digits with common separators.
    "phone": r"(?<![\w+])\+?\d{1,3}?[ .-]?\(?\d{2,4}\)?(?:[ .-]?\d{2,4}){2,4}(?!\w)",
}


class Redactor:
    def __init__(self, builtins: Iterable[str], patterns: Iterable[str]) -> None:
        self.names: list[str] = []
        compiled: list[tuple[str, re.Pattern[str]]] = []
        # Cards before phones: a card number also looks like a long phone number.
        for name in sorted(builtins, key=lambda n: ("card", "email", "phone").index(n) if n in BUILTIN_PATTERNS else 9):
            if name not in BUILTIN_PATTERNS:
                raise ValueError(f"unknown redaction {name!r}; built-ins are {', '.join(BUILTIN_PATTERNS)}")
            compiled.append((name, re.compile(BUILTIN_PATTERNS[name])))
        compiled.extend(("custom", re.compile(p)) for p in patterns)
        self._patterns = compiled

    def __call__(self, text: str) -> str:
        for name, pattern in self._patterns:
            text = pattern.sub(f"[REDACTED:{name}]", text)
        return text


def truncate(text: str, limit: int) -> str:
    """Cut an over-long value and say so, rather than letting a backend drop it silently."""
    if limit <= 0 or len(text) <= limit:
        return text
    marker = f"…[truncated {len(text) - limit} chars]"
    return text[: max(0, limit - len(marker))] + marker
