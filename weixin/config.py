"""Read and validate the configuration (environment variables, optional `.env`) in one place.

`load_settings()` is called once at start-up; a missing or malformed value raises `ConfigError`
with one line that names the variable and says what is expected. Each variable is a row of VARIABLES
(variable, field, parser with its rule, default); token_service/settings.py reads its own table with
the same parsers.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A configuration value is missing or malformed; the message is one line for the operator."""


DEFAULT_AI_SYSTEM_PROMPT = "你是微信公众号里的助手。请用简洁的中文回答，一般不超过 300 字。"


@dataclass(frozen=True)
class Settings:
    """The web process's settings; VARIABLES below says where each comes from and its default."""

    token: str
    appid: str
    appsecret: str
    encoding_aes_key: str
    require_encryption: bool
    redis_url: str
    api_base: str
    books_api_base: str
    replies_file: Path
    timestamp_window: int
    max_body_bytes: int
    # Claim a fresh delivery in the server's memory and write it to Redis behind (weixin/write_behind.py);
    # off: every delivery waits on its Redis claim, as before.
    dedupe_write_behind: bool
    # Seconds from a message's arrival to our answer. WeChat's 5 s include the network both ways: a reply
    # not ready by then becomes `success` now and a customer-service message later (slow_replies).
    # uwsgi.xml's harakiri (6) leaves the margin check_deadline_under_harakiri asks for.
    reply_deadline: float
    log_level: str
    # Web authorization (weixin/oauth/): where followers reach this app, WeChat's authorize host, the cookie key.
    public_base_url: str
    open_base: str
    session_secret: str
    # /health shows its details (token age, Redis latency) to the server itself or to this token.
    health_token: str
    # How a background reply not ready by REPLY_DEADLINE reaches the follower (slow_replies/hold.py): custom
    # (custom/send), hold (through WeChat's own retries) or auto (custom until WeChat answers 48001).
    slow_reply_delivery: str = "auto"
    # Hold mode: a result not ready by WeChat's last delivery is kept this long for `held_result_keyword`;
    # a long text's next page is fetched with `more_keyword`.
    held_result_ttl: int = 600
    held_result_keyword: str = "结果"
    more_keyword: str = "更多"
    # The AI chat handler (handlers/ai_chat.py): an OpenAI-compatible chat completions API (defaults: VARIABLES).
    ai_base_url: str = "https://api.openai.com/v1"
    ai_api_key: str = ""
    ai_model: str = "gpt-4o-mini"
    ai_system_prompt: str = DEFAULT_AI_SYSTEM_PROMPT
    ai_max_tokens: int = 800
    ai_timeout: float = 20.0
    ai_history_turns: int = 5
    # Follower sessions (weixin/sessions.py): idle seconds before one is forgotten, its size cap in bytes.
    session_ttl: int = 1800
    session_max_bytes: int = 4096

    def __repr__(self) -> str:  # never print secrets, even by accident in a traceback
        return f"Settings(appid={self.appid!r}, redis_url={redact_url(self.redis_url)!r}, api_base={self.api_base!r})"

    @property
    def encryption_enabled(self) -> bool:
        return bool(self.encoding_aes_key)


def redact_url(url: str) -> str:
    """The URL without its credentials: the user:password part (up to the last '@', in case a password holds
    an unencoded '/' or '@') and a `password=` query parameter (redis-py reads one)."""
    url = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^@]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url, flags=re.IGNORECASE)


def read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {key: value for key, value in dotenv_values(path).items() if value is not None}


def merged_environment(environ: Mapping[str, str] | None = None, dotenv_path: Path | None = None) -> dict[str, str]:
    """`environ` (default: os.environ) with `.env` (or the file DOTENV_FILE names) filling in what is not set."""
    if environ is None:
        environ = os.environ
    if dotenv_path is None:
        dotenv_path = Path(environ.get("DOTENV_FILE") or PROJECT_ROOT / ".env")
    return {**read_dotenv(dotenv_path), **environ}


Parser = Callable[[str, str], Any]  # (variable name, its stripped text) -> value, or ConfigError


@dataclass(frozen=True)
class Variable:
    """One environment variable: the field it fills, the parser that reads and checks its text, and the text
    it has when unset. With `blank_is_default`, a variable set to blank counts as unset (token_service's);
    otherwise the parser sees the blank text, and a required value refuses it."""

    name: str
    field: str
    parse: Parser
    default: str = ""
    blank_is_default: bool = False


