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
