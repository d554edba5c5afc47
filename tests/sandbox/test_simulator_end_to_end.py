"""The simulator against the real message server (index.py under uWSGI, real Redis): every reply valid."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from devstack.processes import PROJECT_ROOT, AppServer
from sandbox import simulator
from sandbox.messages import KINDS, MODES, Account, build_message

ACCOUNT = Account("sandboxtoken", "wx0123456789abcdef", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
DEMO = PROJECT_ROOT / "sandbox" / "conversations" / "demo.yaml"
REPLIES = PROJECT_ROOT / "replies.yaml"


@pytest.fixture(scope="module")
def server_env(redis_server) -> dict[str, str]:
    return {
        "WECHAT_TOKEN": ACCOUNT.token,
        "WECHAT_APPID": ACCOUNT.appid,
        "WECHAT_ENCODING_AES_KEY": ACCOUNT.encoding_aes_key,
        "REDIS_URL": redis_server.url,
        "REPLIES_FILE": str(REPLIES),
    }


@pytest.fixture(scope="module")
def weixin_url(server_env, tmp_path_factory) -> Iterator[str]:
    server = AppServer(tmp_path_factory.mktemp("app"), server_env).start()
    try:
        yield server.url + "/weixin"
    finally:
        server.stop()


def follower(mode: str, name: str) -> str:
    """A distinct OpenID per test, so that one test's pushes never look like another's retries."""
    return f"o{mode}_{name}"


def test_the_get_handshake_echoes_the_echostr(weixin_url):
    assert simulator.verify_handshake(weixin_url, ACCOUNT.token) == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_message_and_event_gets_a_valid_reply(weixin_url, mode, kind):
    message = build_message(
        kind, event_name="brand_new_event", recognition="你好" if kind == "voice" else None,
        from_user=follower(mode, kind),
    )  # fmt: skip
    result = simulator.exchange(weixin_url, message, ACCOUNT, mode)
    assert [str(problem) for problem in result.problems] == []
    assert len(result.delivery.attempts) == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_qr_code_follow_gets_a_valid_reply(weixin_url, mode):
    message = build_message("subscribe", scene="1001", from_user=follower(mode, "qr"))
    result = simulator.exchange(weixin_url, message, ACCOUNT, mode)
    assert result.problems == []
    assert "线下活动" in result.follower_view


@pytest.mark.parametrize("mode", MODES)
def test_the_demo_conversation_passes_in_every_mode(weixin_url, mode):
    defaults, steps = simulator.load_conversation(DEMO)
    defaults["from"] = follower(mode, "demo")
    results = simulator.run_conversation(weixin_url, steps, ACCOUNT, mode, defaults=defaults)
    failures = {number: [str(p) for p in result.problems] for number, result in enumerate(results, 1) if not result.ok}
    assert failures == {}
    assert len(results) == len(steps)


def test_a_push_signed_with_another_token_is_refused_and_reported(weixin_url):
    result = simulator.exchange(weixin_url, build_message("text"), Account("notthetoken"), "plain", retries=0)
    assert [problem.code for problem in result.problems] == ["http_status"]
    assert str(result.problems[0]).startswith("HTTP 403 Forbidden: WeChat expects 200")


def test_the_command_line_runs_the_demo_against_the_server(weixin_url, server_env, tmp_path):
    # Another follower than the tests above, or the server would answer these pushes as retries.
    demo = tmp_path / "demo.yaml"
    demo.write_text(DEMO.read_text(encoding="utf-8").replace("o6_bmjrPTlm6_2sgVt7hMZOPfL2M", "oCommandLine"))
    steps = len(simulator.load_conversation(DEMO)[1])
    completed = subprocess.run(
        [sys.executable, "-m", "sandbox", "chat", str(demo), "--url", weixin_url, "--mode", "compatible"],
        env={**os.environ, **server_env},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert completed.stdout.rstrip().endswith(f"{steps}/{steps} steps valid")
    assert ACCOUNT.encoding_aes_key not in completed.stdout + completed.stderr
