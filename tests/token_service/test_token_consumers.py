"""What consumers see: get_access_token, the wechatpy client (one compare-and-refresh, one retry,
never a loop or a fetch of its own), the command line, and the example scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from wechatpy.exceptions import WeChatClientException

from devstack.processes import PROJECT_ROOT, RedisServer
from sandbox.server import SandboxServer
from tests.token_service.conftest import ThreadDaemons, daemon_env, wait_until
from token_service.consumer import TokenServiceClient, TokenUnavailable, get_access_token
from token_service.daemon import TokenDaemon
from token_service.store import TokenStore

STABLE = "/cgi-bin/stable_token"
CALLBACK_IP = "/cgi-bin/getcallbackip"


def run_command(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("WECHAT_", "TOKEN_"))}
    clean.update(env, PYTHONPATH=str(PROJECT_ROOT))
    return subprocess.run(
        [sys.executable, *argv], env=clean, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=30
    )


@pytest.fixture()
def running_daemon(
    sandbox: SandboxServer,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    start_daemon_thread: Callable[..., TokenDaemon],
) -> str:
    """A daemon thread with a token stored; returns that token."""
    start_daemon_thread(daemon_env(sandbox, redis_server, TOKEN_JSAPI_TICKET="0"))
    return wait_until(lambda: TokenStore(redis_client, sandbox.platform.appid).read_value(), timeout=5)


def client_for(sandbox: SandboxServer, redis_client: redis.Redis) -> TokenServiceClient:
    return TokenServiceClient(sandbox.platform.appid, redis_client, api_base=sandbox.url, refresh_wait=5)


def test_get_access_token_without_a_daemon_says_what_to_start(redis_client: redis.Redis) -> None:
    with pytest.raises(TokenUnavailable, match=r"wechat:access_token:wxnone.*token_service run"):
        get_access_token(redis_client, "wxnone")


def test_client_uses_the_service_token_and_the_configured_api_base(
    sandbox: SandboxServer, redis_client: redis.Redis, running_daemon: str
) -> None:
    client = client_for(sandbox, redis_client)
    assert client.misc.get_wechat_ips() == ["127.0.0.1"]
    assert client._url("https://api.weixin.qq.com/customservice/kfaccount/add", None) == (
        sandbox.url + "/customservice/kfaccount/add"
    )
    assert sandbox.platform.calls(STABLE) == 1


def test_client_on_40001_asks_for_one_compare_and_refresh_and_retries_once(
    sandbox: SandboxServer, redis_client: redis.Redis, running_daemon: str
) -> None:
    platform = sandbox.platform
    platform.inject_error(CALLBACK_IP, 40001, count=1)
    client = client_for(sandbox, redis_client)
    assert client.misc.get_wechat_ips() == ["127.0.0.1"]
    assert platform.calls(CALLBACK_IP) == 2
    assert platform.calls(STABLE) == 2  # the daemon's first fetch, then one forced refresh
    assert get_access_token(redis_client, platform.appid) != running_daemon


def test_client_raises_on_a_second_40001_instead_of_looping(
    sandbox: SandboxServer, redis_client: redis.Redis, running_daemon: str
) -> None:
    platform = sandbox.platform
    platform.inject_error(CALLBACK_IP, 40001, count=50)
    client = client_for(sandbox, redis_client)
    with pytest.raises(WeChatClientException) as caught:
        client.misc.get_wechat_ips()
    assert caught.value.errcode == 40001
    assert platform.calls(CALLBACK_IP) == 2
    assert platform.calls(STABLE) == 2


@pytest.mark.parametrize("errcode", [40014, 42001])
def test_client_treats_40014_and_42001_like_40001(
    errcode: int, sandbox: SandboxServer, redis_client: redis.Redis, running_daemon: str
) -> None:
    sandbox.platform.inject_error(CALLBACK_IP, errcode, count=1)
    assert client_for(sandbox, redis_client).misc.get_wechat_ips() == ["127.0.0.1"]
    assert sandbox.platform.calls(CALLBACK_IP) == 2


def test_client_never_fetches_a_token_of_its_own(sandbox: SandboxServer, redis_client: redis.Redis) -> None:
    client = client_for(sandbox, redis_client)
    with pytest.raises(TokenUnavailable):
        client.misc.get_wechat_ips()
    with pytest.raises(TokenUnavailable):
        client.fetch_access_token()
    assert sandbox.platform.call_counts() == {}


def test_other_errors_are_raised_at_once_without_refresh(
    sandbox: SandboxServer, redis_client: redis.Redis, running_daemon: str
) -> None:
    sandbox.platform.inject_error(CALLBACK_IP, 45009, count=1)
    with pytest.raises(WeChatClientException):
        client_for(sandbox, redis_client).misc.get_wechat_ips()
    assert sandbox.platform.calls(CALLBACK_IP) == 1
    assert sandbox.platform.calls(STABLE) == 1


def test_cli_get_fails_clearly_without_a_token_then_prints_it(
    sandbox: SandboxServer, daemons: ThreadDaemons
) -> None:
    env = daemons.env(sandbox)
    missing = run_command(["-m", "token_service", "get"], env)
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert f"wechat:access_token:{sandbox.platform.appid}" in missing.stderr
    daemons.start(env)
    token = wait_until(lambda: TokenStore(daemons.redis, sandbox.platform.appid).read_value(), timeout=5)
    found = run_command(["-m", "token_service", "get"], env)
    assert found.returncode == 0 and found.stdout.strip() == token


def test_cli_status_shows_leader_remaining_life_and_last_error(
    sandbox: SandboxServer, daemons: ThreadDaemons
) -> None:
    env = daemons.env(sandbox, TOKEN_JSAPI_TICKET="0")
    daemon = daemons.start(env)
    store = TokenStore(daemons.redis, sandbox.platform.appid)
    token = wait_until(lambda: store.read_value(), timeout=5)
    sandbox.platform.set_ip_whitelisted(False)
    store.record_error("access_token", 40164, "errcode 40164: invalid ip — add it to IP白名单")
    status = run_command(["-m", "token_service", "status"], env)
    assert status.returncode == 0, status.stderr
    assert f"leader: {daemon.owner}" in status.stdout
    assert "remaining life:" in status.stdout and "age:" in status.stdout
    assert "40164" in status.stdout and "IP白名单" in status.stdout
    assert token not in status.stdout


def test_cli_refresh_replaces_the_stored_token(
    sandbox: SandboxServer, redis_server: RedisServer, redis_client: redis.Redis, running_daemon: str
) -> None:
    result = run_command(["-m", "token_service", "refresh", "--wait", "5"], daemon_env(sandbox, redis_server))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refreshed: #")
    fresh = get_access_token(redis_client, sandbox.platform.appid)
    assert fresh != running_daemon and sandbox.platform.is_token_valid(fresh)
    assert fresh not in result.stdout


def test_menu_script_creates_the_example_menu_and_reads_it_back(
    sandbox: SandboxServer, redis_server: RedisServer, running_daemon: str
) -> None:
    env = daemon_env(sandbox, redis_server)
    example = str(Path(PROJECT_ROOT) / "scripts" / "menu.example.yaml")
    created = run_command(["scripts/menu.py", "create", example], env)
    assert created.returncode == 0, created.stderr
    shown = run_command(["scripts/menu.py", "get"], env)
    assert shown.returncode == 0, shown.stderr
    assert "今日推荐" in shown.stdout and "CONTACT_US" in shown.stdout
    assert sandbox.platform.calls("/cgi-bin/menu/create") == 1
    assert sandbox.platform.calls(STABLE) == 1


def test_followers_script_lists_openids(
    sandbox: SandboxServer, redis_server: RedisServer, running_daemon: str
) -> None:
    sandbox.platform.add_follower("o_second_follower", "second")
    result = run_command(["scripts/followers.py"], daemon_env(sandbox, redis_server))
    assert result.returncode == 0, result.stderr
    assert "o_second_follower" in result.stdout.split()
    assert len(result.stdout.split()) == 2
    count = run_command(["scripts/followers.py", "--count"], daemon_env(sandbox, redis_server))
    assert count.stdout.strip() == "2"
