"""Configuration: required and malformed values stop start-up with one clear line; secrets stay out of repr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from weixin.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def settings(**env: str):
    return load_settings(env, dotenv_path=Path("/nonexistent/.env"))


def test_only_the_token_is_required_and_defaults_are_sensible() -> None:
    loaded = settings(WECHAT_TOKEN="abc123")
    assert loaded.redis_url == "redis://127.0.0.1:6379/0"
    assert loaded.api_base == "https://api.weixin.qq.com"
    assert loaded.replies_file == ROOT / "replies.yaml"
    assert loaded.max_body_bytes == 65536
    assert not loaded.encryption_enabled


@pytest.mark.parametrize(
    ("env", "mentions"),
    [
        ({}, "WECHAT_TOKEN is required"),
        ({"WECHAT_TOKEN": "a b"}, "WECHAT_TOKEN must be"),
        ({"WECHAT_TOKEN": "abc", "WECHAT_ENCODING_AES_KEY": "tooshort", "WECHAT_APPID": "wx1"}, "exactly 43"),
        ({"WECHAT_TOKEN": "abc", "WECHAT_ENCODING_AES_KEY": AES_KEY}, "WECHAT_APPID is required"),
        ({"WECHAT_TOKEN": "abc", "WECHAT_REQUIRE_ENCRYPTION": "1"}, "needs WECHAT_ENCODING_AES_KEY"),
        ({"WECHAT_TOKEN": "abc", "WECHAT_REQUIRE_ENCRYPTION": "maybe"}, "must be 1 or 0"),
        ({"WECHAT_TOKEN": "abc", "REDIS_URL": "localhost:6379"}, "REDIS_URL must start"),
        ({"WECHAT_TOKEN": "abc", "WECHAT_API_BASE": "api.weixin.qq.com"}, "WECHAT_API_BASE must be"),
        ({"WECHAT_TOKEN": "abc", "WECHAT_TIMESTAMP_WINDOW": "five"}, "must be a number"),
        ({"WECHAT_TOKEN": "abc", "MAX_BODY_BYTES": "10"}, "at least"),
        ({"WECHAT_TOKEN": "abc", "LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ],
)
def test_missing_or_malformed_values_raise_one_clear_line(env: dict[str, str], mentions: str) -> None:
    with pytest.raises(ConfigError) as error:
        settings(**env)
    assert mentions in str(error.value)
    assert "\n" not in str(error.value)


def test_dotenv_fills_in_and_the_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("WECHAT_TOKEN=fromfile\nWECHAT_APPID=wxfromfile\n")
    loaded = load_settings({"WECHAT_APPID": "wxfromenv"}, dotenv_path=dotenv)
    assert loaded.token == "fromfile" and loaded.appid == "wxfromenv"


def test_repr_never_shows_secrets() -> None:
    loaded = settings(
        WECHAT_TOKEN="tokensecret", WECHAT_APPID="wx1", WECHAT_APPSECRET="appsecretvalue",
        WECHAT_ENCODING_AES_KEY=AES_KEY, REDIS_URL="redis://:redispass@127.0.0.1:6379/0",
    )
    text = repr(loaded)
    for secret in ("tokensecret", "appsecretvalue", AES_KEY, "redispass"):
        assert secret not in text


def test_the_app_refuses_to_start_with_a_bad_aes_key_in_one_line(tmp_path: Path) -> None:
    env = {"WECHAT_TOKEN": "abc", "WECHAT_APPID": "wx1", "WECHAT_ENCODING_AES_KEY": "x" * 42, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", "import index"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "configuration error: WECHAT_ENCODING_AES_KEY must be exactly 43 letters or digits, got 42 characters"
    )


def test_a_health_token_too_short_to_be_secret_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^HEALTH_TOKEN must be 16-128 letters"):
        load_settings({"WECHAT_TOKEN": "abc123", "HEALTH_TOKEN": "short"}, dotenv_path=Path("/dev/null"))
