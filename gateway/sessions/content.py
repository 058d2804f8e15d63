"""What words and tool data a session may keep and export: captured content, redacted, cut to size."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from gateway.redact import truncate

MAX_TEXT_CHARS = 16_384  # words kept per turn side, whatever the attribute limit


def to_json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)


class Content:
    def __init__(self, transcripts: bool, redactor: Callable[[str], str] | None, max_attribute_length: int) -> None:
        self.transcripts = transcripts
        self.redact: Callable[[str], str] = redactor or (lambda text: text)
        self.limit = max_attribute_length

    def append(self, texts: list[str] | None, text: str) -> list[str] | None:
        """``texts`` with ``text`` added (a new list for the first words): assign it back."""
        # With transcript capture off, words are never kept: not in memory, not in a shared store.
        if not self.transcripts:
            return texts
        if texts is None:
            return [text]
        if sum(map(len, texts)) < MAX_TEXT_CHARS:
            texts.append(text)
        return texts

    def messages(self, role: str, texts: list[str]) -> str:
        """GenAI input/output messages JSON of one role's words."""
        content = self.redact("".join(texts))
        if self.limit and len(content) > self.limit - 64:  # the JSON around it must stay valid: cut the text
            content = truncate(content, self.limit - 64)
        return json.dumps([{"role": role, "parts": [{"type": "text", "content": content}]}], separators=(",", ":"))

    def value(self, value: Any) -> str:
        """Captured content as it may leave the gateway: redacted, then cut to the attribute limit."""
        return truncate(self.redact(to_json(value)), self.limit)

    def message(self, value: str) -> str:
        """Error text is exported whatever the capture settings, and errors quote what the user said or the
        tool was given often enough: it goes through redaction like captured content."""
        return truncate(self.redact(value), self.limit)

    def transcript(self, session_lines: Sequence[dict[str, str | int]]) -> str:
        """The session's transcript as JSON: whole lines are dropped from the end rather than cutting it."""
        lines = list(session_lines)
        text = json.dumps(lines, separators=(",", ":"))
        while lines and self.limit and len(text) > self.limit:
            lines.pop()
            text = json.dumps([*lines, {"truncated": True}], separators=(",", ":"))
        return text
