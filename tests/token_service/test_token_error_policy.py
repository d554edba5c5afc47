"""Each errcode of the policy against the fake WeChat: what the daemon does, what it logs, what it
records for `status`, and how many times it calls WeChat."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from sandbox.server import SandboxServer
from tests.token_service.conftest import ThreadDaemons, seed_token, wait_until
from token_service.consumer import TokenUnavailable, get_access_token, request_refresh
from token_service.store import TokenStore

STABLE = "/cgi-bin/stable_token"
STOP_ERRCODES = [45009, 40164, 61004, 89503, 89506, 89507, 40013, 40125, 40243]


def error_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.mark.parametrize("errcode", STOP_ERRCODES)
def test_error_needing_a_human_is_logged_once_and_not_hammered_while_the_token_is_served(
    errcode: int,
    sandbox: SandboxServer,
    daemons: ThreadDaemons,
) -> None:
    platform = sandbox.platform
    platform.inject_error(STABLE, errcode, count=100)
    # A token inside its refresh window: the daemon tries at once, and must keep serving this one.
    seed_token(daemons.redis, platform.appid, "SEEDED-TOKEN", remaining=2.0)
    daemons.start(daemons.env(sandbox, TOKEN_JSAPI_TICKET="0"), name=f"daemon-{errcode}")
    store = TokenStore(daemons.redis, platform.appid)
    wait_until(lambda: store.meta().get("last_errcode") == str(errcode), timeout=5)

    assert get_access_token(daemons.redis, platform.appid) == "SEEDED-TOKEN"
    with pytest.raises(TokenUnavailable, match=str(errcode)):
        request_refresh("SEEDED-TOKEN", wait=0.3, redis_client=daemons.redis, appid=platform.appid)
    wait_until(lambda: daemons.redis.exists(f"wechat:access_token:{platform.appid}") == 0, timeout=3)
    with pytest.raises(TokenUnavailable, match=f"errcode {errcode}"):
        get_access_token(daemons.redis, platform.appid)

    assert platform.calls(STABLE) == 1
    lines = [line for line in daemons.lines(logging.ERROR) if str(errcode) in line]
    assert len(lines) == 1, daemons.lines(logging.ERROR)
    assert "FIX:" in lines[0] and "still serving" in lines[0]
    assert len(daemons.lines(logging.ERROR)) == 1


def test_whitelist_error_names_the_console_setting_in_log_and_status(
    sandbox: SandboxServer,
    daemons: ThreadDaemons,
) -> None:
    sandbox.platform.set_ip_whitelisted(False)
    daemons.start(daemons.env(sandbox, TOKEN_JSAPI_TICKET="0"))
    store = TokenStore(daemons.redis, sandbox.platform.appid)
    wait_until(lambda: store.meta().get("last_errcode") == "40164", timeout=5)
    assert "IP白名单" in store.meta()["last_error"]
    assert "IP白名单" in daemons.lines(logging.ERROR)[0]
    assert "no valid access_token is stored" in daemons.lines(logging.ERROR)[0]


def test_stop_pause_setting_lets_the_daemon_recover_after_the_operator_fixed_it(
    sandbox: SandboxServer,
    daemons: ThreadDaemons,
) -> None:
    platform = sandbox.platform
    platform.set_ip_whitelisted(False)
    daemons.start(daemons.env(sandbox, TOKEN_JSAPI_TICKET="0", TOKEN_STOP_PAUSE_SECONDS="0.5"))
    store = TokenStore(daemons.redis, platform.appid)
    wait_until(lambda: store.meta().get("last_errcode") == "40164", timeout=5)
    platform.set_ip_whitelisted(True)
    token = wait_until(lambda: store.read_value(), timeout=3)
    assert platform.is_token_valid(token)
    assert "last_error" not in store.meta()
    assert platform.calls(STABLE) <= 3


@pytest.mark.parametrize("errcode", [-1, 45011])
def test_busy_or_too_frequent_backs_off_then_recovers(
    errcode: int,
    sandbox: SandboxServer,
    daemons: ThreadDaemons,
) -> None:
    platform = sandbox.platform
    platform.inject_error(STABLE, errcode, count=4)
    started = time.monotonic()
    daemons.start(daemons.env(sandbox, TOKEN_JSAPI_TICKET="0"))
    store = TokenStore(daemons.redis, platform.appid)
    token = wait_until(lambda: store.read_value(), timeout=5)
    elapsed = time.monotonic() - started
    assert platform.calls(STABLE) == 5  # four failures, one success, nothing more
    assert platform.is_token_valid(token)
    # base 0.2 s doubling up to the 1 s cap, jittered to 50-100 %: at least 0.1 + 0.2 + 0.4 + 0.5 s
    assert elapsed >= 1.15
    warnings = daemons.lines(logging.WARNING, logging.WARNING)
    assert len(warnings) == 4 and all(str(errcode) in line for line in warnings)
    assert "last_error" not in store.meta()


def test_unreachable_wechat_backs_off_and_never_logs_the_secret(
    sandbox: SandboxServer,
    daemons: ThreadDaemons,
) -> None:
    from devstack.processes import free_port

    daemons.caplog.set_level(logging.DEBUG, logger="token_service")
    env = daemons.env(sandbox, TOKEN_SOURCE="classic", WECHAT_API_BASE=f"http://127.0.0.1:{free_port()}")
    daemons.start(env)
    store = TokenStore(daemons.redis, sandbox.platform.appid)
    wait_until(lambda: store.meta().get("last_error"), timeout=5)
    time.sleep(1.0)
    attempts = [r for r in daemons.caplog.records if "refresh failed" in r.getMessage()]
    assert 1 <= len(attempts) <= 5
    text = daemons.caplog.text + str(store.meta())
    assert "sandbox-app-secret" not in text and "secret=" not in text


def test_forced_refresh_is_rate_limited_across_daemons(
    make_sandbox: Callable[..., SandboxServer],
    daemons: ThreadDaemons,
) -> None:
    sandbox = make_sandbox(stable_force_spacing=0)
    platform = sandbox.platform
    env = daemons.env(sandbox, TOKEN_JSAPI_TICKET="0", TOKEN_FORCE_SPACING_SECONDS="30")
    daemons.start(env)
    store = TokenStore(daemons.redis, platform.appid)
    first = wait_until(lambda: store.read_value(), timeout=5)
    second = request_refresh(first, wait=3, redis_client=daemons.redis, appid=platform.appid)
    assert second != first
    with pytest.raises(TokenUnavailable, match="spacing 30s"):
        request_refresh(second, wait=0.5, redis_client=daemons.redis, appid=platform.appid)
    assert platform.calls(STABLE) == 2
    assert get_access_token(daemons.redis, platform.appid) == second


def test_classic_source_uses_the_token_endpoint(
    sandbox: SandboxServer,
    daemons: ThreadDaemons,
) -> None:
    platform = sandbox.platform
    daemons.start(daemons.env(sandbox, TOKEN_SOURCE="classic"))
    store = TokenStore(daemons.redis, platform.appid)
    token = wait_until(lambda: store.read_value(), timeout=5)
    wait_until(lambda: store.read_value("jsapi_ticket"), timeout=5)
    assert platform.is_token_valid(token)
    assert store.meta()["source"] == "classic"
    assert platform.calls("/cgi-bin/token") == 1 and platform.calls(STABLE) == 0


def test_wechat_refusing_a_forced_refresh_does_not_stop_the_normal_schedule(
    make_sandbox: Callable[..., SandboxServer],
    daemons: ThreadDaemons,
) -> None:
    sandbox = make_sandbox(stable_force_spacing=0, stable_force_daily=1)
    platform = sandbox.platform
    daemon = daemons.start(daemons.env(sandbox, TOKEN_JSAPI_TICKET="0"))
    store = TokenStore(daemons.redis, platform.appid)
    first = wait_until(lambda: store.read_value(), timeout=5)
    second = request_refresh(first, wait=3, redis_client=daemons.redis, appid=platform.appid)
    with pytest.raises(TokenUnavailable, match="forced refresh refused"):
        request_refresh(second, wait=0.5, redis_client=daemons.redis, appid=platform.appid)
    assert platform.calls(STABLE) == 3
    assert get_access_token(daemons.redis, platform.appid) == second
    assert daemon._states["access_token"].stopped_errcode is None
