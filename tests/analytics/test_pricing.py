import dataclasses
import logging
from collections import Counter
from decimal import Decimal
from fractions import Fraction

import genai_prices
import pytest
from genai_prices import data_snapshot
from hypothesis import given
from hypothesis import strategies as st

from gateway.analytics.pricing import Cost, Pricer
from gateway.analytics.usage import Usage

M = 1_000_000  # table prices are USD per million tokens

# Per-million prices read out of the table bundled with genai-prices 0.2.3. Asserted against the installed
# table below, so a table update that changes them fails here instead of silently moving every expected cost.
GEMINI_LIVE_25 = {"input_mtok": "0.5", "input_audio_mtok": "3", "output_mtok": "2", "output_audio_mtok": "12"}
GPT_REALTIME = {
    "input_mtok": "4", "input_audio_mtok": "32", "cache_read_mtok": "0.4", "cache_audio_read_mtok": "0.4",
    "output_mtok": "16", "output_audio_mtok": "64",
}


def usd(exact: Fraction | float) -> object:
    """The hand calculation is exact; the tolerance only absorbs float rounding (1e-12 of the amount)."""
    return pytest.approx(float(exact), rel=1e-12, abs=0)


def p(price: str) -> Fraction:
    return Fraction(price)


def table_price(provider_id: str, model: str) -> genai_prices.types.ModelPrice:
    return genai_prices.calc_price(genai_prices.Usage(input_tokens=1), model, provider_id=provider_id).model_price


@pytest.fixture
def pricer() -> Pricer:
    return Pricer()


def test_the_installed_table_still_has_the_prices_these_tests_were_written_against() -> None:
    gemini = table_price("google", "gemini-live-2.5-flash-preview")
    for key, price in GEMINI_LIVE_25.items():
        assert getattr(gemini, key) == Decimal(price), key
    assert gemini.cache_read_mtok is None  # no cached rate: cached Gemini Live tokens cost their modality's rate
    realtime = table_price("openai", "gpt-realtime")
    for key, price in GPT_REALTIME.items():
        assert getattr(realtime, key) == Decimal(price), key


def test_a_gemini_live_turn_costs_what_the_table_gives_by_hand(pricer: Pricer) -> None:
    usage = Usage(input_tokens=334, input_text_tokens=24, input_audio_tokens=310,
                  output_tokens=420, output_audio_tokens=420, cache_read_input_tokens=64)
    cost = pricer.price("gcp.gemini", "gemini-live-2.5-flash-preview", usage)
    assert cost is not None
    # input:  24 text x $0.5 + 310 audio x $3 = 12 + 930 = 942 (USD per million tokens)
    # output: 420 audio x $12 = 5040
    assert cost.input_usd == usd(Fraction(942, M))
    assert cost.output_usd == usd(Fraction(5040, M))
    assert cost.total_usd == usd(Fraction(5982, M))
    assert (cost.input_usd, cost.total_usd) == (usd(0.000942), usd(0.005982))
    # The 64 cached tokens are 64/334 of each modality; with no cached rate in this table they cost full price.
    cached = Fraction(64, 334)
    assert cost.input_text_usd == usd(24 * (1 - cached) * p(GEMINI_LIVE_25["input_mtok"]) / M)
    assert cost.input_audio_usd == usd(310 * (1 - cached) * p(GEMINI_LIVE_25["input_audio_mtok"]) / M)
    assert cost.input_cached_usd == usd(
        (24 * cached * p(GEMINI_LIVE_25["input_mtok"]) + 310 * cached * p(GEMINI_LIVE_25["input_audio_mtok"])) / M
    )
    assert cost.output_audio_usd == usd(420 * p(GEMINI_LIVE_25["output_audio_mtok"]) / M)
    assert (cost.output_text_usd, cost.estimated, cost.source) == (0.0, False, "genai-prices")


