"""What a turn cost, in USD, per modality.

Prices come from the ``genai-prices`` tables, or from operator overrides (private deals, models the tables
lack), which win. A turn is priced on the hot path, so each model's rates are resolved once into plain floats
and cached; a turn then costs a dict lookup and a few multiplications.

Bucketing follows genai-prices' own decomposition: ``input_tokens`` is the whole prompt (cached tokens and
every modality included); audio, image and cached tokens are carved out of it and priced at their own rates;
what no modality count covers (missing breakdown, Gemini tool-use prompt tokens) is priced as text, the
model's default rate. The same goes for output (thinking tokens land there).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final, NamedTuple

from genai_prices import data_snapshot, types

from gateway.analytics.usage import Usage
from gateway.frozen import frozen
from gateway.semconv import VOICE_COST_ESTIMATED, VOICE_COST_PREFIX

log = logging.getLogger("gateway.analytics.pricing")

SOURCE_TABLE: Final = "genai-prices"
SOURCE_OVERRIDE: Final = "override"
SOURCE_MIXED: Final = "mixed"

OVERRIDE_KINDS: Final = frozenset(
    {"input_text", "input_audio", "input_image", "input_cached", "output_text", "output_audio"}
)

# OTel GenAI provider names -> genai-prices provider ids; anything else goes through genai-prices' own matching.
_PROVIDER_IDS: Final = {
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "openai": "openai",
    "azure.ai.openai": "azure",
    "x_ai": "x-ai",
}

# Audio tokens per second (input, output), for turns the provider reported no usage for.
# Gemini: "Gemini represents each second of audio as 32 tokens" (ai.google.dev/gemini-api/docs/tokens).
# OpenAI Realtime: "Audio tokens in user messages are 1 token per 100 ms of audio, while audio tokens in
# assistant messages are 1 token per 50ms of audio" (developers.openai.com/api/docs/guides/realtime-costs).
_AUDIO_TOKENS_PER_S: Final = {"google": (32.0, 32.0), "openai": (10.0, 20.0), "azure": (10.0, 20.0)}

_REFRESH_S: Final = 3600.0  # genai-prices has dated prices; re-resolve now and then so a change date is honoured
_MAX_CACHED: Final = 1024  # model ids come from browsers: never let them grow memory without bound
_MAX_UNKNOWN: Final = 256
_OTHER: Final = ("other", "other")


@frozen
class Cost:
    input_usd: float
    output_usd: float
    total_usd: float
    input_text_usd: float = 0.0
    input_audio_usd: float = 0.0
    input_image_usd: float = 0.0
    input_cached_usd: float = 0.0
    output_text_usd: float = 0.0
    output_audio_usd: float = 0.0
    estimated: bool = False
    source: str = SOURCE_TABLE

    def __add__(self, other: Cost) -> Cost:
        # The USD fields by position (they lead, in field order), spelled out: each turn adds costs.
        return Cost(
            self.input_usd + other.input_usd, self.output_usd + other.output_usd, self.total_usd + other.total_usd,
            self.input_text_usd + other.input_text_usd, self.input_audio_usd + other.input_audio_usd,
            self.input_image_usd + other.input_image_usd, self.input_cached_usd + other.input_cached_usd,
            self.output_text_usd + other.output_text_usd, self.output_audio_usd + other.output_audio_usd,
            self.estimated or other.estimated, self.source if self.source == other.source else SOURCE_MIXED,
        )

    def __sub__(self, other: Cost) -> Cost:
        """Take a part back out (a turn repriced when its usage came late); flags stay those of the whole."""
        return Cost(
            **{name: getattr(self, name) - getattr(other, name) for name in _USD_FIELDS},
            estimated=self.estimated,
            source=self.source,
        )

    def __radd__(self, other: int) -> Cost:
        if other == 0:  # lets sum() start from its default 0
            return self
        return NotImplemented

    def span_attributes(self) -> dict[str, float | bool]:
        # The totals always, the parts when not zero, in field order; spelled out, once per priced response.
        attrs: dict[str, float | bool] = {_INPUT: self.input_usd, _OUTPUT: self.output_usd, _TOTAL: self.total_usd}
        if self.input_text_usd:
            attrs[_INPUT_TEXT] = self.input_text_usd
        if self.input_audio_usd:
            attrs[_INPUT_AUDIO] = self.input_audio_usd
        if self.input_image_usd:
            attrs[_INPUT_IMAGE] = self.input_image_usd
        if self.input_cached_usd:
            attrs[_INPUT_CACHED] = self.input_cached_usd
        if self.output_text_usd:
            attrs[_OUTPUT_TEXT] = self.output_text_usd
        if self.output_audio_usd:
            attrs[_OUTPUT_AUDIO] = self.output_audio_usd
        attrs[VOICE_COST_ESTIMATED] = self.estimated
        return attrs

    def to_json(self) -> dict[str, float | bool | str]:
        out: dict[str, float | bool | str] = {name: getattr(self, name) for name in _USD_FIELDS}
        out.update(currency="USD", estimated=self.estimated, source=self.source)
        return out


_TOTAL_FIELDS: Final = ("input_usd", "output_usd", "total_usd")
_USD_FIELDS: Final = tuple(f.name for f in fields(Cost) if f.name.endswith("_usd"))
# The USD fields lead, in order (Cost.__add__ passes them by position), then estimated and source.
assert [f.name for f in fields(Cost)] == [*_USD_FIELDS, "estimated", "source"]
# Each USD field's span attribute, and whether it is reported when zero (the totals are).
_USD_ATTRIBUTES: Final = tuple((f"{VOICE_COST_PREFIX}{name}", name in _TOTAL_FIELDS) for name in _USD_FIELDS)
(_INPUT, _OUTPUT, _TOTAL, _INPUT_TEXT, _INPUT_AUDIO, _INPUT_IMAGE, _INPUT_CACHED, _OUTPUT_TEXT,
 _OUTPUT_AUDIO) = (key for key, _ in _USD_ATTRIBUTES)
assert [total for _, total in _USD_ATTRIBUTES] == [True] * 3 + [False] * 6  # as span_attributes writes them


class _Rates(NamedTuple):
    """USD per million tokens, every fallback already applied."""

    input_text: float
    input_audio: float
    input_image: float
    cached_text: float
    cached_audio: float
    cached_image: float
    output_text: float
    output_audio: float


@dataclass(frozen=True, slots=True)
class _Entry:
    tiers: tuple[tuple[int, _Rates], ...]  # (tier start, rates), highest start first; the base tier starts at -1
    source: str
    expires: float


def _cost(rates: _Rates, usage: Usage, source: str, estimated: bool = False) -> Cost:
    audio, image = usage.input_audio_tokens, usage.input_image_tokens
    prompt = max(usage.input_tokens, usage.input_text_tokens + audio + image)
    text = prompt - audio - image
    # Usage says how many prompt tokens were cached but not of which modality: spread them pro rata.
    share = min(usage.cache_read_input_tokens, prompt) / prompt if prompt else 0.0
    c_text, c_audio, c_image = text * share, audio * share, image * share
    out_audio = usage.output_audio_tokens
    out_text = max(usage.output_tokens, usage.output_text_tokens + out_audio) - out_audio
    m = 1_000_000
    in_text = (text - c_text) * rates.input_text / m
    in_audio = (audio - c_audio) * rates.input_audio / m
    in_image = (image - c_image) * rates.input_image / m
    in_cached = (c_text * rates.cached_text + c_audio * rates.cached_audio + c_image * rates.cached_image) / m
    o_text, o_audio = out_text * rates.output_text / m, out_audio * rates.output_audio / m
    inp, out = in_text + in_audio + in_image + in_cached, o_text + o_audio
    return Cost(inp, out, inp + out, in_text, in_audio, in_image, in_cached, o_text, o_audio, estimated, source)


def _table_rates(prices: types.ModelPrice, input_tokens: int) -> _Rates | None:
    def rate(*keys: str) -> float | None:
        for key in keys:
            value: Decimal | types.TieredPrices | None = getattr(prices, key, None)
            if isinstance(value, types.TieredPrices):  # genai-prices' cliff tiers: the whole prompt sets the tier
                tier = next((t for t in reversed(value.tiers) if input_tokens > t.start), None)
                value = tier.price if tier else value.base
            if value is not None:
                return float(value)
        return None

    # Ancestor-before-descendant chains mirror genai-prices: a kind without its own price is billed at the
    # nearest priced kind above it (cached audio -> cached -> audio -> input); its table validation
    # guarantees the chain is unambiguous.
    base_in, base_out = rate("input_mtok"), rate("output_mtok")
    if base_in is None and base_out is None:
        return None  # priced per hour or per request only: nothing we can apply to tokens
    return _Rates(
        input_text=rate("input_text_mtok", "input_mtok") or 0.0,
        input_audio=rate("input_audio_mtok", "input_mtok") or 0.0,
        input_image=rate("input_image_mtok", "input_mtok") or 0.0,
        cached_text=rate("cache_text_read_mtok", "cache_read_mtok", "input_text_mtok", "input_mtok") or 0.0,
        cached_audio=rate("cache_audio_read_mtok", "cache_read_mtok", "input_audio_mtok", "input_mtok") or 0.0,
        cached_image=rate("cache_image_read_mtok", "cache_read_mtok", "input_image_mtok", "input_mtok") or 0.0,
        output_text=rate("output_text_mtok", "output_mtok") or 0.0,
        output_audio=rate("output_audio_mtok", "output_mtok") or 0.0,
    )


def _override_rates(key: str, prices: Mapping[str, float]) -> _Rates:
    unknown = set(prices) - OVERRIDE_KINDS
    if unknown:
        raise ValueError(f"pricing override {key!r}: unknown kinds {sorted(unknown)}; known: {sorted(OVERRIDE_KINDS)}")
    p: dict[str, float] = {}
    for kind, value in prices.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ValueError(f"pricing override {key!r}.{kind}: expected a non-negative USD per million tokens")
        p[kind] = float(value)
    # A kind left out costs what its nearest kind costs: the other modality in the same direction, and for
    # cached input the uncached rate (no discount known).
    in_text = p.get("input_text", p.get("input_audio", 0.0))
    in_audio = p.get("input_audio", in_text)
    in_image = p.get("input_image", in_text)
    out_text = p.get("output_text", p.get("output_audio", 0.0))
    cached = p.get("input_cached")
    return _Rates(
        in_text, in_audio, in_image,
        in_text if cached is None else cached, in_audio if cached is None else cached,
        in_image if cached is None else cached,
        out_text, p.get("output_audio", out_text),
    )


def _norm_model(model: str) -> str:
    model = model.strip().lower()
    # Gemini SDKs report "models/<id>", Vertex a full ".../publishers/google/models/<id>" resource name.
    return model.rpartition("models/")[2] if "models/" in model else model


def _norm_provider(provider: str | None) -> str:
    return (provider or "").strip().lower()


def _override_key(key: str) -> str:
    """``provider/model`` or ``model``, normalized as lookups are; "models/x" is a Gemini model id, not a provider."""
    name = key.strip().lower()
    if "/" not in name or name.startswith("models/"):
        return _norm_model(name)
    provider, _, model = name.partition("/")
    return f"{provider}/{_norm_model(model)}"


class Pricer:
    """Prices turns; one per process. ``unknown_models`` counts turns left unpriced, by (provider, model)."""

    def __init__(self, overrides: Mapping[str, Mapping[str, float]] | None = None) -> None:
        self._overrides: dict[str, _Rates] = {}
        for key, prices in (overrides or {}).items():
            self._overrides[_override_key(key)] = _override_rates(key, prices)
        self._cache: dict[tuple[str | None, str | None], _Entry] = {}
        self._warned: set[tuple[str, str]] = set()
        self.unknown_models: Counter[tuple[str, str]] = Counter()
        self._snapshot = data_snapshot.get_snapshot()  # loading the tables takes ~0.2 s: do it at startup

    def price(self, provider: str | None, model: str | None, usage: Usage) -> Cost | None:
        """The turn's cost, or None when the model cannot be priced (counted, warned once; never raises)."""
        key = (provider, model)
        entry = self._cache.get(key)
        if entry is None or entry.expires < time.monotonic():
            entry = self._resolve(provider, model)
        if not entry.tiers:
            self._count_unknown(provider, model)
            return None
        for start, rates in entry.tiers:
            if usage.input_tokens > start:
                return _cost(rates, usage, entry.source)
        return None  # unreachable: the base tier starts at -1, below any count

    def estimate_usage_from_audio(
        self, provider: str | None, model: str | None, input_audio_ms: float, output_audio_ms: float
    ) -> Usage | None:
        """Audio tokens implied by audio durations, or None for a provider whose tokenization we don't know."""
        prov = _norm_provider(provider)
        found = self._find_provider(prov, "") if prov and prov not in _PROVIDER_IDS else None
        family = _PROVIDER_IDS.get(prov) or (found.id if found else None)
        if family is None and model:
            name = _norm_model(model)
            family = "google" if name.startswith("gemini") else "openai" if name.startswith("gpt") else None
        per_s = _AUDIO_TOKENS_PER_S.get(family or "")
        if per_s is None:
            return None
        tokens_in = round(max(0.0, input_audio_ms) * per_s[0] / 1000)
        tokens_out = round(max(0.0, output_audio_ms) * per_s[1] / 1000)
        return Usage(input_tokens=tokens_in, input_audio_tokens=tokens_in,
                     output_tokens=tokens_out, output_audio_tokens=tokens_out)

    def estimate_from_audio(
        self, provider: str | None, model: str | None, input_audio_ms: float, output_audio_ms: float
    ) -> Cost | None:
        """For turns with no reported usage: price the audio durations' tokens; the Cost says estimated."""
        usage = self.estimate_usage_from_audio(provider, model, input_audio_ms, output_audio_ms)
        if usage is None:
            return None
        cost = self.price(provider, model, usage)
        if cost is None:
            return None
        return replace(cost, estimated=True)

    def _resolve(self, provider: str | None, model: str | None) -> _Entry:
        expires = time.monotonic() + _REFRESH_S
        entry: _Entry | None = None
        if model:
            prov, name = _norm_provider(provider), _norm_model(model)
            override = self._overrides.get(f"{prov}/{name}") or self._overrides.get(name)
            if override is not None:
                entry = _Entry(((-1, override),), SOURCE_OVERRIDE, expires)
            else:
                try:
                    entry = self._from_table(prov, name, expires)
                except Exception:  # a table quirk must cost a price, never a turn
                    log.exception("pricing: genai-prices lookup failed for %s/%s", prov, name)
        if entry is None:  # cached too, with no tiers: an unknown model must not cost a table scan every turn
            entry = _Entry((), "", expires)
        if len(self._cache) < _MAX_CACHED or (provider, model) in self._cache:
            self._cache[(provider, model)] = entry
        return entry

    def _find_provider(self, provider: str, model: str) -> types.Provider | None:
        # Resolved here rather than by genai-prices' calc_price: its lookup caches grow by one entry per distinct
        # model id, and a browser can send any number of those.
        providers = self._snapshot.providers
        if provider:
            return data_snapshot.find_provider_by_id(providers, _PROVIDER_IDS.get(provider, provider))
        return next((p for p in providers if p.model_match and p.model_match.is_match(model)), None)

    def _from_table(self, provider: str, model: str, expires: float) -> _Entry | None:
        found = self._find_provider(provider, model)
        info = found.find_model(model, all_providers=self._snapshot.providers) if found else None
        if info is None:
            return None
        prices = info.get_prices(datetime.now(UTC))
        base = _table_rates(prices, 0)
        if base is None:
            return None
        tiered = [v for v in vars(prices).values() if isinstance(v, types.TieredPrices)]
        starts = sorted({t.start for v in tiered for t in v.tiers}, reverse=True)
        tiers = [(s, r) for s in starts if (r := _table_rates(prices, s + 1)) is not None]
        return _Entry((*tiers, (-1, base)), SOURCE_TABLE, expires)

    def _count_unknown(self, provider: str | None, model: str | None) -> None:
        key = (_norm_provider(provider), _norm_model(model or ""))
        if key not in self.unknown_models and len(self.unknown_models) >= _MAX_UNKNOWN:
            key = _OTHER
        self.unknown_models[key] += 1
        if key not in self._warned:
            self._warned.add(key)
            log.warning("pricing: no price for model %r of provider %r; its turns carry no cost", key[1], key[0])