def read_table(table: Iterable[Variable], env: Mapping[str, str]) -> dict[str, Any]:
    """Each variable's field and value, in table order: the first malformed value raises its ConfigError."""
    values: dict[str, Any] = {}
    for variable in table:
        text = env.get(variable.name, variable.default).strip()
        if not text and variable.blank_is_default:
            text = variable.default
        values[variable.field] = variable.parse(variable.name, text)
    return values


# The parsers. A rule is the error line after the variable's name; `{length}` and `{value}` stand for
# what was read.


def plain_text(name: str, value: str) -> str:
    return value


def pattern(regex: str, rule: str) -> Parser:
    """Text that matches `regex` in full, or blank (unset)."""
    compiled = re.compile(regex)

    def parse(name: str, value: str) -> str:
        if value and not compiled.fullmatch(value):
            raise ConfigError(f"{name} {rule.format(length=len(value))}")
        return value

    return parse


def boolean(name: str, value: str) -> bool:
    """1/true/yes/on or 0/false/no/off, any case; blank is off."""
    folded = value.lower()
    if folded in {"1", "true", "yes", "on"}:
        return True
    if folded in {"", "0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be 1 or 0 (true/false), got {value!r}")


def number(kind: Callable[[str], float], minimum: float, *, what: str = "a number", optional: bool = False) -> Parser:
    """`kind` (int or float) of the text, at least `minimum`; blank is None when `optional`."""

    def parse(name: str, value: str) -> float | None:
        if optional and not value:
            return None
        try:
            result = kind(value)
        except ValueError:
            raise ConfigError(f"{name} must be {what}, got {value!r}") from None
        if result < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value!r}")
        return result

    return parse


def choice(options: Iterable[str], rule: str, fold: Callable[[str], str] = str.upper) -> Parser:
    """One of `options`, after `fold` (case)."""
    allowed = frozenset(options)

    def parse(name: str, value: str) -> str:
        folded = fold(value)
        if folded not in allowed:
            raise ConfigError(f"{name} {rule.format(value=folded)}")
        return folded

    return parse


def url(schemes: Iterable[str], rule: str, *, base: bool = True, optional: bool = False, plain: str = "") -> Parser:
    """A URL with one of `schemes`. A `base` URL has a host and loses its trailing '/' (paths are added to it);
    blank is allowed when `optional`; `plain` is the rule that refuses '?', '#' and spaces."""
    start = re.compile("(?:" + "|".join(map(re.escape, schemes)) + ")://" + (r"[^/\s]+" if base else ""))

    def parse(name: str, value: str) -> str:
        if base:
            value = value.rstrip("/")
        if (value or not optional) and not start.match(value):
            raise ConfigError(f"{name} {rule}")
        if plain and re.search(r"[?#\s]", value):
            raise ConfigError(f"{name} {plain}")
        return value

    return parse


def project_path(name: str, value: str) -> Path:
    """A file; a relative path is taken from the project's root, not from the current directory."""
    return PROJECT_ROOT / value  # an absolute `value` stays as it is


HTTP = ("http", "https")
# A background job is stopped after 120 s (slow_replies/jobs.py); one call to the chat model must end well before.
MAX_AI_TIMEOUT_SECONDS = 60

