"""Token usage, normalized across providers.

Browsers forward whatever the model sent: Gemini Live's ``usageMetadata``
(camelCase on the wire, snake_case from the Python SDK), OpenAI Realtime's
``response.usage``, or counts already in our own names. All become a
``Usage``: totals plus per-modality counts, which is what pricing and the
``gen_ai.usage.*`` attributes need.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from gateway import semconv
from gateway.frozen import frozen


@frozen
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    input_text_tokens: int = 0
    input_audio_tokens: int = 0
    input_image_tokens: int = 0
    output_text_tokens: int = 0
    output_audio_tokens: int = 0
    cache_read_input_tokens: int = 0
    thoughts_tokens: int = 0
    tool_use_prompt_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        # Spelled out, positional, in field order: a turn adds usages a few times (half the cost of mapping an add
        # over two attrgetter tuples).
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens,
                     self.input_text_tokens + other.input_text_tokens,
                     self.input_audio_tokens + other.input_audio_tokens,
                     self.input_image_tokens + other.input_image_tokens,
                     self.output_text_tokens + other.output_text_tokens,
                     self.output_audio_tokens + other.output_audio_tokens,
                     self.cache_read_input_tokens + other.cache_read_input_tokens,
                     self.thoughts_tokens + other.thoughts_tokens,
                     self.tool_use_prompt_tokens + other.tool_use_prompt_tokens)

    def to_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, int]) -> Usage:
        return cls(*[int(data.get(name, 0)) for name in _FIELDS])

    def is_empty(self) -> bool:
        return not any(self.to_dict().values())

    def span_attributes(self) -> dict[str, int]:
        # Zero per-modality counts are noise; the two totals are always reported. Spelled out: once per response.
        attrs = {semconv.GEN_AI_USAGE_INPUT_TOKENS: self.input_tokens,
                 semconv.GEN_AI_USAGE_OUTPUT_TOKENS: self.output_tokens}
        if self.input_text_tokens:
            attrs[semconv.GEN_AI_USAGE_TEXT_INPUT_TOKENS] = self.input_text_tokens
        if self.input_audio_tokens:
            attrs[semconv.GEN_AI_USAGE_AUDIO_INPUT_TOKENS] = self.input_audio_tokens
        if self.output_text_tokens:
            attrs[semconv.GEN_AI_USAGE_TEXT_OUTPUT_TOKENS] = self.output_text_tokens
        if self.output_audio_tokens:
            attrs[semconv.GEN_AI_USAGE_AUDIO_OUTPUT_TOKENS] = self.output_audio_tokens
        if self.cache_read_input_tokens:
            attrs[semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = self.cache_read_input_tokens
        return attrs


_FIELDS = tuple(f.name for f in fields(Usage))
# Usage.__add__ and _from_gemini pass the fields by position.
assert _FIELDS == ("input_tokens", "output_tokens", "input_text_tokens", "input_audio_tokens", "input_image_tokens",
                   "output_text_tokens", "output_audio_tokens", "cache_read_input_tokens", "thoughts_tokens",
                   "tool_use_prompt_tokens")
_KNOWN = frozenset(_FIELDS)
_GEMINI_KEYS = frozenset(("promptTokenCount", "prompt_token_count", "responseTokenCount", "response_token_count",
                          "candidatesTokenCount", "totalTokenCount", "total_token_count", "promptTokensDetails",
                          "responseTokensDetails"))

# Far above any real count, far below int64 even summed over a long session: a client's absurd number
# must neither overflow an OTLP attribute nor crash normalization.
MAX_TOKENS = 10**12


def _int(value: Any) -> int:
    if type(value) is int:  # the usual case, first: a bool is not one
        return value if 0 <= value <= MAX_TOKENS else min(MAX_TOKENS, max(0, value))
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    return min(MAX_TOKENS, max(0, int(value)))


def _get(data: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value = data.get(name, _ABSENT)
        if value is not _ABSENT:
            return value
    return None


def _either(data: Mapping[str, Any], name: str, other: str) -> Any:
    """``_get`` of two names, without the loop: a usage report is read on every model response."""
    value = data.get(name, _ABSENT)
    return data.get(other) if value is _ABSENT else value


_ABSENT = object()


def _by_modality(details: Any) -> dict[str, int]:
    """Gemini ``*TokensDetails``: a list of ``{modality, tokenCount}``."""
    counts: dict[str, int] = {}
    if not isinstance(details, list):
        return counts
    for item in details:
        if type(item) is not dict and not isinstance(item, Mapping):  # an ABC check costs more than the rest
            continue
        modality = item.get("modality", "")
        modality = modality.upper() if type(modality) is str else str(modality).upper()
        count = item.get("tokenCount", _ABSENT)
        count = _int(item.get("token_count") if count is _ABSENT else count)
        counts[modality] = counts.get(modality, 0) + count
    return counts


def _from_gemini(data: Mapping[str, Any]) -> Usage:
    prompt = _int(_either(data, "promptTokenCount", "prompt_token_count"))
    # Live reports responseTokenCount; generateContent calls the same thing candidatesTokenCount.
    response = data.get("responseTokenCount", _ABSENT)
    if response is _ABSENT:
        response = _get(data, "response_token_count", "candidatesTokenCount", "candidates_token_count")
    response = _int(response)
    cached = _int(_either(data, "cachedContentTokenCount", "cached_content_token_count"))
    thoughts = _int(_either(data, "thoughtsTokenCount", "thoughts_token_count"))
    tool_prompt = _int(_either(data, "toolUsePromptTokenCount", "tool_use_prompt_token_count"))
    prompt_mod = _by_modality(_either(data, "promptTokensDetails", "prompt_tokens_details"))
    details = data.get("responseTokensDetails", _ABSENT)
    if details is _ABSENT:
        details = _get(data, "response_tokens_details", "candidatesTokensDetails", "candidates_tokens_details")
    response_mod = _by_modality(details)
    get_in, get_out = prompt_mod.get, response_mod.get
    # Positional, in field order (keywords cost more).
    return Usage(prompt + tool_prompt, response + thoughts, get_in("TEXT", 0), get_in("AUDIO", 0),
                 get_in("IMAGE", 0) + get_in("VIDEO", 0), get_out("TEXT", 0), get_out("AUDIO", 0), cached, thoughts,
                 tool_prompt)


def _from_openai(data: Mapping[str, Any]) -> Usage:
    inp = data.get("input_token_details") or {}
    out = data.get("output_token_details") or {}
    inp = inp if type(inp) is dict or isinstance(inp, Mapping) else {}  # an ABC check costs more than a read
    out = out if type(out) is dict or isinstance(out, Mapping) else {}
    return Usage(
        input_tokens=_int(data.get("input_tokens")),
        output_tokens=_int(data.get("output_tokens")),
        input_text_tokens=_int(inp.get("text_tokens")),
        input_audio_tokens=_int(inp.get("audio_tokens")),
        input_image_tokens=_int(inp.get("image_tokens")),
        output_text_tokens=_int(out.get("text_tokens")),
        output_audio_tokens=_int(out.get("audio_tokens")),
        cache_read_input_tokens=_int(inp.get("cached_tokens")),
    )


def normalize_usage(data: Mapping[str, Any]) -> Usage:
    """Recognize the shape by its keys; unknown keys are ignored, negative or non-numeric counts read as 0."""
    if not _GEMINI_KEYS.isdisjoint(data):
        return _from_gemini(data)
    if "input_token_details" in data or "output_token_details" in data:
        return _from_openai(data)
    return Usage(**{k: _int(v) for k, v in data.items() if k in _KNOWN})
