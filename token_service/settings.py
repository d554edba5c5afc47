"""The token service's settings: the shared ones from weixin/config.py plus its own TOKEN_* variables.

A missing or malformed value raises config.ConfigError with one line for the operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from weixin import config
from weixin.config import ConfigError, Parser, Variable, boolean, choice, number, read_table

TOKEN_SOURCES = ("stable", "classic")


@dataclass(frozen=True)
class TokenSettings:
    """The token service's settings: TOKEN_VARIABLES below gives each one's variable and default."""

    appid: str
    appsecret: str
    redis_url: str
    api_base: str
    # "stable" = POST /cgi-bin/stable_token in normal mode; "classic" = GET /cgi-bin/token.
    source: str
    # WeChat's old/new overlap: a stable token is rotated in its last `overlap` seconds, a classic
    # token stays valid this long after the next fetch. Refreshes are scheduled inside this window.
    overlap: float
    # The Redis TTL ends this long before WeChat's expiry, so nobody reads a token about to die.
    expiry_margin: float
    lock_lease: float
    http_timeout: float
    # Back-off after -1 / 45011 / network errors: base doubles up to the cap.
    backoff_base: float
    backoff_cap: float
    # Forced (invalidating) refreshes: WeChat allows 20/day at least 30 s apart for stable_token.
    force_daily_limit: int
    force_spacing: float
    # Pause after an error that needs a human (whitelist, frozen secret...); overrides the per-errcode
    # default when set (tests use it; operators normally leave it unset).
    stop_pause: float | None
    jsapi_ticket: bool
    log_level: str

    def __repr__(self) -> str:  # the secret must never reach a log or a traceback
        return f"TokenSettings(appid={self.appid!r}, source={self.source!r}, api_base={self.api_base!r})"


def seconds(minimum: float, *, optional: bool = False) -> Parser:
    """A duration in seconds (a float), at least `minimum`."""
    return number(float, minimum, what="a number of seconds", optional=optional)


# The TOKEN_* variables; a blank one is unset (its default), except TOKEN_JSAPI_TICKET, where blank is off.
# The shared ones (WECHAT_APPID, REDIS_URL...) come from weixin/config.py's table.
TOKEN_VARIABLES = (
    Variable("TOKEN_SOURCE", "source", choice(
        TOKEN_SOURCES, "must be stable or classic, got {value!r}", fold=str.lower), "stable", blank_is_default=True),
    Variable("TOKEN_OVERLAP_SECONDS", "overlap", seconds(1.0), "300", blank_is_default=True),
    # Blank: min(60, overlap / 5), in load_token_settings.
    Variable("TOKEN_EXPIRY_MARGIN_SECONDS", "expiry_margin", seconds(0.05, optional=True)),
    Variable("TOKEN_LOCK_LEASE_SECONDS", "lock_lease", seconds(0.3), "30", blank_is_default=True),
    Variable("TOKEN_HTTP_TIMEOUT_SECONDS", "http_timeout", seconds(0.1), "5", blank_is_default=True),
    Variable("TOKEN_BACKOFF_SECONDS", "backoff_base", seconds(0.01), "2", blank_is_default=True),
    Variable("TOKEN_BACKOFF_CAP_SECONDS", "backoff_cap", seconds(0.01), "60", blank_is_default=True),
    # A count, read as a float and truncated, as it always was.
    Variable("TOKEN_FORCE_DAILY_LIMIT", "force_daily_limit", number(float, 0), "20", blank_is_default=True),
    Variable("TOKEN_FORCE_SPACING_SECONDS", "force_spacing", seconds(0.0), "30", blank_is_default=True),
    Variable("TOKEN_STOP_PAUSE_SECONDS", "stop_pause", seconds(0.01, optional=True)),
    Variable("TOKEN_JSAPI_TICKET", "jsapi_ticket", boolean, "1"),
)


def load_token_settings(
    environ: Mapping[str, str] | None = None, dotenv_path: Path | None = None
) -> TokenSettings:
    """Settings for the daemon and the consumers, from `environ` (default os.environ) and `.env`."""
    merged = config.merged_environment(environ, dotenv_path)
    base = config.load_settings(merged, dotenv_path, require_token=False)
    if not base.appid:
        raise ConfigError("WECHAT_APPID is required by the token service (it looks like wx0123456789abcdef)")
    values = read_table(TOKEN_VARIABLES, merged)
    if values["expiry_margin"] is None:
        values["expiry_margin"] = min(60.0, values["overlap"] / 5)
    if values["expiry_margin"] >= values["overlap"] / 2:
        raise ConfigError("TOKEN_EXPIRY_MARGIN_SECONDS must be less than half of TOKEN_OVERLAP_SECONDS")
    values["force_daily_limit"] = int(values["force_daily_limit"])
    return TokenSettings(
        appid=base.appid, appsecret=base.appsecret, redis_url=base.redis_url, api_base=base.api_base,
        log_level=base.log_level, **values,
    )


def require_secret(settings: TokenSettings) -> None:
    """Only the daemon needs the AppSecret; consumers run without it."""
    if not settings.appsecret:
        raise ConfigError("WECHAT_APPSECRET is required to run the token daemon (WeChat console > 基本配置)")