def test_an_openai_realtime_turn_costs_what_the_table_gives_by_hand(pricer: Pricer) -> None:
    usage = Usage(input_tokens=1000, input_text_tokens=120, input_audio_tokens=880, cache_read_input_tokens=400,
                  output_tokens=300, output_text_tokens=30, output_audio_tokens=270)
    cost = pricer.price("openai", "gpt-realtime", usage)
    assert cost is not None
    # 400 cached of 1000 prompt tokens: 48 of the 120 text, 352 of the 880 audio.
    # input:  72 text x $4 + 528 audio x $32 + 48 x $0.4 + 352 x $0.4 = 288 + 16896 + 19.2 + 140.8 = 17344
    # output: 30 text x $16 + 270 audio x $64 = 480 + 17280 = 17760
    assert cost.input_text_usd == usd(Fraction(288, M))
    assert cost.input_audio_usd == usd(Fraction(16896, M))
    assert cost.input_cached_usd == usd(Fraction(160, M))
    assert cost.output_text_usd == usd(Fraction(480, M))
    assert cost.output_audio_usd == usd(Fraction(17280, M))
    assert (cost.input_usd, cost.output_usd, cost.total_usd) == (usd(0.017344), usd(0.01776), usd(0.035104))
    hand = (72 * p(GPT_REALTIME["input_mtok"]) + 528 * p(GPT_REALTIME["input_audio_mtok"])
            + 48 * p(GPT_REALTIME["cache_read_mtok"]) + 352 * p(GPT_REALTIME["cache_audio_read_mtok"])
            + 30 * p(GPT_REALTIME["output_mtok"]) + 270 * p(GPT_REALTIME["output_audio_mtok"])) / M
    assert cost.total_usd == usd(hand)


def test_cached_input_is_priced_at_the_cached_rate(pricer: Pricer) -> None:
    fresh = Usage(input_tokens=1000, input_text_tokens=120, input_audio_tokens=880, output_tokens=0)
    cached = Usage(input_tokens=1000, input_text_tokens=120, input_audio_tokens=880, cache_read_input_tokens=400)
    a, b = pricer.price("openai", "gpt-realtime", fresh), pricer.price("openai", "gpt-realtime", cached)
    assert a is not None and b is not None
    assert a.input_cached_usd == 0.0
    # 48 text tokens move from $4 to $0.4, 352 audio tokens from $32 to $0.4.
    assert a.input_usd - b.input_usd == usd(Fraction(48 * (4 - p("0.4")) + 352 * (32 - p("0.4")), M))


@pytest.mark.parametrize(("provider", "model", "usage"), [
    ("gcp.gemini", "gemini-live-2.5-flash-preview",
     Usage(input_tokens=5000, input_text_tokens=700, input_audio_tokens=4000, input_image_tokens=300,
           cache_read_input_tokens=1000, output_tokens=900, output_text_tokens=100, output_audio_tokens=800)),
    ("openai", "gpt-realtime-mini",  # cached text $0.06, cached audio $0.3: the cached split matters here
     Usage(input_tokens=5000, input_text_tokens=1000, input_audio_tokens=4000, cache_read_input_tokens=2500,
           output_tokens=900, output_text_tokens=100, output_audio_tokens=800)),
    ("openai", "gpt-4o-realtime-preview-2024-12-17",
     Usage(input_tokens=2000, input_text_tokens=500, input_audio_tokens=1500, cache_read_input_tokens=1000,
           output_tokens=300, output_audio_tokens=300)),
])
def test_totals_agree_with_genai_prices_own_calculation(pricer: Pricer, provider: str, model: str,
                                                        usage: Usage) -> None:
    cost = pricer.price(provider, model, usage)
    assert cost is not None
    share = usage.cache_read_input_tokens / usage.input_tokens  # the pro-rata split the Pricer documents
    theirs = genai_prices.calc_price(genai_prices.Usage(
        input_tokens=usage.input_tokens, input_audio_tokens=usage.input_audio_tokens,
        input_image_tokens=usage.input_image_tokens, cache_read_tokens=usage.cache_read_input_tokens,
        cache_audio_read_tokens=usage.input_audio_tokens * share,
        cache_image_read_tokens=usage.input_image_tokens * share,
        output_tokens=usage.output_tokens, output_audio_tokens=usage.output_audio_tokens,
    ), model, provider_id="google" if provider.startswith("gcp.") else provider)
    assert cost.input_usd == usd(theirs.input_price)
    assert cost.output_usd == usd(theirs.output_price)
    assert cost.total_usd == usd(theirs.total_price)


