"""WeChat -> nginx (shipped site config) -> uWSGI (shipped uwsgi.xml) -> index.py, with Redis and
token_service against the sandbox: the simulator's whole demo conversation, plaintext and safe mode."""

from __future__ import annotations

import pytest
import requests

from devstack.processes import PROJECT_ROOT
from sandbox.messages import build_message
from sandbox.simulator import exchange, load_conversation, run_conversation, verify_handshake
from tests.deploy.conftest import Stack

DEMO = PROJECT_ROOT / "sandbox/conversations/demo.yaml"


def describe_failures(results: list) -> str:
    return "\n".join(
        f"step {number}: {[str(problem) for problem in result.problems]}"
        for number, result in enumerate(results, 1)
        if not result.ok
    )


def test_the_console_handshake_passes_through_nginx(stack: Stack) -> None:
    assert verify_handshake(stack.url, stack.account.token) == []


@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_the_demo_conversation_passes_through_nginx_and_uwsgi(stack: Stack, mode: str) -> None:
    defaults, steps = load_conversation(DEMO)
    # Each mode its own follower: the subscribe events of the two runs must not share a dedupe key.
    defaults = {**defaults, "from": f"o6_deploy_{mode}_follower00000"}
    results = run_conversation(stack.url, steps, stack.account, mode, defaults=defaults)
    assert len(results) == len(steps) >= 10
    assert all(result.ok for result in results), describe_failures(results)
    assert all(len(result.delivery.attempts) == 1 for result in results)  # no retry was needed
    if mode == "safe":
        replies = [result for result in results if result.delivery.body != b"success"]
        assert replies and all(result.delivery.body.startswith(b"<xml><Encrypt>") for result in replies)


def test_a_message_over_https_through_the_443_server_block(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # requests trusts the self-signed certificate processes.NginxServer made for 127.0.0.1.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(stack.nginx.directory / "fullchain.pem"))
    result = exchange(f"{stack.nginx.https_url}/weixin", build_message("text", content="微博"), stack.account, "safe")
    assert result.ok, [str(problem) for problem in result.problems]
    assert result.verdict.reply is not None and result.verdict.reply.msg_type == "news"
    access_log = (stack.nginx.directory / "weixin.access.log").read_text()
    assert "POST /weixin HTTP/" in access_log  # without its query string (test_nginx_hardening.py)


def test_health_through_nginx_shows_the_token_from_token_service(stack: Stack) -> None:
    response = requests.get(f"{stack.nginx.url}/health", timeout=5)
    assert response.status_code == 200
    report = response.json()
    assert report["redis"]["reachable"] is True
    token = report["token"]
    assert token["present"] is True and token["source"] == "stable"
    assert 0 <= token["age_seconds"] < 120 and token["remaining_seconds"] > 7000
    assert stack.tokens.wait_for_token() not in response.text


def test_static_files_are_served_by_nginx_from_disk(stack: Stack) -> None:
    response = requests.get(f"{stack.nginx.url}/static/oauth.css", timeout=5)
    assert response.status_code == 200
    assert response.content == (PROJECT_ROOT / "static/oauth.css").read_bytes()
    assert "max-age=604800" in response.headers.get("Cache-Control", "")
