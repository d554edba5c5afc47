"""Inspect and steer a sandbox that runs in another process, through its /sandbox/ HTTP endpoints.

Same methods as FakeWeChat's inspection/control API; endpoints are listed in sandbox.platform.
"""

from __future__ import annotations

from typing import Any

import requests


class SandboxControlError(RuntimeError):
    """The sandbox refused a control request (bad input) or is not reachable."""


class SandboxControl:
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()

    def _request(self, method: str, path: str, payload: dict | None = None) -> dict:
        response = self._session.request(
            method, f"{self.base_url}/sandbox/{path}", json=payload, timeout=self.timeout
        )
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status_code != 200 or answer.get("errcode") != 0:
            raise SandboxControlError(
                f"{method} /sandbox/{path} -> HTTP {response.status_code}: {answer.get('errmsg', '')}"
            )
        return answer

    def close(self) -> None:
        self._session.close()

    # inspection
    def state(self) -> dict:
        return self._request("GET", "state")

    def calls(self, endpoint: str) -> int:
        return int(self.call_counts().get(endpoint, 0))

    def call_counts(self) -> dict[str, int]:
        return dict(self.state()["call_counts"])

    def delivered(self) -> list[dict]:
        return list(self._request("GET", "delivered")["delivered"])

    def typing(self) -> list[dict]:
        return list(self._request("GET", "typing")["typing"])

    def is_token_valid(self, token: str) -> bool:
        return bool(self._request("POST", "token-check", {"access_token": token})["valid"])

    def current_stable_token(self) -> str | None:
        return self._request("GET", "tokens")["stable"]

    def current_classic_token(self) -> str | None:
        return self._request("GET", "tokens")["classic"]

    # control
    def advance(self, seconds: float) -> None:
        self._request("POST", "advance", {"seconds": seconds})

    def inject_error(self, endpoint: str, errcode: int, count: int = 1) -> None:
        self._request("POST", "errors", {"endpoint": endpoint, "errcode": errcode, "count": count})

    def set_latency(self, endpoint: str, seconds: float) -> None:
        self._request("POST", "latency", {"endpoint": endpoint, "seconds": seconds})

    def set_ip_whitelisted(self, allowed: bool) -> None:
        self._request("POST", "whitelist", {"allowed": bool(allowed)})

    def set_unverified(self, unverified: bool) -> None:
        self._request("POST", "unverified", {"unverified": bool(unverified)})

    def add_follower(self, openid: str, nickname: str = "微信用户", **profile: Any) -> None:
        self._request("POST", "followers", {**profile, "openid": openid, "nickname": nickname})

    def follower_interacted(self, openid: str) -> None:
        self._request("POST", "interactions", {"openid": openid})

    def issue_oauth_code(self, openid: str | None = None, scope: str = "snsapi_userinfo") -> str:
        return str(self._request("POST", "oauth/code", {"openid": openid, "scope": scope})["code"])

    # the fake chat model (sandbox/chat_model.py)
    def chat_state(self) -> dict:
        return self._request("GET", "chat")

    def configure_chat(self, **settings: Any) -> None:
        """latency, faults, long, hang_seconds, api_key: see sandbox/chat_model.py."""
        self._request("POST", "chat/configure", settings)

    def reset(self) -> None:
        self._request("POST", "reset")