@pytest.mark.parametrize(("provider", "model"), [
    ("gcp.gemini", "gemini-2.5-flash-native-audio-preview-09-2025"),
    ("gcp.vertex_ai", "gemini-live-2.5-flash-preview"),
    ("gcp.gemini", "models/gemini-live-2.5-flash-preview"),
    (None, "gemini-live-2.5-flash-preview"),
    ("openai", "gpt-4o-realtime-preview-2024-12-17"),
    ("azure.ai.openai", "gpt-realtime"),
])
def test_model_ids_as_providers_report_them_are_found(pricer: Pricer, provider: str | None, model: str) -> None:
    cost = pricer.price(provider, model, Usage(input_tokens=10, output_tokens=10))
    assert cost is not None and cost.total_usd > 0


def test_input_without_a_modality_breakdown_is_priced_at_the_text_rate(pricer: Pricer) -> None:
    cost = pricer.price("gcp.gemini", "gemini-live-2.5-flash-preview", Usage(input_tokens=1000, output_tokens=500))
    assert cost is not None
    # 1000 x $0.5 + 500 x $2 (the default, text, rates)
    assert (cost.input_text_usd, cost.output_text_usd) == (usd(Fraction(500, M)), usd(Fraction(1000, M)))
    assert cost.input_audio_usd == cost.output_audio_usd == 0.0


def test_overrides_win_over_the_table() -> None:
    pricer = Pricer({"openai/gpt-realtime": {"input_text": 1, "input_audio": 2, "input_cached": 0.1,
                                             "output_text": 3, "output_audio": 5}})
    usage = Usage(input_tokens=1000, input_text_tokens=200, input_audio_tokens=800, cache_read_input_tokens=500,
                  output_tokens=100, output_audio_tokens=100)
    cost = pricer.price("openai", "gpt-realtime", usage)
    assert cost is not None and cost.source == "override"
    # cached: 100 text + 400 audio. 100 x $1 + 400 x $2 + 500 x $0.1 + 100 x $5 = 100 + 800 + 50 + 500
    assert cost.total_usd == usd(Fraction(1450, M))
    # The key named the provider: the same model through Azure still takes the table's price.
    azure = pricer.price("azure.ai.openai", "gpt-realtime", usage)
    assert azure is not None and azure.source == "genai-prices"


def test_an_override_prices_a_model_the_tables_lack() -> None:
    usage = Usage(input_tokens=100, input_audio_tokens=100, cache_read_input_tokens=40, output_tokens=50,
                  output_audio_tokens=50)
    assert Pricer().price("gcp.gemini", "acme-voice-1", usage) is None
    pricer = Pricer({"ACME-Voice-1": {"input_audio": 2, "output_audio": 8}})
    cost = pricer.price("gcp.gemini", "acme-voice-1", usage)
    assert cost is not None and cost.source == "override"
    # Left-out kinds: cached costs the uncached audio rate. 100 x $2 + 50 x $8 = 600
    assert cost.input_cached_usd == usd(Fraction(40 * 2, M))
    assert cost.total_usd == usd(Fraction(600, M))


@pytest.mark.parametrize("prices", [{"input_video": 1.0}, {"input_text": -1.0}, {"output_text": "cheap"},
                                    {"output_audio": float("nan")}, {"input_audio": True}])
def test_a_bad_override_fails_at_construction(prices: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="acme-voice-1"):
        Pricer({"acme-voice-1": prices})


