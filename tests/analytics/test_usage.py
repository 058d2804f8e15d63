import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.analytics.usage import Usage, normalize_usage


def test_gemini_usage_metadata_is_split_by_modality() -> None:
    usage = normalize_usage({
        "promptTokenCount": 130, "responseTokenCount": 410, "cachedContentTokenCount": 64,
        "totalTokenCount": 540,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 30}, {"modality": "AUDIO", "tokenCount": 100}],
        "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 400}, {"modality": "TEXT", "tokenCount": 10}],
    })
    assert usage == Usage(input_tokens=130, output_tokens=410, input_text_tokens=30, input_audio_tokens=100,
                          output_text_tokens=10, output_audio_tokens=400, cache_read_input_tokens=64)


def test_gemini_snake_case_from_the_python_sdk_reads_the_same() -> None:
    usage = normalize_usage({
        "prompt_token_count": 10, "response_token_count": 20,
        "prompt_tokens_details": [{"modality": "AUDIO", "token_count": 10}],
        "response_tokens_details": [{"modality": "AUDIO", "token_count": 20}],
    })
    assert (usage.input_audio_tokens, usage.output_audio_tokens) == (10, 20)


def test_openai_realtime_usage_is_normalized() -> None:
    usage = normalize_usage({
        "total_tokens": 300, "input_tokens": 120, "output_tokens": 180,
        "input_token_details": {"text_tokens": 20, "audio_tokens": 100, "cached_tokens": 40},
        "output_token_details": {"text_tokens": 30, "audio_tokens": 150},
    })
    assert usage == Usage(input_tokens=120, output_tokens=180, input_text_tokens=20, input_audio_tokens=100,
                          output_text_tokens=30, output_audio_tokens=150, cache_read_input_tokens=40)


def test_garbage_counts_read_as_zero_never_raise() -> None:
    usage = normalize_usage({"promptTokenCount": "many", "responseTokenCount": -5,
                             "promptTokensDetails": [None, {"modality": "AUDIO", "tokenCount": True}]})
    assert usage.is_empty()


def test_thinking_and_tool_prompt_tokens_count_in_the_totals() -> None:
    usage = normalize_usage({"promptTokenCount": 10, "toolUsePromptTokenCount": 5,
                             "responseTokenCount": 7, "thoughtsTokenCount": 3})
    assert (usage.input_tokens, usage.output_tokens) == (15, 10)


def test_infinite_and_absurd_counts_never_raise_and_stay_in_int64() -> None:
    usage = normalize_usage({"promptTokenCount": float("inf"), "responseTokenCount": float("nan"),
                             "cachedContentTokenCount": 10**40})
    assert (usage.input_tokens, usage.output_tokens) == (0, 0)
    assert 0 < usage.cache_read_input_tokens < 2**63


_COUNTS = ("promptTokenCount", "prompt_token_count", "responseTokenCount", "response_token_count",
           "candidatesTokenCount", "candidates_token_count", "cachedContentTokenCount", "cached_content_token_count",
           "thoughtsTokenCount", "thoughts_token_count", "toolUsePromptTokenCount", "tool_use_prompt_token_count")
_DETAILS = ("promptTokensDetails", "prompt_tokens_details", "responseTokensDetails", "response_tokens_details",
            "candidatesTokensDetails", "candidates_tokens_details")
_count = st.none() | st.booleans() | st.integers(-5, 10**13) | st.floats() | st.text(max_size=3)
_detail = st.none() | st.integers() | st.fixed_dictionaries(
    {}, optional={"modality": st.sampled_from(["TEXT", "audio", "Image", "VIDEO", "", None, 3]),
                  "tokenCount": _count, "token_count": _count})


def _first(data: dict[str, Any], *names: str) -> Any:
    return next((data[n] for n in names if n in data), None)


def _plain(data: dict[str, Any]) -> dict[str, int]:
    """Gemini usage read the plain way: the first name present, each detail item's modality upper-cased."""
    def count(*names: str) -> int:
        value = _first(data, *names)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return 0
        return min(10**12, max(0, int(value)))

    def modalities(*names: str) -> dict[str, int]:
        out: dict[str, int] = {}
        details = _first(data, *names)
        for item in details if isinstance(details, list) else []:
            if isinstance(item, dict):
                key = str(item.get("modality", "")).upper()
                out[key] = out.get(key, 0) + count_of(item)
        return out

    def count_of(item: dict[str, Any]) -> int:
        value = _first(item, "tokenCount", "token_count")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return 0
        return min(10**12, max(0, int(value)))

    prompt, thoughts, tool = count(*_COUNTS[:2]), count(*_COUNTS[8:10]), count(*_COUNTS[10:])
    inp = modalities(*_DETAILS[:2])
    out = modalities(*_DETAILS[2:])
    return {"input_tokens": prompt + tool, "output_tokens": count(*_COUNTS[2:6]) + thoughts,
            "input_text_tokens": inp.get("TEXT", 0), "input_audio_tokens": inp.get("AUDIO", 0),
            "input_image_tokens": inp.get("IMAGE", 0) + inp.get("VIDEO", 0),
            "output_text_tokens": out.get("TEXT", 0), "output_audio_tokens": out.get("AUDIO", 0),
            "cache_read_input_tokens": count(*_COUNTS[6:8]), "thoughts_tokens": thoughts,
            "tool_use_prompt_tokens": tool}


@given(st.fixed_dictionaries({"promptTokenCount": _count}, optional={
    **dict.fromkeys(_COUNTS[1:], _count), **dict.fromkeys(_DETAILS, st.none() | st.lists(_detail, max_size=4))}))
def test_gemini_usage_reads_the_first_name_present_of_each_count_whatever_the_values(data: dict[str, Any]) -> None:
    assert normalize_usage(data).to_dict() == _plain(data)
