"""Gateway-only settings: ``distribution.voice_gateway`` in the config file, ``VTG_*`` in the env.

Precedence is argument → env → file → default. A bad value in the file is a
startup error naming its key path; a bad env value warns and falls back, as
the OTel SDK does for its own variables.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from gateway.analytics.pricing import Pricer
from gateway.errors import ConfigError

log = logging.getLogger("gateway.settings")

FILE_PREFIX = "distribution.voice_gateway"


@dataclass(frozen=True)
class GatewaySettings:
    # memory (default), sqlite:///path/to/sessions.db (durable, one process), redis://host:port/db (replicas)
    session_store: str = "memory"
    session_idle_timeout_s: float = 300.0
    session_max_duration_s: float = 4 * 3600.0
    # Seconds an ended session's summary stays answerable (ending twice, late beacons).
    ended_retention_s: float = 600.0
    sweep_interval_s: float = 5.0
    signing_key: str = ""
    # Keys still accepted for tokens signed before a rotation; never used to sign.
    previous_signing_keys: tuple[str, ...] = ()
    token_ttl_s: float = 0.0  # 0: max duration plus ten minutes
    # Session creation needs one of these as a bearer token when any is set; open otherwise.
    api_keys: tuple[str, ...] = ()
    # Browser origins allowed to call the API: exact origins or https://*.example.com; none by default.
    cors_origins: tuple[str, ...] = ()
    # Provider ephemeral tokens minted for browsers (DESIGN §3.5): "gemini", "openai", or both; none by default.
    # The providers' keys come from their SDKs' own variables (GEMINI_API_KEY or GOOGLE_API_KEY, OPENAI_API_KEY),
    # never from here, so they never appear in settings or check-config output.
    provider_tokens: tuple[str, ...] = ()
    # The app's own auth endpoint: it gets each minting request's Cookie and Authorization headers; 2xx allows.
    forward_auth_url: str = ""
    # The auth endpoint's response header naming the signed-in user; it becomes the session's user_id.
    forward_auth_user_header: str = "X-Auth-User"
    forward_auth_timeout_s: float = 5.0
    provider_token_timeout_s: float = 10.0
    provider_token_rate_per_client: float = 1.0  # tokens per second, with a burst of ten times that
    provider_token_rate_per_user: float = 0.5
    # Gemini: how long the token may carry messages, how long it may open a new Live session, how many sessions.
    gemini_token_ttl_s: float = 1800.0
    gemini_new_session_ttl_s: float = 60.0
    gemini_token_uses: int = 1
    # Locks the token to this Live model (and gemini_live_config, LiveConnectConfig fields); empty: unlocked.
    gemini_live_model: str = ""
    gemini_live_config: Mapping[str, Any] = field(default_factory=dict)
    # OpenAI Realtime: the client secret's life, and the session config it carries ({"type": "realtime", ...}).
    openai_token_ttl_s: float = 600.0
    openai_session: Mapping[str, Any] = field(default_factory=dict)
    # Opens the viewer (/ui) to non-loopback clients that present it; without it the viewer is loopback-only.
    admin_key: str = ""
    # Peers whose X-Forwarded-For is believed (addresses or CIDR ranges).
    trusted_proxies: tuple[str, ...] = ()
    # Which content is recorded: transcripts, tool_arguments, tool_results ("all" / true, or none), and audio
    # (call recordings, gateway/recordings): audio is never part of "all", it must be named.
    capture_content: tuple[str, ...] = ()
    # Where call recordings go: file:///dir (default: ./data/recordings under the working directory) or
    # s3://bucket/prefix (AWS_* variables; AWS_ENDPOINT_URL for S3-compatible servers).
    recording_store: str = ""
    recording_retention_days: float = 30.0
    # An ended session still takes recording chunks this long: the browser uploads its last chunk after /end.
    recording_grace_s: float = 30.0
    recording_max_chunk_bytes: int = 2 * 1024 * 1024
    recording_max_session_bytes: int = 256 * 1024 * 1024
    recording_max_duration_s: float = 4 * 3600.0
    # How long the signed recording links put on spans stay valid.
    recording_link_ttl_s: float = 7 * 86400.0
    # The gateway's public URL (https://traces.example.com), for absolute recording links; relative when empty.
    recording_public_url: str = ""
    # Built-in redactions applied to captured content (email, phone, card), plus extra regexes.
    redact: tuple[str, ...] = ("email", "phone", "card")
    redact_patterns: tuple[str, ...] = ()
    # "session": one trace per session; "per_turn": each turn its own trace, linked to the session root.
    trace_mode: str = "session"
    # Trace every session that ends in error, even when the sampler said no (decided at the end).
    keep_errored_sessions: bool = False
    recent_sessions: int = 100
    # Seconds between SIGTERM and closing the listener, /readyz answering 503 so load balancers stop routing
    # here while requests are still served (only under `serve`); 0: no drain.
    drain_s: float = 5.0
    # The outbox of the sqlite and redis stores (spans committed with the state): its bounds, past which events
    # get 503 with Retry-After, and (redis) how long a replica's unacknowledged entries wait before another
    # replica takes them over as abandoned.
    outbox_max_entries: int = 100_000
    outbox_max_bytes: int = 256 * 1024 * 1024
    outbox_claim_idle_s: float = 30.0
    shutdown_grace_s: float = 10.0
    max_body_bytes: int = 64 * 1024  # the sendBeacon limit
    # How long a failed export batch is retried before it is dropped (and counted).
    export_retry_max_elapsed_s: float = 600.0
    export_retry_max_backoff_s: float = 30.0
    # A directory where batches a backend did not take wait on disk, across restarts; empty: off.
    export_spool_dir: str = ""
    export_spool_max_bytes: int = 256 * 1024 * 1024
    max_events_per_request: int = 500
    max_events_per_session: int = 50_000
    max_open_tools_per_session: int = 128
    max_open_sessions: int = 10_000
    max_attribute_length: int = 8192
    session_create_rate_per_client: float = 5.0  # per second, with a burst of ten times that
    event_rate_per_session: float = 100.0
    event_rate_per_client: float = 1000.0
    # USD per million tokens by model ("provider/model" or "model") and kind: input_text, input_audio,
    # input_image, input_cached, output_text, output_audio. Wins over the genai-prices tables.
    price_overrides: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def captures(self, kind: str) -> bool:
        return kind in self.capture_content

    @property
    def signing_key_generated(self) -> bool:
        return self.extra.get("_generated_key", False) is True

    @property
    def effective_token_ttl_s(self) -> float:
        return self.token_ttl_s or self.session_max_duration_s + 600


_ENV = {f.name: f"VTG_{f.name.upper()}" for f in fields(GatewaySettings) if f.name != "extra"}


TEXT_CONTENT_KINDS = ("transcripts", "tool_arguments", "tool_results")
# "all" means the text kinds: recording a call's audio is a separate decision, named on its own.
CONTENT_KINDS = (*TEXT_CONTENT_KINDS, "audio")
PROVIDERS = ("gemini", "openai")


def _coerce(name: str, raw: Any, default: Any) -> Any:
    if name == "capture_content":
        return _content_kinds(raw)
    if name == "price_overrides":
        parsed = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(parsed, dict) or not all(isinstance(v, dict) for v in parsed.values()):
            raise ValueError("expected a mapping of model to {kind: USD per million tokens}")
        Pricer(parsed)  # validates kinds and prices, naming the bad key
        return parsed
    if name in ("gemini_live_config", "openai_session"):
        parsed = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(parsed, dict):
            raise ValueError("expected a JSON object")
        return parsed
    if name == "provider_tokens":
        items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
        names = tuple(dict.fromkeys(str(x).strip().lower() for x in items if str(x).strip()))
        if names in (("none",), ("off",), ("false",)):
            return ()
        unknown = [n for n in names if n not in PROVIDERS]
        if unknown:
            raise ValueError(f"unknown provider(s) {unknown}; expected {' and/or '.join(PROVIDERS)}")
        return names
    if name == "trace_mode":
        if raw not in ("session", "per_turn"):
            raise ValueError("expected 'session' or 'per_turn'")
        return raw
    if isinstance(default, tuple):
        if isinstance(raw, str):
            # Regexes may hold commas: the env form of redact_patterns is a JSON list.
            if name == "redact_patterns":
                parsed = json.loads(raw) if raw.strip() else []
                if not isinstance(parsed, list):
                    raise ValueError("expected a JSON list of regular expressions")
                raw = parsed
            else:
                raw = [part.strip() for part in raw.split(",") if part.strip()]
        if not isinstance(raw, list | tuple) or not all(isinstance(x, str) for x in raw):
            raise ValueError("expected a list of strings")
        if name == "redact_patterns":
            for pattern in raw:
                re.compile(pattern)
        return tuple(raw)
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected a boolean")
    if isinstance(default, int):
        value = int(raw)
        if value < 0:
            raise ValueError("must not be negative")
        return value
    if isinstance(default, float):
        if isinstance(raw, bool):
            raise ValueError("expected a number")
        number = float(raw)
        if number < 0 or number != number:
            raise ValueError("must be a non-negative number")
        return number
    if not isinstance(raw, str):
        raise ValueError("expected a string")
    return raw


def _content_kinds(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, bool):
        return TEXT_CONTENT_KINDS if raw else ()
    items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
    kinds = [str(x).strip().lower() for x in items if str(x).strip()]
    if kinds in (["true"], ["all"], ["1"], ["yes"]):
        return TEXT_CONTENT_KINDS
    if kinds in (["false"], ["none"], ["0"], ["no"]):
        return ()
    if "all" in kinds:  # "all,audio": every text kind and the audio
        kinds = [*TEXT_CONTENT_KINDS, *(k for k in kinds if k not in ("all", *TEXT_CONTENT_KINDS))]
    unknown = [k for k in kinds if k not in CONTENT_KINDS]
    if unknown:
        raise ValueError(f"unknown content kind(s) {unknown}; expected all, none or {', '.join(CONTENT_KINDS)}")
    return tuple(kinds)


def load_settings(
    file_section: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> GatewaySettings:
    env = os.environ if env is None else env
    defaults = GatewaySettings()
    values: dict[str, Any] = {}
    known = {f.name for f in fields(GatewaySettings)} - {"extra"}
    for key, raw in (file_section or {}).items():
        if key not in known:
            raise ConfigError(f"{FILE_PREFIX}.{key}", f"unknown setting (known: {', '.join(sorted(known))})")
        try:
            values[key] = _coerce(key, raw, getattr(defaults, key))
        except (TypeError, ValueError, re.error) as exc:
            raise ConfigError(f"{FILE_PREFIX}.{key}", f"{exc}: {raw!r}") from None
    for key, var in _ENV.items():
        if var in env:
            try:
                values[key] = _coerce(key, env[var], getattr(defaults, key))
            except (TypeError, ValueError, re.error) as exc:
                fallback = values.get(key, getattr(defaults, key))
                log.warning("ignoring %s=%r (%s); using %r", var, env[var], exc, fallback)
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = replace(defaults, **values)
    if settings.provider_tokens and not (settings.api_keys or settings.forward_auth_url):
        # Minting spends the operator's money: it is never open to anyone who can reach the gateway.
        raise ConfigError("VTG_PROVIDER_TOKENS", "minting provider tokens needs VTG_API_KEYS or VTG_FORWARD_AUTH_URL")
    if settings.gemini_token_uses < 1:
        raise ConfigError("VTG_GEMINI_TOKEN_USES", "must be at least 1")
    if settings.signing_key and len(settings.signing_key.encode()) < 32:
        log.warning("the signing key is shorter than 32 bytes; HS256 wants at least that much")
    if not settings.signing_key:
        log.warning(
            "no signing key configured (VTG_SIGNING_KEY): using a random key for this process; "
            "replicas behind one load balancer need one shared key"
        )
        settings = replace(settings, signing_key=secrets.token_urlsafe(32), extra={"_generated_key": True})
    return settings