# Every variable of the web process, in the order they are checked; the rules that tie two variables
# together follow in load_settings. README.md's configuration tables list the same variables (a test checks).
VARIABLES = (
    Variable("WECHAT_TOKEN", "token", pattern(
        "[A-Za-z0-9]{3,32}", "must be 3-32 letters or digits, as the WeChat console requires")),
    Variable("WECHAT_APPID", "appid", pattern(
        "[A-Za-z0-9_-]{1,64}", "must be letters, digits, '_' or '-' (it looks like wx0123456789abcdef)")),
    Variable("WECHAT_APPSECRET", "appsecret", plain_text),
    Variable("WECHAT_ENCODING_AES_KEY", "encoding_aes_key", pattern(
        "[A-Za-z0-9]{43}", "must be exactly 43 letters or digits, got {length} characters")),
    Variable("WECHAT_REQUIRE_ENCRYPTION", "require_encryption", boolean, "0"),
    Variable("REDIS_URL", "redis_url", url(
        ("redis", "rediss", "unix"), "must start with redis://, rediss:// or unix://", base=False),
        "redis://127.0.0.1:6379/0"),
    Variable("WECHAT_API_BASE", "api_base", url(
        HTTP, "must be an http(s) URL such as https://api.weixin.qq.com"), "https://api.weixin.qq.com"),
    Variable("PUBLIC_BASE_URL", "public_base_url", url(
        HTTP, "must start with http:// or https:// (e.g. https://example.com)", optional=True,
        plain="must be a plain base URL, without spaces, '?' or '#'")),
    Variable("WECHAT_OPEN_BASE", "open_base", url(
        HTTP, "must start with http:// or https:// (e.g. https://open.weixin.qq.com)"), "https://open.weixin.qq.com"),
    Variable("SESSION_SECRET", "session_secret", pattern(
        "(?s).{16,}", "must be at least 16 characters (or leave it unset to derive one)")),
    Variable("HEALTH_TOKEN", "health_token", pattern(
        "[A-Za-z0-9_-]{16,128}", "must be 16-128 letters, digits, '_' or '-' (e.g. from `openssl rand -hex 16`)")),
    Variable("AI_BASE_URL", "ai_base_url", url(
        HTTP, "must be an http(s) URL such as https://api.openai.com/v1"), "https://api.openai.com/v1"),
    Variable("AI_API_KEY", "ai_api_key", plain_text),
    Variable("AI_MODEL", "ai_model", pattern(
        "[A-Za-z0-9._:/@+-]{1,128}", "must be a model name such as gpt-4o-mini (letters, digits, . _ : / @ + -)"),
        "gpt-4o-mini"),
    Variable("AI_SYSTEM_PROMPT", "ai_system_prompt", plain_text, DEFAULT_AI_SYSTEM_PROMPT),
    Variable("AI_MAX_TOKENS", "ai_max_tokens", number(int, 1, what="a whole number of tokens"), "800"),
    Variable("AI_TIMEOUT", "ai_timeout", number(float, 1, what="seconds"), "20"),  # at most 60: load_settings
    Variable("AI_HISTORY_TURNS", "ai_history_turns", number(int, 0, what="a whole number of turns"), "5"),
    Variable("BOOKS_API_BASE", "books_api_base", url(
        HTTP, "must be an http(s) URL such as https://openlibrary.org"), "https://openlibrary.org"),
    Variable("REPLY_DEADLINE", "reply_deadline", number(float, 0.1), "3.5"),  # at most 3.9: load_settings
    Variable("REPLIES_FILE", "replies_file", project_path, "replies.yaml"),
    Variable("WECHAT_TIMESTAMP_WINDOW", "timestamp_window", number(int, 0), "300"),
    Variable("WECHAT_INSECURE_NO_TIMESTAMP_WINDOW", "insecure_no_timestamp_window", boolean, "0"),
    Variable("MAX_BODY_BYTES", "max_body_bytes", number(int, 1024), "65536"),
    Variable("SLOW_REPLY_DELIVERY", "slow_reply_delivery", choice(
        ("auto", "custom", "hold"), "must be auto, custom or hold, got {value!r}", fold=str.lower), "auto"),
    Variable("HELD_RESULT_TTL", "held_result_ttl", number(int, 60, what="a number of seconds"), "600"),
    Variable("HELD_RESULT_KEYWORD", "held_result_keyword", pattern(
        r"\S{1,16}", "must be 1-16 characters without spaces"), "结果"),
    Variable("MORE_KEYWORD", "more_keyword", pattern(r"\S{1,16}", "must be 1-16 characters without spaces"), "更多"),
    Variable("SESSION_TTL", "session_ttl", number(int, 1, what="a whole number of seconds"), "1800"),
    Variable("SESSION_MAX_BYTES", "session_max_bytes", number(int, 256, what="a whole number of bytes"), "4096"),
    Variable("DEDUPE_WRITE_BEHIND", "dedupe_write_behind", boolean, "1"),
    Variable("LOG_LEVEL", "log_level", choice(
        ("DEBUG", "INFO", "WARNING", "ERROR"), "must be DEBUG, INFO, WARNING or ERROR"), "INFO"),
)


