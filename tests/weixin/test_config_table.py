"""Every configuration variable: its default, how its text is read, and its one-line error, exactly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from token_service.settings import TOKEN_VARIABLES
from weixin import dedupe
from weixin.config import DEFAULT_AI_SYSTEM_PROMPT, VARIABLES, ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
NO_DOTENV = Path("/nonexistent/.env")
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def settings(**env: str) -> Settings:
    return load_settings({"WECHAT_TOKEN": "abc123", **env}, dotenv_path=NO_DOTENV)


def test_every_default() -> None:
    loaded = settings()
    assert {name: getattr(loaded, name) for name in Settings.__dataclass_fields__} == {
        "token": "abc123",
        "appid": "",
        "appsecret": "",
        "encoding_aes_key": "",
        "require_encryption": False,
        "redis_url": "redis://127.0.0.1:6379/0",
        "api_base": "https://api.weixin.qq.com",
        "books_api_base": "https://openlibrary.org",
        "replies_file": ROOT / "replies.yaml",
        "timestamp_window": 300,
        "max_body_bytes": 65536,
        "reply_deadline": 3.5,
        "log_level": "INFO",
        "public_base_url": "",
        "open_base": "https://open.weixin.qq.com",
        "session_secret": "",
        "health_token": "",
        "ai_base_url": "https://api.openai.com/v1",
        "ai_api_key": "",
        "ai_model": "gpt-4o-mini",
        "ai_system_prompt": DEFAULT_AI_SYSTEM_PROMPT,
        "ai_max_tokens": 800,
        "ai_timeout": 20.0,
        "ai_history_turns": 5,
        "session_ttl": 1800,
        "session_max_bytes": 4096,
        "slow_reply_delivery": "auto",
        "held_result_ttl": 600,
        "held_result_keyword": "结果",
        "more_keyword": "更多",
        "dedupe_write_behind": True,
    }
    assert type(loaded.timestamp_window) is int and type(loaded.max_body_bytes) is int
    assert type(loaded.reply_deadline) is float
    assert loaded.timestamp_window == dedupe.DEFAULT_TIMESTAMP_WINDOW  # dedupe bounds a window of 0 with it


def test_values_are_read_as_documented(tmp_path: Path) -> None:
    loaded = settings(
        WECHAT_TOKEN=" tok123 ", WECHAT_APPID="wx_a-1", WECHAT_APPSECRET=" s ", WECHAT_ENCODING_AES_KEY=AES_KEY,
        WECHAT_REQUIRE_ENCRYPTION="Yes", REDIS_URL="unix:///run/redis.sock?db=0", WECHAT_API_BASE="http://h:1//",
        BOOKS_API_BASE="https://b/", PUBLIC_BASE_URL="https://p.example/app/", WECHAT_OPEN_BASE="http://o",
        SESSION_SECRET="x" * 16, HEALTH_TOKEN="h" * 16, REPLY_DEADLINE="3.9", REPLIES_FILE="conf/r.yaml",
        WECHAT_TIMESTAMP_WINDOW="0", WECHAT_INSECURE_NO_TIMESTAMP_WINDOW="on", MAX_BODY_BYTES="1024",
        LOG_LEVEL=" debug ",
    )
    assert (loaded.token, loaded.appid, loaded.appsecret) == ("tok123", "wx_a-1", "s")
    assert loaded.encryption_enabled and loaded.require_encryption
    assert loaded.redis_url == "unix:///run/redis.sock?db=0"
    assert (loaded.api_base, loaded.books_api_base) == ("http://h:1", "https://b")
    assert (loaded.public_base_url, loaded.open_base) == ("https://p.example/app", "http://o")
    assert (loaded.reply_deadline, loaded.timestamp_window, loaded.max_body_bytes) == (3.9, 0, 1024)
    assert loaded.replies_file == ROOT / "conf/r.yaml" and loaded.log_level == "DEBUG"
    assert settings(REPLIES_FILE=str(tmp_path / "r.yaml")).replies_file == tmp_path / "r.yaml"
    # An empty optional value is the same as unset; a bool left empty is off.
    assert settings(WECHAT_APPID="", PUBLIC_BASE_URL=" ", WECHAT_REQUIRE_ENCRYPTION="").public_base_url == ""
    assert load_settings({}, NO_DOTENV, require_token=False).token == ""


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WECHAT_TOKEN": ""}, "WECHAT_TOKEN is required: the Token set in the WeChat console (3-32 letters/digits)"),
        ({"WECHAT_TOKEN": "ab"}, "WECHAT_TOKEN must be 3-32 letters or digits, as the WeChat console requires"),
        (
            {"WECHAT_APPID": "wx!"},
            "WECHAT_APPID must be letters, digits, '_' or '-' (it looks like wx0123456789abcdef)",
        ),
        (
            {"WECHAT_APPID": "wx1", "WECHAT_ENCODING_AES_KEY": "k" * 44},
            "WECHAT_ENCODING_AES_KEY must be exactly 43 letters or digits, got 44 characters",
        ),
        (
            {"WECHAT_ENCODING_AES_KEY": AES_KEY},
            "WECHAT_APPID is required when WECHAT_ENCODING_AES_KEY is set (it is checked on decrypt)",
        ),
        ({"WECHAT_REQUIRE_ENCRYPTION": "2"}, "WECHAT_REQUIRE_ENCRYPTION must be 1 or 0 (true/false), got '2'"),
        ({"WECHAT_REQUIRE_ENCRYPTION": "1"}, "WECHAT_REQUIRE_ENCRYPTION=1 needs WECHAT_ENCODING_AES_KEY"),
        ({"REDIS_URL": ""}, "REDIS_URL must start with redis://, rediss:// or unix://"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL must start with redis://, rediss:// or unix://"),
        ({"WECHAT_API_BASE": "https://"}, "WECHAT_API_BASE must be an http(s) URL such as https://api.weixin.qq.com"),
        ({"PUBLIC_BASE_URL": "ftp://x"}, "PUBLIC_BASE_URL must start with http:// or https:// (e.g. https://example.com)"),
        ({"PUBLIC_BASE_URL": "https://x/?a"}, "PUBLIC_BASE_URL must be a plain base URL, without spaces, '?' or '#'"),
        ({"PUBLIC_BASE_URL": "https://x y"}, "PUBLIC_BASE_URL must be a plain base URL, without spaces, '?' or '#'"),
        (
            {"WECHAT_OPEN_BASE": ""},
            "WECHAT_OPEN_BASE must start with http:// or https:// (e.g. https://open.weixin.qq.com)",
        ),
        (
            {"SESSION_SECRET": "x" * 15},
            "SESSION_SECRET must be at least 16 characters (or leave it unset to derive one)",
        ),
        (
            {"HEALTH_TOKEN": "h" * 129},
            "HEALTH_TOKEN must be 16-128 letters, digits, '_' or '-' (e.g. from `openssl rand -hex 16`)",
        ),
        ({"BOOKS_API_BASE": "openlibrary.org"}, "BOOKS_API_BASE must be an http(s) URL such as https://openlibrary.org"),
        ({"REPLY_DEADLINE": ""}, "REPLY_DEADLINE must be a number, got ''"),
        ({"REPLY_DEADLINE": "0.05"}, "REPLY_DEADLINE must be at least 0.1, got '0.05'"),
        (
            {"REPLY_DEADLINE": "inf"},
            "REPLY_DEADLINE must be 0.1 to 3.9 seconds (WeChat waits 5 s including the network; uWSGI's "
            "harakiri must not cut it), got inf",
        ),
        ({"WECHAT_TIMESTAMP_WINDOW": "1.5"}, "WECHAT_TIMESTAMP_WINDOW must be a number, got '1.5'"),
        ({"WECHAT_TIMESTAMP_WINDOW": "-1"}, "WECHAT_TIMESTAMP_WINDOW must be at least 0, got '-1'"),
        (
            {"WECHAT_TIMESTAMP_WINDOW": "0"},
            "WECHAT_TIMESTAMP_WINDOW=0 turns the timestamp check off, so a captured request could be replayed "
            "once its fingerprint expires; use a window (default 300) or set WECHAT_INSECURE_NO_TIMESTAMP_WINDOW=1",
        ),
        (
            {"WECHAT_INSECURE_NO_TIMESTAMP_WINDOW": "x"},
            "WECHAT_INSECURE_NO_TIMESTAMP_WINDOW must be 1 or 0 (true/false), got 'x'",
        ),
        ({"MAX_BODY_BYTES": "1023"}, "MAX_BODY_BYTES must be at least 1024, got '1023'"),
        ({"LOG_LEVEL": ""}, "LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR"),
        ({"AI_BASE_URL": "localhost:11434"}, "AI_BASE_URL must be an http(s) URL such as https://api.openai.com/v1"),
        (
            {"AI_MODEL": "gpt 4"},
            "AI_MODEL must be a model name such as gpt-4o-mini (letters, digits, . _ : / @ + -)",
        ),
        ({"AI_MAX_TOKENS": "lots"}, "AI_MAX_TOKENS must be a whole number of tokens, got 'lots'"),
        ({"AI_MAX_TOKENS": "0"}, "AI_MAX_TOKENS must be at least 1, got '0'"),
        ({"AI_TIMEOUT": "0.5"}, "AI_TIMEOUT must be at least 1, got '0.5'"),
        (
            {"AI_TIMEOUT": "61"},
            "AI_TIMEOUT must be 1 to 60 seconds (a background job is stopped after 120 s), got 61",
        ),
        ({"AI_HISTORY_TURNS": "-1"}, "AI_HISTORY_TURNS must be at least 0, got '-1'"),
        ({"SESSION_TTL": "0"}, "SESSION_TTL must be at least 1, got '0'"),
        ({"SESSION_TTL": "1.5"}, "SESSION_TTL must be a whole number of seconds, got '1.5'"),
        ({"SESSION_MAX_BYTES": "100"}, "SESSION_MAX_BYTES must be at least 256, got '100'"),
    ],
)
def test_each_error_is_one_exact_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        settings(**env)
    assert str(error.value) == message


def documented_variables(readme: Path) -> set[str]:
    """The `VARIABLE` names in the first column of a markdown file's tables."""
    names: set[str] = set()
    for line in readme.read_text(encoding="utf-8").splitlines():
        if line.startswith("|") or line.lstrip().startswith("| `"):
            first_cell = line.strip().split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", first_cell))
    return names


def test_the_readmes_list_exactly_the_variables_of_the_tables() -> None:
    web = {variable.name for variable in VARIABLES}
    token = {variable.name for variable in TOKEN_VARIABLES}
    in_readme = documented_variables(ROOT / "README.md")
    in_token_readme = documented_variables(ROOT / "token_service/README.md")
    assert web - in_readme == set(), "add these to README.md's configuration tables"
    assert token - in_token_readme == set(), "add these to token_service/README.md's configuration table"
    assert in_readme - web == set(), "README.md documents variables that weixin/config.py does not read"
    assert in_token_readme - web - token == set(), "token_service/README.md documents variables nobody reads"


def test_the_write_behind_dedupe_can_be_turned_off() -> None:
    assert settings(DEDUPE_WRITE_BEHIND="0").dedupe_write_behind is False
    assert settings(DEDUPE_WRITE_BEHIND="true").dedupe_write_behind is True
