"""The sandbox steered over HTTP (SandboxControl), and `python -m sandbox serve` as a real process."""

from __future__ import annotations

import signal
import sys

import pytest
import requests

from devstack.processes import PROJECT_ROOT, ManagedProcess, free_port, wait_for_tcp
from sandbox.control import SandboxControl, SandboxControlError

FOLLOWER = "oControlledFollower000000001"


@pytest.fixture()
def control(sandbox_server):
    client = SandboxControl(sandbox_server.url)
    yield client
    client.close()


def test_state_shows_counts_and_masked_tokens(api, control):
    token = api.classic_token()
    stable = api.stable()["access_token"]
    state = control.state()
    assert state["call_counts"] == {"/cgi-bin/token": 1, "/cgi-bin/stable_token": 1}
    assert state["tokens"]["classic"] == token[:6] + "..."
    assert state["tokens"]["stable"] == stable[:6] + "..."
    assert token not in str(state) and stable not in str(state)
    assert control.calls("/cgi-bin/token") == 1
    assert control.call_counts() == state["call_counts"]


def test_control_calls_are_not_counted_as_wechat_calls(control):
    control.state()
    control.reset()
    assert control.call_counts() == {}


def test_tokens_can_be_checked_and_read_in_full(api, control):
    stable = api.stable()["access_token"]
    assert control.current_stable_token() == stable
    assert control.is_token_valid(stable)
    assert not control.is_token_valid("88_forged")
    control.advance(7200)
    assert not control.is_token_valid(stable)
    assert control.current_stable_token() is None


def test_followers_interactions_and_delivered_messages_over_http(api, control):
    control.add_follower(FOLLOWER, "小张", headimgurl="https://thirdwx.qlogo.cn/zhang/132")
    control.follower_interacted(FOLLOWER)
    message = {"touser": FOLLOWER, "msgtype": "text", "text": {"content": "您好"}}
    answer = api.post("/cgi-bin/message/custom/send", message, access_token=api.classic_token())
    assert answer["errcode"] == 0
    assert control.delivered() == [message]
    followers = {follower["openid"]: follower for follower in control.state()["followers"]}
    assert followers[FOLLOWER]["nickname"] == "小张"
    assert followers[FOLLOWER]["window_open"] is True


def test_errors_latency_and_whitelist_over_http(api, control):
    control.inject_error("/cgi-bin/stable_token", 45011, count=1)
    assert api.stable()["errcode"] == 45011
    assert "access_token" in api.stable()
    control.set_latency("/cgi-bin/token", 0.25)
    assert control.state()["latency"] == {"/cgi-bin/token": 0.25}
    control.set_latency("/cgi-bin/token", 0)
    control.set_ip_whitelisted(False)
    assert api.classic()["errcode"] == 40164
    control.set_ip_whitelisted(True)
    assert "access_token" in api.classic()


def test_oauth_code_over_http(api, control):
    code = control.issue_oauth_code(FOLLOWER, "snsapi_base")
    grant = api.get("/sns/oauth2/access_token", appid="wxsandbox00000001", secret="sandbox-app-secret",
                    code=code, grant_type="authorization_code")
    assert grant["openid"] == FOLLOWER


def test_reset_over_http(api, control):
    token = api.classic_token()
    control.reset()
    assert api.errcode_with(token) == 40001


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("advance", {"seconds": -5}),
        ("advance", {}),
        ("errors", {"endpoint": "/cgi-bin/token", "errcode": "lots"}),
        ("whitelist", {"allowed": "no"}),
        ("followers", {"nickname": "no openid"}),
    ],
)
def test_bad_control_requests_answer_400(sandbox_server, path, payload):
    response = requests.post(f"{sandbox_server.url}/sandbox/{path}", json=payload, timeout=10)
    assert response.status_code == 400
    assert response.json()["errcode"] == 47001


def test_control_client_raises_on_refusal(control):
    with pytest.raises(SandboxControlError, match="HTTP 400"):
        control.advance(-1)
    with pytest.raises(SandboxControlError, match="HTTP 404"):
        control._request("GET", "nothing-here")


def test_python_m_sandbox_serve_answers_a_token_request(tmp_path):
    port = free_port()
    secret = "subprocess-secret-42"
    argv = [sys.executable, "-m", "sandbox", "serve", "--port", str(port), "--appid", "wxsubprocess000001",
            "--secret", secret, "--token-lifetime", "3600", "--overlap", "60"]
    process = ManagedProcess("sandbox", argv, tmp_path / "sandbox.log", cwd=PROJECT_ROOT).start()
    try:
        wait_for_tcp(port, timeout=20)
        base = f"http://127.0.0.1:{port}"
        answer = requests.get(f"{base}/cgi-bin/token", timeout=10, params={
            "grant_type": "client_credential", "appid": "wxsubprocess000001", "secret": secret}).json()
        assert answer["expires_in"] == 3600
        control = SandboxControl(base)
        assert control.calls("/cgi-bin/token") == 1
        assert control.is_token_valid(answer["access_token"])
        control.close()
    finally:
        returncode = process.stop(signum=signal.SIGTERM)
    log = process.log_text()
    assert returncode == 0, log
    assert f"http://127.0.0.1:{port}" in log
    assert secret not in log
    assert answer["access_token"] not in log
