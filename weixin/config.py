"""Read and validate the configuration (environment variables, optional `.env`) in one place.

`load_settings()` is called once at start-up; a missing or malformed value raises `ConfigError`
with one line that names the variable and says what is expected.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
AES_KEY_PATTERN = re.compile(r"^[A-Za-z0-9]{43}$")
APPID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9]{3,32}$")


class ConfigError(Exception):
    """A configuration value is missing or malformed; the message is one line for the operator."""


@dataclass(frozen=True)
class Settings:
    token: str
    appid: str = ""
    appsecret: str = ""
    encoding_aes_key: str = ""
    require_encryption: bool = False
    redis_url: str = "redis://127.0.0.1:6379/0"
    api_base: str = "https://api.weixin.qq.com"
    books_api_base: str = "https://openlibrary.org"
    replies_file: Path = PROJECT_ROOT / "replies.yaml"
    timestamp_window: int = 300
    max_body_bytes: int = 64 * 1024
    # Seconds from a message's arrival to our answer. WeChat's 5 s include the network both ways: a reply
    # not ready by then becomes `success` now and a customer-service message later (slow_replies).
    # uwsgi.xml's harakiri (6) leaves the margin check_deadline_under_harakiri asks for.
    reply_deadline: float = 3.5
    log_level: str = "INFO"
    # Web authorization (weixin/oauth/): where followers reach this app, WeChat's authorize host, the cookie key.
    public_base_url: str = ""
    open_base: str = "https://open.weixin.qq.com"
    session_secret: str = ""
    # /health shows its details (token age, Redis latency) to the server itself or to this token.
    health_token: str = ""

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


def parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"", "0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be 1 or 0 (true/false), got {raw!r}")


def _number(name: str, raw: str, kind: type, minimum: float) -> int | float:
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def merged_environment(environ: Mapping[str, str] | None = None, dotenv_path: Path | None = None) -> dict[str, str]:
    """`environ` (default: os.environ) with `.env` (or the file DOTENV_FILE names) filling in what is not set."""
    if environ is None:
        environ = os.environ
    if dotenv_path is None:
        dotenv_path = Path(environ.get("DOTENV_FILE") or PROJECT_ROOT / ".env")
    return {**read_dotenv(dotenv_path), **environ}


# uWSGI counts harakiri in whole seconds and its master looks once a second, so harakiri N can kill a request
# up to a second before N (seen: 3.3 s into a request under harakiri 4); a reply answers at REPLY_DEADLINE and
# still has to be written. Hence harakiri >= ceil(REPLY_DEADLINE) + 2.
HARAKIRI_MARGIN_SECONDS = 2


def check_deadline_under_harakiri(reply_deadline: float, harakiri_seconds: int) -> None:
    """Raise ConfigError when uWSGI's harakiri (seconds; 0 = off) could kill a request before it answers at
    `reply_deadline`. The app calls it at start-up with the harakiri uWSGI runs with."""
    if harakiri_seconds <= 0:
        return
    needed = math.ceil(reply_deadline) + HARAKIRI_MARGIN_SECONDS
    if harakiri_seconds >= needed:
        return
    longest = harakiri_seconds - HARAKIRI_MARGIN_SECONDS
    alternative = f" or REPLY_DEADLINE to at most {longest}" if longest >= 1 else ""
    raise ConfigError(
        f"REPLY_DEADLINE {reply_deadline:g} s can be cut by uWSGI's harakiri {harakiri_seconds} s (it can fire up "
        f"to 1 s early): set harakiri to at least {needed}{alternative}"
    )


def load_settings(
    environ: Mapping[str, str] | None = None, dotenv_path: Path | None = None, require_token: bool = True
) -> Settings:
    """Settings from the environment and `.env`. `require_token=False` is for processes that never see a
    WeChat push (token_service): they need no WECHAT_TOKEN."""
    env = merged_environment(environ, dotenv_path)

    def get(name: str, default: str = "") -> str:
        return env.get(name, default).strip()

    token = get("WECHAT_TOKEN")
    if not token and require_token:
        raise ConfigError("WECHAT_TOKEN is required: the Token set in the WeChat console (3-32 letters/digits)")
    if token and not TOKEN_PATTERN.match(token):
        raise ConfigError("WECHAT_TOKEN must be 3-32 letters or digits, as the WeChat console requires")

    appid = get("WECHAT_APPID")
    if appid and not APPID_PATTERN.match(appid):
        raise ConfigError("WECHAT_APPID must be letters, digits, '_' or '-' (it looks like wx0123456789abcdef)")

    aes_key = get("WECHAT_ENCODING_AES_KEY")
    if aes_key:
        if not AES_KEY_PATTERN.match(aes_key):
            raise ConfigError(
                f"WECHAT_ENCODING_AES_KEY must be exactly 43 letters or digits, got {len(aes_key)} characters"
            )
        if not appid:
            raise ConfigError("WECHAT_APPID is required when WECHAT_ENCODING_AES_KEY is set (it is checked on decrypt)")

    require_encryption = parse_bool("WECHAT_REQUIRE_ENCRYPTION", get("WECHAT_REQUIRE_ENCRYPTION", "0"))
    if require_encryption and not aes_key:
        raise ConfigError("WECHAT_REQUIRE_ENCRYPTION=1 needs WECHAT_ENCODING_AES_KEY")

    redis_url = get("REDIS_URL", Settings.redis_url)
    if not re.match(r"^(redis|rediss|unix)://", redis_url):
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")

    api_base = get("WECHAT_API_BASE", Settings.api_base).rstrip("/")
    if not re.match(r"^https?://[^/\s]+", api_base):
        raise ConfigError("WECHAT_API_BASE must be an http(s) URL such as https://api.weixin.qq.com")

    public_base_url = get("PUBLIC_BASE_URL").rstrip("/")
    if public_base_url and not re.match(r"^https?://[^/\s]+", public_base_url):
        raise ConfigError("PUBLIC_BASE_URL must start with http:// or https:// (e.g. https://example.com)")
    if re.search(r"[?#\s]", public_base_url):
        raise ConfigError("PUBLIC_BASE_URL must be a plain base URL, without spaces, '?' or '#'")

    open_base = get("WECHAT_OPEN_BASE", Settings.open_base).rstrip("/")
    if not re.match(r"^https?://[^/\s]+", open_base):
        raise ConfigError("WECHAT_OPEN_BASE must start with http:// or https:// (e.g. https://open.weixin.qq.com)")

    session_secret = get("SESSION_SECRET")
    if session_secret and len(session_secret) < 16:
        raise ConfigError("SESSION_SECRET must be at least 16 characters (or leave it unset to derive one)")

    health_token = get("HEALTH_TOKEN")
    if health_token and not re.fullmatch(r"[A-Za-z0-9_-]{16,128}", health_token):
        raise ConfigError("HEALTH_TOKEN must be 16-128 letters, digits, '_' or '-' (e.g. from `openssl rand -hex 16`)")

    books_api_base = get("BOOKS_API_BASE", Settings.books_api_base).rstrip("/")
    if not re.match(r"^https?://[^/\s]+", books_api_base):
        raise ConfigError("BOOKS_API_BASE must be an http(s) URL such as https://openlibrary.org")

    reply_deadline = float(_number("REPLY_DEADLINE", get("REPLY_DEADLINE", str(Settings.reply_deadline)), float, 0.1))
    if not reply_deadline <= 3.9:  # written so that NaN fails too
        raise ConfigError(
            f"REPLY_DEADLINE must be 0.1 to 3.9 seconds (WeChat waits 5 s including the network; uWSGI's "
            f"harakiri must not cut it), got {reply_deadline:g}"
        )

    replies_file = Path(get("REPLIES_FILE", str(Settings.replies_file)))
    if not replies_file.is_absolute():
        replies_file = PROJECT_ROOT / replies_file

    timestamp_window = int(_number("WECHAT_TIMESTAMP_WINDOW", get("WECHAT_TIMESTAMP_WINDOW", "300"), int, 0))
    no_window = parse_bool("WECHAT_INSECURE_NO_TIMESTAMP_WINDOW", get("WECHAT_INSECURE_NO_TIMESTAMP_WINDOW", "0"))
    if timestamp_window == 0 and not no_window:
        raise ConfigError(
            "WECHAT_TIMESTAMP_WINDOW=0 turns the timestamp check off, so a captured request could be replayed "
            "once its fingerprint expires; use a window (default 300) or set WECHAT_INSECURE_NO_TIMESTAMP_WINDOW=1"
        )

    log_level = get("LOG_LEVEL", "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError("LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")

    return Settings(
        token=token,
        appid=appid,
        appsecret=get("WECHAT_APPSECRET"),
        encoding_aes_key=aes_key,
        require_encryption=require_encryption,
        redis_url=redis_url,
        api_base=api_base,
        books_api_base=books_api_base,
        replies_file=replies_file,
        timestamp_window=timestamp_window,
        max_body_bytes=int(_number("MAX_BODY_BYTES", get("MAX_BODY_BYTES", str(64 * 1024)), int, 1024)),
        reply_deadline=reply_deadline,
        log_level=log_level,
        public_base_url=public_base_url,
        open_base=open_base,
        session_secret=session_secret,
        health_token=health_token,
    )
