"""The sandbox's unverified account (custom/send and custom/typing answer 48001) and custom/typing."""

from __future__ import annotations

import json

from sandbox.control import SandboxControl
from sandbox.platform import DEFAULT_FOLLOWER_OPENID, DEFAULT_SECRET, FakeWeChat
from sandbox.server import SandboxServer


def call(platform: FakeWeChat, path: str, body: dict) -> int:
    """POST `body` to `path` with a fresh token; the errcode (0: ok)."""
    query = {"grant_type": "client_credential", "appid": platform.appid, "secret": DEFAULT_SECRET}
    token = platform.handle("GET", "/cgi-bin/token", query, b"")[1]["access_token"]
    _, answer, _ = platform.handle("POST", path, {"access_token": token}, json.dumps(body).encode())
    return int(answer.get("errcode", 0))


def test_typing_is_recorded_on_a_verified_account_and_48001_on_an_unverified_one() -> None:
    platform = FakeWeChat()
    platform.follower_interacted(DEFAULT_FOLLOWER_OPENID)
    typing = {"touser": DEFAULT_FOLLOWER_OPENID, "command": "Typing"}
    text = {"touser": DEFAULT_FOLLOWER_OPENID, "msgtype": "text", "text": {"content": "hi"}}
    assert call(platform, "/cgi-bin/message/custom/typing", typing) == 0
    assert call(platform, "/cgi-bin/message/custom/typing", {**typing, "command": "Dance"}) == 47001
    assert platform.typing() == [typing]
    platform.set_unverified(True)
    assert call(platform, "/cgi-bin/message/custom/typing", typing) == 48001
    assert call(platform, "/cgi-bin/message/custom/send", text) == 48001
    platform.reset()  # the kind of account outlives a reset
    assert platform.state()["unverified"] is True
    assert FakeWeChat(unverified=True).state()["unverified"] is True


def test_the_control_endpoint_switches_a_running_sandbox() -> None:
    with SandboxServer(FakeWeChat()) as server:
        control = SandboxControl(server.url)
        control.set_unverified(True)
        assert server.platform.state()["unverified"] is True
        control.set_unverified(False)
        assert control.state()["unverified"] is False
        assert control.typing() == []
        control.close()
