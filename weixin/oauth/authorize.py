"""Pure helpers for the authorize step: the callback URL, WeChat's authorize URL and the CSRF state."""

from __future__ import annotations

import hmac
import re
import secrets
import string
from urllib.parse import quote

CALLBACK_PATH = "/oauth/callback"
PROFILE_PATH = "/me"
LOGIN_PATH = "/oauth/login"
AUTHORIZE_PATH = "/connect/oauth2/authorize"
SCOPE_USERINFO = "snsapi_userinfo"
SCOPE_BASE = "snsapi_base"
# `?scope=base` on /oauth/login asks for the silent scope; anything else means the consent page.
SCOPE_BY_PARAMETER = {"base": SCOPE_BASE, "userinfo": SCOPE_USERINFO}
STATE_LENGTH = 32
# WeChat echoes `state` back only when it is [a-zA-Z0-9] and at most 128 bytes.
_STATE_PATTERN = re.compile(r"^[A-Za-z0-9]{1,128}$")
_STATE_ALPHABET = string.ascii_letters + string.digits


def app_url(public_base_url: str, path: str) -> str:
    """An absolute URL of this app: the configured base (which may carry a path prefix) plus `path`."""
    return public_base_url.rstrip("/") + "/" + path.lstrip("/")


def callback_url(public_base_url: str) -> str:
    """The redirect_uri: must be exactly what /oauth/callback serves, scheme included."""
    if not public_base_url.startswith(("http://", "https://")):
        raise ValueError("PUBLIC_BASE_URL must start with http:// or https://")
    return app_url(public_base_url, CALLBACK_PATH)


def scope_for(parameter: str | None) -> str:
    return SCOPE_BY_PARAMETER.get((parameter or "").strip().lower(), SCOPE_USERINFO)


def authorize_url(open_base: str, appid: str, redirect_uri: str, scope: str, state: str = "") -> str:
    """WeChat's authorize URL, parameters in the documented order and `#wechat_redirect` last.

    The same string as wechatpy's `WeChatOAuth.authorize_url` (redirect_uri quoted with safe=""),
    except that an empty state is left out rather than sent empty.
    """
    if scope not in (SCOPE_BASE, SCOPE_USERINFO):
        raise ValueError(f"scope must be {SCOPE_BASE} or {SCOPE_USERINFO}")
    if state and not _STATE_PATTERN.match(state):
        raise ValueError("state must be 1-128 letters or digits")
    parts = [
        f"appid={quote(appid, safe='')}",
        f"redirect_uri={quote(redirect_uri, safe='')}",
        "response_type=code",
        f"scope={scope}",
    ]
    if state:
        parts.append(f"state={state}")
    return f"{open_base.rstrip('/')}{AUTHORIZE_PATH}?{'&'.join(parts)}#wechat_redirect"


def new_state() -> str:
    """A fresh CSRF state: 32 random letters and digits (about 190 bits)."""
    return "".join(secrets.choice(_STATE_ALPHABET) for _ in range(STATE_LENGTH))


def states_match(expected: str | None, received: str | None) -> bool:
    """True when the state WeChat echoed is the one this visitor's cookie was issued with."""
    if not expected or not received or not _STATE_PATTERN.match(received):
        return False
    return hmac.compare_digest(expected.encode("ascii", "replace"), received.encode("ascii", "replace"))
