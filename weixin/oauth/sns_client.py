"""A small client for WeChat's web-authorization endpoints (/sns/...), with hard time limits.

Errors never carry the request URL: it holds the AppSecret, the code or a token.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import requests

CONNECT_TIMEOUT = 1.5
READ_TIMEOUT = 2.5
# WeChat's answers to the code exchange and to a refresh.
ERRCODE_INVALID_CODE = 40029
ERRCODE_CODE_USED = 40163
ERRCODE_CODE_EXPIRED = 42003
ERRCODE_INVALID_REFRESH_TOKEN = 40030
ERRCODE_REFRESH_TOKEN_EXPIRED = 42002
# What /sns/userinfo says about a user access_token that has lapsed or is unknown: refresh and retry.
TOKEN_LAPSED_ERRCODES = frozenset({40001, 40014, 42001})
REFRESH_DEAD_ERRCODES = frozenset({ERRCODE_INVALID_REFRESH_TOKEN, ERRCODE_REFRESH_TOKEN_EXPIRED})


class WeChatError(Exception):
    """WeChat answered with a non-zero errcode."""

    def __init__(self, endpoint: str, errcode: int, errmsg: str = "") -> None:
        super().__init__(f"{endpoint} answered errcode {errcode}")
        self.endpoint = endpoint
        self.errcode = errcode
        self.errmsg = errmsg


class WeChatUnreachable(Exception):
    """No usable answer in time: connection refused, timeout, a non-JSON or non-200 answer."""


@dataclass(frozen=True)
class Grant:
    """A user-level access token from the code exchange or a refresh (not the base access_token)."""

    access_token: str
    refresh_token: str
    openid: str
    scope: str
    expires_at: float
    unionid: str = ""

    def __repr__(self) -> str:  # tokens stay out of logs and tracebacks
        return f"Grant(openid={self.openid!r}, scope={self.scope!r}, expires_at={self.expires_at!r})"


class Deadline:
    """The time one page may spend waiting for WeChat, shared by all its calls (uWSGI's harakiri is 4 s)."""

    def __init__(self, seconds: float, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._ends_at = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self._ends_at - self._clock())


class SnsClient:
    def __init__(self, api_base: str, appid: str, appsecret: str, session: requests.Session | None = None) -> None:
        self.api_base = api_base.rstrip("/")
        self.appid = appid
        self._appsecret = appsecret
        self._session = session or requests.Session()

    def __repr__(self) -> str:
        return f"SnsClient(api_base={self.api_base!r}, appid={self.appid!r})"

    def exchange_code(self, code: str, deadline: Deadline) -> Grant:
        """/sns/oauth2/access_token: the code from the callback for a user token (40029/40163/42003)."""
        params = {"appid": self.appid, "secret": self._appsecret, "code": code, "grant_type": "authorization_code"}
        return self._grant(self._get("/sns/oauth2/access_token", params, deadline))

    def refresh(self, refresh_token: str, deadline: Deadline) -> Grant:
        """/sns/oauth2/refresh_token: a new 2-hour token; 40030/42002 mean the follower must authorize again."""
        params = {"appid": self.appid, "grant_type": "refresh_token", "refresh_token": refresh_token}
        return self._grant(self._get("/sns/oauth2/refresh_token", params, deadline))

    def userinfo(self, access_token: str, openid: str, deadline: Deadline, lang: str = "zh_CN") -> dict[str, Any]:
        """/sns/userinfo (needs snsapi_userinfo): nickname, headimgurl, and sex/region that WeChat blanks."""
        params = {"access_token": access_token, "openid": openid, "lang": lang}
        return self._get("/sns/userinfo", params, deadline)

    def _grant(self, answer: dict[str, Any]) -> Grant:
        try:
            return Grant(
                access_token=str(answer["access_token"]),
                refresh_token=str(answer["refresh_token"]),
                openid=str(answer["openid"]),
                scope=str(answer.get("scope") or ""),
                expires_at=time.time() + int(answer.get("expires_in") or 7200),
                unionid=str(answer.get("unionid") or ""),
            )
        except (KeyError, TypeError, ValueError):
            raise WeChatUnreachable("WeChat's token answer lacks access_token, refresh_token or openid") from None

    def _get(self, endpoint: str, params: dict[str, str], deadline: Deadline) -> dict[str, Any]:
        remaining = deadline.remaining()
        if remaining < 0.05:
            raise WeChatUnreachable(f"{endpoint}: no time left for the call")
        timeout = (min(CONNECT_TIMEOUT, remaining), min(READ_TIMEOUT, remaining))
        try:
            response = self._session.get(self.api_base + endpoint, params=params, timeout=timeout)
        except requests.Timeout:
            raise WeChatUnreachable(f"{endpoint}: timed out") from None
        except requests.RequestException as error:
            raise WeChatUnreachable(f"{endpoint}: {type(error).__name__}") from None
        if response.status_code != 200:
            raise WeChatUnreachable(f"{endpoint}: HTTP {response.status_code}")
        try:
            # WeChat's Content-Type names no charset; JSON bytes are UTF-8 either way.
            answer = json.loads(response.content)
        except ValueError:
            raise WeChatUnreachable(f"{endpoint}: the answer is not JSON") from None
        if not isinstance(answer, dict):
            raise WeChatUnreachable(f"{endpoint}: the answer is not a JSON object")
        errcode = answer.get("errcode") or 0
        if errcode:
            raise WeChatError(endpoint, int(errcode), str(answer.get("errmsg") or ""))
        return answer
