"""Fixtures for the fake WeChat platform: a FakeWeChat with its own clock, served over real HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from sandbox.platform import DEFAULT_APPID, DEFAULT_SECRET, Clock, FakeWeChat
from sandbox.server import SandboxServer


class WeChatApi:
    """A requests session on one sandbox, with shortcuts for the calls every test makes."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def get(self, path: str, **params: Any) -> dict:
        response = self.session.get(self.base_url + path, params=params, timeout=10)
        return response.json()

    def post(self, path: str, body: Any = None, *, raw: bytes | None = None, **params: Any) -> dict:
        if raw is None:
            response = self.session.post(self.base_url + path, params=params, json=body, timeout=10)
        else:
            response = self.session.post(self.base_url + path, params=params, data=raw, timeout=10)
        return response.json()

    def classic(self, appid: str = DEFAULT_APPID, secret: str = DEFAULT_SECRET, **extra: Any) -> dict:
        params = {"grant_type": "client_credential", "appid": appid, "secret": secret, **extra}
        return self.get("/cgi-bin/token", **params)

    def classic_token(self) -> str:
        return self.classic()["access_token"]

    def stable(self, force_refresh: bool | None = None, **overrides: Any) -> dict:
        body: dict[str, Any] = {"grant_type": "client_credential", "appid": DEFAULT_APPID,
                                "secret": DEFAULT_SECRET}
        if force_refresh is not None:
            body["force_refresh"] = force_refresh
        return self.post("/cgi-bin/stable_token", {**body, **overrides})

    def errcode_with(self, token: str) -> int:
        """What a plain token-taking API (getcallbackip) says about `token`: 0 when it works."""
        return self.get("/cgi-bin/getcallbackip", access_token=token).get("errcode", 0)


@pytest.fixture()
def wechat() -> FakeWeChat:
    return FakeWeChat(clock=Clock())


@pytest.fixture()
def sandbox_server(wechat: FakeWeChat) -> Iterator[SandboxServer]:
    with SandboxServer(wechat) as server:
        yield server


@pytest.fixture()
def api(sandbox_server: SandboxServer) -> Iterator[WeChatApi]:
    client = WeChatApi(sandbox_server.url)
    yield client
    client.session.close()


@pytest.fixture()
def api_for() -> Iterator[Callable[[FakeWeChat], WeChatApi]]:
    """Serve a platform configured by the test itself (quotas, lifetimes); stopped at teardown."""
    servers: list[SandboxServer] = []

    def start(platform: FakeWeChat) -> WeChatApi:
        servers.append(SandboxServer(platform).start())
        return WeChatApi(servers[-1].url)

    yield start
    for server in servers:
        server.stop()
