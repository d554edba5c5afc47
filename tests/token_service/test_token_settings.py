"""The token service's TOKEN_* settings: defaults, how their text is read, and their one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from token_service.settings import TokenSettings, load_token_settings
from weixin.config import ConfigError

NO_DOTENV = Path("/nonexistent/.env")
BASE = {"WECHAT_APPID": "wx1", "WECHAT_APPSECRET": "secretvalue", "LOG_LEVEL": "warning"}


def token_settings(**env: str) -> TokenSettings:
    return load_token_settings({**BASE, **env}, dotenv_path=NO_DOTENV)


def test_every_default() -> None:
    loaded = token_settings()
    assert {name: getattr(loaded, name) for name in TokenSettings.__dataclass_fields__} == {
        "appid": "wx1",
        "appsecret": "secretvalue",
        "redis_url": "redis://127.0.0.1:6379/0",
        "api_base": "https://api.weixin.qq.com",
        "source": "stable",
        "overlap": 300.0,
        "expiry_margin": 60.0,
        "lock_lease": 30.0,
        "http_timeout": 5.0,
        "backoff_base": 2.0,
        "backoff_cap": 60.0,
        "force_daily_limit": 20,
        "force_spacing": 30.0,
        "stop_pause": None,
        "jsapi_ticket": True,
        "log_level": "WARNING",
    }
    assert type(loaded.force_daily_limit) is int
    assert "secretvalue" not in repr(loaded)


def test_values_are_read_as_documented() -> None:
    loaded = token_settings(
        TOKEN_SOURCE=" Classic ", TOKEN_OVERLAP_SECONDS="100", TOKEN_LOCK_LEASE_SECONDS="0.3",
        TOKEN_HTTP_TIMEOUT_SECONDS="1", TOKEN_BACKOFF_SECONDS="0.01", TOKEN_BACKOFF_CAP_SECONDS="9",
        TOKEN_FORCE_DAILY_LIMIT="2.5", TOKEN_FORCE_SPACING_SECONDS="0", TOKEN_STOP_PAUSE_SECONDS="0.5",
        TOKEN_JSAPI_TICKET="off",
    )
    assert (loaded.source, loaded.overlap, loaded.expiry_margin) == ("classic", 100.0, 20.0)
    assert (loaded.lock_lease, loaded.http_timeout, loaded.backoff_base, loaded.backoff_cap) == (0.3, 1.0, 0.01, 9.0)
    assert (loaded.force_daily_limit, loaded.force_spacing, loaded.stop_pause) == (2, 0.0, 0.5)
    assert loaded.jsapi_ticket is False
    assert token_settings(TOKEN_EXPIRY_MARGIN_SECONDS="7").expiry_margin == 7.0
    # Empty is unset for these (the default), but an empty TOKEN_JSAPI_TICKET is off.
    blank = token_settings(
        TOKEN_SOURCE=" ", TOKEN_OVERLAP_SECONDS="", TOKEN_STOP_PAUSE_SECONDS=" ", TOKEN_JSAPI_TICKET=""
    )
    assert (blank.source, blank.overlap, blank.stop_pause, blank.jsapi_ticket) == ("stable", 300.0, None, False)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WECHAT_APPID": ""}, "WECHAT_APPID is required by the token service (it looks like wx0123456789abcdef)"),
        ({"TOKEN_SOURCE": "Fast"}, "TOKEN_SOURCE must be stable or classic, got 'fast'"),
        ({"TOKEN_OVERLAP_SECONDS": "5m"}, "TOKEN_OVERLAP_SECONDS must be a number of seconds, got '5m'"),
        ({"TOKEN_OVERLAP_SECONDS": "0.5"}, "TOKEN_OVERLAP_SECONDS must be at least 1.0, got '0.5'"),
        ({"TOKEN_EXPIRY_MARGIN_SECONDS": "0"}, "TOKEN_EXPIRY_MARGIN_SECONDS must be at least 0.05, got '0'"),
        (
            {"TOKEN_EXPIRY_MARGIN_SECONDS": "150"},
            "TOKEN_EXPIRY_MARGIN_SECONDS must be less than half of TOKEN_OVERLAP_SECONDS",
        ),
        ({"TOKEN_LOCK_LEASE_SECONDS": "0.2"}, "TOKEN_LOCK_LEASE_SECONDS must be at least 0.3, got '0.2'"),
        ({"TOKEN_HTTP_TIMEOUT_SECONDS": "0"}, "TOKEN_HTTP_TIMEOUT_SECONDS must be at least 0.1, got '0'"),
        ({"TOKEN_BACKOFF_SECONDS": "0"}, "TOKEN_BACKOFF_SECONDS must be at least 0.01, got '0'"),
        ({"TOKEN_BACKOFF_CAP_SECONDS": "x"}, "TOKEN_BACKOFF_CAP_SECONDS must be a number of seconds, got 'x'"),
        ({"TOKEN_FORCE_DAILY_LIMIT": "-1"}, "TOKEN_FORCE_DAILY_LIMIT must be at least 0, got '-1'"),
        ({"TOKEN_FORCE_SPACING_SECONDS": "-1"}, "TOKEN_FORCE_SPACING_SECONDS must be at least 0.0, got '-1'"),
        ({"TOKEN_STOP_PAUSE_SECONDS": "0"}, "TOKEN_STOP_PAUSE_SECONDS must be at least 0.01, got '0'"),
        ({"TOKEN_JSAPI_TICKET": "maybe"}, "TOKEN_JSAPI_TICKET must be 1 or 0 (true/false), got 'maybe'"),
    ],
)
def test_each_error_is_one_exact_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        token_settings(**env)
    assert str(error.value) == message
