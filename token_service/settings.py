"""The token service's settings: the shared ones from weixin/config.py plus its own TOKEN_* variables.

A missing or malformed value raises config.ConfigError with one line for the operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from weixin import config
from weixin.config import ConfigError

TOKEN_SOURCES = ("stable", "classic")


@dataclass(frozen=True)
class TokenSettings:
    appid: str
    appsecret: str
    redis_url: str
    api_base: str
    # "stable" = POST /cgi-bin/stable_token in normal mode; "classic" = GET /cgi-bin/token.
    source: str = "stable"
    # WeChat's old/new overlap: a stable token is rotated in its last `overlap` seconds, a classic
    # token stays valid this long after the next fetch. Refreshes are scheduled inside this window.
    overlap: float = 300.0
    # The Redis TTL ends this long before WeChat's expiry, so nobody reads a token about to die.
    expiry_margin: float = 60.0
    lock_lease: float = 30.0
    http_timeout: float = 5.0
    # Back-off after -1 / 45011 / network errors: base doubles up to the cap.
    backoff_base: float = 2.0
    backoff_cap: float = 60.0
    # Forced (invalidating) refreshes: WeChat allows 20/day at least 30 s apart for stable_token.
    force_daily_limit: int = 20
    force_spacing: float = 30.0
    # Pause after an error that needs a human (whitelist, frozen secret...); overrides the per-errcode
    # default when set (tests use it; operators normally leave it unset).
    stop_pause: float | None = None
    jsapi_ticket: bool = True
    log_level: str = "INFO"

    def __repr__(self) -> str:  # the secret must never reach a log or a traceback
        return f"TokenSettings(appid={self.appid!r}, source={self.source!r}, api_base={self.api_base!r})"


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def load_token_settings(
    environ: Mapping[str, str] | None = None, dotenv_path: Path | None = None
) -> TokenSettings:
    """Settings for the daemon and the consumers, from `environ` (default os.environ) and `.env`."""
    merged = config.merged_environment(environ, dotenv_path)
    base = config.load_settings(merged, dotenv_path, require_token=False)

    if not base.appid:
        raise ConfigError("WECHAT_APPID is required by the token service (it looks like wx0123456789abcdef)")
    source = merged.get("TOKEN_SOURCE", "stable").strip().lower() or "stable"
    if source not in TOKEN_SOURCES:
        raise ConfigError(f"TOKEN_SOURCE must be stable or classic, got {source!r}")
    overlap = _number(merged, "TOKEN_OVERLAP_SECONDS", 300.0, 1.0)
    expiry_margin = _number(merged, "TOKEN_EXPIRY_MARGIN_SECONDS", min(60.0, overlap / 5), 0.05)
    if expiry_margin >= overlap / 2:
        raise ConfigError("TOKEN_EXPIRY_MARGIN_SECONDS must be less than half of TOKEN_OVERLAP_SECONDS")
    stop_pause_raw = merged.get("TOKEN_STOP_PAUSE_SECONDS", "").strip()
    jsapi_raw = merged.get("TOKEN_JSAPI_TICKET", "1")
    return TokenSettings(
        appid=base.appid,
        appsecret=base.appsecret,
        redis_url=base.redis_url,
        api_base=base.api_base,
        source=source,
        overlap=overlap,
        expiry_margin=expiry_margin,
        lock_lease=_number(merged, "TOKEN_LOCK_LEASE_SECONDS", 30.0, 0.3),
        http_timeout=_number(merged, "TOKEN_HTTP_TIMEOUT_SECONDS", 5.0, 0.1),
        backoff_base=_number(merged, "TOKEN_BACKOFF_SECONDS", 2.0, 0.01),
        backoff_cap=_number(merged, "TOKEN_BACKOFF_CAP_SECONDS", 60.0, 0.01),
        force_daily_limit=int(_number(merged, "TOKEN_FORCE_DAILY_LIMIT", 20, 0)),
        force_spacing=_number(merged, "TOKEN_FORCE_SPACING_SECONDS", 30.0, 0.0),
        stop_pause=_number(merged, "TOKEN_STOP_PAUSE_SECONDS", 0.0, 0.01) if stop_pause_raw else None,
        jsapi_ticket=config.parse_bool("TOKEN_JSAPI_TICKET", jsapi_raw),
        log_level=base.log_level,
    )


def require_secret(settings: TokenSettings) -> None:
    """Only the daemon needs the AppSecret; consumers run without it."""
    if not settings.appsecret:
        raise ConfigError("WECHAT_APPSECRET is required to run the token daemon (WeChat console > 基本配置)")
