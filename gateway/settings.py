"""Gateway-only settings: ``distribution.voice_gateway`` in the config file, ``VTG_*`` in the env.

Precedence is argument → env → file → default. A bad value in the file is a
startup error naming its key path; a bad env value warns and falls back, as
the OTel SDK does for its own variables.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from gateway.errors import ConfigError

log = logging.getLogger("gateway.settings")

FILE_PREFIX = "distribution.voice_gateway"


@dataclass(frozen=True)
class GatewaySettings:
    session_idle_timeout_s: float = 300.0
    session_max_duration_s: float = 4 * 3600.0
    # Seconds an ended session's summary stays answerable (ending twice, late beacons).
    ended_retention_s: float = 600.0
    sweep_interval_s: float = 5.0
    signing_key: str = ""
    token_ttl_s: float = 0.0  # 0: max duration plus ten minutes
    capture_content: bool = False
    recent_sessions: int = 100
    shutdown_grace_s: float = 10.0
    max_body_bytes: int = 64 * 1024  # the sendBeacon limit
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def signing_key_generated(self) -> bool:
        return self.extra.get("_generated_key", False) is True

    @property
    def effective_token_ttl_s(self) -> float:
        return self.token_ttl_s or self.session_max_duration_s + 600


_ENV = {f.name: f"VTG_{f.name.upper()}" for f in fields(GatewaySettings) if f.name != "extra"}


def _coerce(name: str, raw: Any, default: Any) -> Any:
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
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{FILE_PREFIX}.{key}", f"{exc}: {raw!r}") from None
    for key, var in _ENV.items():
        if var in env:
            try:
                values[key] = _coerce(key, env[var], getattr(defaults, key))
            except (TypeError, ValueError) as exc:
                fallback = values.get(key, getattr(defaults, key))
                log.warning("ignoring %s=%r (%s); using %r", var, env[var], exc, fallback)
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = replace(defaults, **values)
    if not settings.signing_key:
        log.warning(
            "no signing key configured (VTG_SIGNING_KEY): using a random key for this process; "
            "replicas behind one load balancer need one shared key"
        )
        settings = replace(settings, signing_key=secrets.token_urlsafe(32), extra={"_generated_key": True})
    return settings