def test_an_unknown_model_gives_no_cost_is_counted_and_warns_once(pricer: Pricer,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    usage = Usage(input_tokens=10, output_tokens=10)
    with caplog.at_level(logging.WARNING, logger="gateway.analytics.pricing"):
        for _ in range(3):
            assert pricer.price("gcp.gemini", "gemini-9-imaginary", usage) is None
        assert pricer.price("acme.voice", "gpt-realtime", usage) is None  # unknown provider
        assert pricer.price("openai", None, usage) is None
    assert pricer.unknown_models == Counter({("gcp.gemini", "gemini-9-imaginary"): 3, ("acme.voice", "gpt-realtime"): 1,
                                             ("openai", ""): 1})
    assert sum("gemini-9-imaginary" in r.getMessage() for r in caplog.records) == 1


def test_unknown_models_from_browsers_cannot_grow_the_counter_without_bound(pricer: Pricer) -> None:
    for i in range(1000):
        pricer.price("openai", f"made-up-{i}", Usage(input_tokens=1))
    assert len(pricer.unknown_models) <= 257
    assert sum(pricer.unknown_models.values()) == 1000


def test_a_models_price_is_looked_up_once(pricer: Pricer, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = Counter[str]()
    real = data_snapshot.find_provider_by_id

    def counting(providers: list[genai_prices.types.Provider], provider_id: str) -> genai_prices.types.Provider | None:
        calls[provider_id] += 1
        return real(providers, provider_id)

    monkeypatch.setattr(data_snapshot, "find_provider_by_id", counting)
    for _ in range(5):
        pricer.price("openai", "gpt-realtime", Usage(input_tokens=10))
        pricer.price("openai", "not-a-model", Usage(input_tokens=10))
    assert calls == Counter({"openai": 2})


def test_costs_sum_across_turns() -> None:
    a = Cost(0.1, 0.2, 0.3, input_audio_usd=0.1, output_audio_usd=0.2)
    b = Cost(0.01, 0.02, 0.03, input_text_usd=0.01, output_text_usd=0.02, estimated=True)
    total = a + b
    assert (total.input_usd, total.output_usd, total.total_usd) == (usd(0.11), usd(0.22), usd(0.33))
    assert (total.input_audio_usd, total.input_text_usd, total.output_text_usd) == (0.1, 0.01, 0.02)
    assert total.estimated and total.source == "genai-prices"
    assert sum([a, b]) == total
    assert (a + Cost(0, 0, 0, source="override")).source == "mixed"


def test_span_attributes_carry_totals_always_and_only_nonzero_modalities() -> None:
    cost = Cost(0.5, 0.25, 0.75, input_audio_usd=0.4, input_cached_usd=0.1, output_audio_usd=0.25)
    assert cost.span_attributes() == {
        "voice.cost.input_usd": 0.5, "voice.cost.output_usd": 0.25, "voice.cost.total_usd": 0.75,
        "voice.cost.input_audio_usd": 0.4, "voice.cost.input_cached_usd": 0.1, "voice.cost.output_audio_usd": 0.25,
        "voice.cost.estimated": False,
    }
    assert Cost(0, 0, 0).span_attributes() == {"voice.cost.input_usd": 0, "voice.cost.output_usd": 0,
                                               "voice.cost.total_usd": 0, "voice.cost.estimated": False}


def test_to_json_has_every_amount_and_says_how_it_was_priced() -> None:
    assert Cost(0.5, 0.25, 0.75, input_text_usd=0.5, output_audio_usd=0.25, source="override").to_json() == {
        "input_usd": 0.5, "output_usd": 0.25, "total_usd": 0.75, "input_text_usd": 0.5, "input_audio_usd": 0.0,
        "input_image_usd": 0.0, "input_cached_usd": 0.0, "output_text_usd": 0.0, "output_audio_usd": 0.25,
        "currency": "USD", "estimated": False, "source": "override",
    }


def test_an_audio_duration_estimate_is_marked_estimated(pricer: Pricer) -> None:
    gemini = pricer.estimate_from_audio("gcp.gemini", "gemini-live-2.5-flash-preview", 10_000, 5_000)
    assert gemini is not None and gemini.estimated
    # 32 tokens/s both ways: 320 input audio tokens x $3 + 160 output audio tokens x $12 = 960 + 1920
    assert gemini.total_usd == usd(Fraction(2880, M))
    assert gemini.span_attributes()["voice.cost.estimated"] is True
    openai = pricer.estimate_from_audio("openai", "gpt-realtime", 3_000, 2_000)
    assert openai is not None and openai.estimated
    # 10 tokens/s in, 20 out: 30 x $32 + 40 x $64 = 960 + 2560
    assert (openai.input_audio_usd, openai.output_audio_usd) == (usd(Fraction(960, M)), usd(Fraction(2560, M)))
    assert pricer.estimate_from_audio("acme.voice", "acme-voice-1", 1_000, 1_000) is None


def test_an_estimate_for_an_unknown_model_is_none_and_counted(pricer: Pricer) -> None:
    assert pricer.estimate_from_audio("gcp.gemini", "gemini-9-imaginary", 1_000, 1_000) is None
    assert pricer.unknown_models[("gcp.gemini", "gemini-9-imaginary")] == 1


PRICER = Pricer()  # hypothesis runs many examples: one Pricer, as in the service
counts = st.integers(min_value=0, max_value=200_000)


@given(text=counts, audio=counts, image=counts, extra=counts, cached=counts, out_text=counts, out_audio=counts)
def test_modality_amounts_add_up_to_the_totals(text: int, audio: int, image: int, extra: int, cached: int,
                                               out_text: int, out_audio: int) -> None:
    usage = Usage(input_tokens=text + audio + image + extra, input_text_tokens=text, input_audio_tokens=audio,
                  input_image_tokens=image, cache_read_input_tokens=cached, output_tokens=out_text + out_audio + extra,
                  output_text_tokens=out_text, output_audio_tokens=out_audio)
    for provider, model in (("gcp.gemini", "gemini-live-2.5-flash"), ("openai", "gpt-realtime-mini")):
        cost = PRICER.price(provider, model, usage)
        assert cost is not None
        parts_in = cost.input_text_usd + cost.input_audio_usd + cost.input_image_usd + cost.input_cached_usd
        assert cost.input_usd == pytest.approx(parts_in, rel=1e-12, abs=1e-18)
        assert cost.output_usd == pytest.approx(cost.output_text_usd + cost.output_audio_usd, rel=1e-12, abs=1e-18)
        assert cost.total_usd == pytest.approx(cost.input_usd + cost.output_usd, rel=1e-12, abs=1e-18)
        assert all(amount >= 0 for key, amount in cost.to_json().items() if key.endswith("_usd"))



def test_span_attributes_come_in_field_order_and_sums_field_by_field() -> None:
    # The order is the spans' attribute order, and so the encoded bytes'.
    parts = {f.name: float(i + 1) for i, f in enumerate(dataclasses.fields(Cost)) if f.name.endswith("_usd")}
    full = Cost(**parts)
    assert list(full.span_attributes()) == [f"voice.cost.{name}" for name in parts] + ["voice.cost.estimated"]
    assert list(full.span_attributes().values())[:-1] == list(parts.values())
    doubled = full + full
    assert [getattr(doubled, name) for name in parts] == [2 * v for v in parts.values()]
    counts = {f.name: i + 1 for i, f in enumerate(dataclasses.fields(Usage))}
    usage = Usage(**counts) + Usage(**counts)
    assert usage.to_dict() == {name: 2 * v for name, v in counts.items()}
    assert list(usage.span_attributes().items()) == [
        ("gen_ai.usage.input_tokens", 2), ("gen_ai.usage.output_tokens", 4),
        ("gen_ai.usage.text.input_tokens", 6), ("gen_ai.usage.audio.input_tokens", 8),
        ("gen_ai.usage.text.output_tokens", 12), ("gen_ai.usage.audio.output_tokens", 14),
        ("gen_ai.usage.cache_read.input_tokens", 16)]
