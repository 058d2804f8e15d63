"""Token usage, normalized across providers.

Browsers forward whatever the model sent: Gemini Live's ``usageMetadata``
(camelCase on the wire, snake_case from the Python SDK), OpenAI Realtime's
``response.usage``, or counts already in our own names. All become a
``Usage``: totals plus per-modality counts, which is what pricing and the
``gen_ai.usage.*`` attributes need.
"""

from __future__ import annotations

import math
import operator
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
        # Positional, in field order: a turn adds usages a few times, and fields() rebuilds its tuple each call.
        return Usage(*map(operator.add, _values(self), _values(other)))

    def to_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, int]) -> Usage:
        return cls(*[int(data.get(name, 0)) for name in _FIELDS])

    def is_empty(self) -> bool:
        return not any(self.to_dict().values())

    def span_attributes(self) -> dict[str, int]:
        # Zero per-modality counts are noise; the two totals are always reported.
        attrs = {semconv.GEN_AI_USAGE_INPUT_TOKENS: self.input_tokens,
                 semconv.GEN_AI_USAGE_OUTPUT_TOKENS: self.output_tokens}
        for key, value in zip(_MODALITY_ATTRIBUTES, _modalities(self), strict=True):
            if value:
                attrs[key] = value
        return attrs


_FIELDS = tuple(f.name for f in fields(Usage))
_values = operator.attrgetter(*_FIELDS)
_MODALITY_ATTRIBUTES = (
    semconv.GEN_AI_USAGE_TEXT_INPUT_TOKENS, semconv.GEN_AI_USAGE_AUDIO_INPUT_TOKENS,
    semconv.GEN_AI_USAGE_TEXT_OUTPUT_TOKENS, semconv.GEN_AI_USAGE_AUDIO_OUTPUT_TOKENS,
    semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
)
_modalities = operator.attrgetter("input_text_tokens", "input_audio_tokens", "output_text_tokens",
                                  "output_audio_tokens", "cache_read_input_tokens")
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


_ABSENT = object()


def _by_modality(details: Any) -> dict[str, int]:
    """Gemini ``*TokensDetails``: a list of ``{modality, tokenCount}``."""
    counts: dict[str, int] = {}
    if not isinstance(details, list):
        return counts
    for item in details:
        if not isinstance(item, Mapping):
            continue
        modality = str(item.get("modality", "")).upper()
        counts[modality] = counts.get(modality, 0) + _int(_get(item, "tokenCount", "token_count"))
    return counts


def _from_gemini(data: Mapping[str, Any]) -> Usage:
    prompt = _int(_get(data, "promptTokenCount", "prompt_token_count"))
    # Live reports responseTokenCount; generateContent calls the same thing candidatesTokenCount.
    response = _int(
        _get(data, "responseTokenCount", "response_token_count", "candidatesTokenCount", "candidates_token_count")
    )
    cached = _int(_get(data, "cachedContentTokenCount", "cached_content_token_count"))
    thoughts = _int(_get(data, "thoughtsTokenCount", "thoughts_token_count"))
    tool_prompt = _int(_get(data, "toolUsePromptTokenCount", "tool_use_prompt_token_count"))
    prompt_mod = _by_modality(_get(data, "promptTokensDetails", "prompt_tokens_details"))
    response_mod = _by_modality(
        _get(
            data,
            "responseTokensDetails",
            "response_tokens_details",
            "candidatesTokensDetails",
            "candidates_tokens_details",
        )
    )
    return Usage(
        input_tokens=prompt + tool_prompt,
        output_tokens=response + thoughts,
        input_text_tokens=prompt_mod.get("TEXT", 0),
        input_audio_tokens=prompt_mod.get("AUDIO", 0),
        input_image_tokens=prompt_mod.get("IMAGE", 0) + prompt_mod.get("VIDEO", 0),
        output_text_tokens=response_mod.get("TEXT", 0),
        output_audio_tokens=response_mod.get("AUDIO", 0),
        cache_read_input_tokens=cached,
        thoughts_tokens=thoughts,
        tool_use_prompt_tokens=tool_prompt,
    )


def _from_openai(data: Mapping[str, Any]) -> Usage:
    inp = data.get("input_token_details") or {}
    out = data.get("output_token_details") or {}
    inp = inp if isinstance(inp, Mapping) else {}
    out = out if isinstance(out, Mapping) else {}
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