# uWSGI counts harakiri in whole seconds and its master looks once a second, so harakiri N can kill a request
# up to a second before N (seen: 3.3 s into a request under harakiri 4); a reply answers at REPLY_DEADLINE and
# still has to be written. Hence harakiri >= ceil(REPLY_DEADLINE) + 2.
HARAKIRI_MARGIN_SECONDS = 2
# Hold mode (SLOW_REPLY_DELIVERY hold or auto): a delivery WeChat will retry is held without an answer this
# long after it arrived. WeChat waits 5 s from sending it, which began before it arrived here, so it has given
# up by then; answering earlier (even `success`) would stop its retries. slow_replies/hold.py uses it.
HOLD_SECONDS = 5.5


def longest_request_seconds(reply_deadline: float, delivery: str = "custom") -> float:
    """How long a message request can last: REPLY_DEADLINE, or a held delivery's HOLD_SECONDS unless the
    delivery is `custom`."""
    return reply_deadline if delivery == "custom" else max(reply_deadline, HOLD_SECONDS)


def check_deadline_under_harakiri(reply_deadline: float, harakiri_seconds: int, delivery: str = "custom") -> None:
    """Raise ConfigError when uWSGI's harakiri (seconds; 0 = off) could kill a request before it answers at
    `reply_deadline`, or (hold and auto `delivery`) before a held delivery ends. The app calls it at start-up
    with the harakiri uWSGI runs with."""
    if harakiri_seconds <= 0:
        return
    longest = longest_request_seconds(reply_deadline, delivery)
    needed = math.ceil(longest) + HARAKIRI_MARGIN_SECONDS
    if harakiri_seconds >= needed:
        return
    if longest > reply_deadline:
        raise ConfigError(
            f"SLOW_REPLY_DELIVERY={delivery} holds a delivery for {longest:g} s, which uWSGI's harakiri "
            f"{harakiri_seconds} s can cut (it can fire up to 1 s early): set harakiri to at least {needed} "
            f"or SLOW_REPLY_DELIVERY=custom"
        )
    shortest = harakiri_seconds - HARAKIRI_MARGIN_SECONDS
    alternative = f" or REPLY_DEADLINE to at most {shortest}" if shortest >= 1 else ""
    raise ConfigError(
        f"REPLY_DEADLINE {reply_deadline:g} s can be cut by uWSGI's harakiri {harakiri_seconds} s (it can fire up "
        f"to 1 s early): set harakiri to at least {needed}{alternative}"
    )


def load_settings(
    environ: Mapping[str, str] | None = None, dotenv_path: Path | None = None, require_token: bool = True
) -> Settings:
    """Settings from the environment and `.env`. `require_token=False` is for processes that never see a
    WeChat push (token_service): they need no WECHAT_TOKEN."""
    values = read_table(VARIABLES, merged_environment(environ, dotenv_path))
    no_timestamp_window = values.pop("insecure_no_timestamp_window")
    settings = Settings(**values)
    if require_token and not settings.token:
        raise ConfigError("WECHAT_TOKEN is required: the Token set in the WeChat console (3-32 letters/digits)")
    if settings.encoding_aes_key and not settings.appid:
        raise ConfigError("WECHAT_APPID is required when WECHAT_ENCODING_AES_KEY is set (it is checked on decrypt)")
    if settings.require_encryption and not settings.encoding_aes_key:
        raise ConfigError("WECHAT_REQUIRE_ENCRYPTION=1 needs WECHAT_ENCODING_AES_KEY")
    if not settings.reply_deadline <= 3.9:  # written so that NaN fails too
        raise ConfigError(
            f"REPLY_DEADLINE must be 0.1 to 3.9 seconds (WeChat waits 5 s including the network; uWSGI's "
            f"harakiri must not cut it), got {settings.reply_deadline:g}"
        )
    if not settings.ai_timeout <= MAX_AI_TIMEOUT_SECONDS:  # NaN fails too
        raise ConfigError(f"AI_TIMEOUT must be 1 to {MAX_AI_TIMEOUT_SECONDS} seconds (a background job is stopped "
                          f"after 120 s), got {settings.ai_timeout:g}")
    if settings.timestamp_window == 0 and not no_timestamp_window:
        raise ConfigError(
            "WECHAT_TIMESTAMP_WINDOW=0 turns the timestamp check off, so a captured request could be replayed "
            "once its fingerprint expires; use a window (default 300) or set WECHAT_INSECURE_NO_TIMESTAMP_WINDOW=1"
        )
    return settings
