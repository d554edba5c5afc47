"""A token found in Redis that no token daemon of this account vouches for (set by hand, or planted by
someone with Redis access, with or without a look-alike metadata hash) is never adopted: the daemon
logs a warning without the value, fetches its own, and removes the stranger if WeChat gives it
nothing (issue 13, item 7)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
import redis

from devstack.processes import RedisServer
from sandbox.server import SandboxServer
from tests.token_service.conftest import ThreadDaemons, daemon_env, wait_until
from token_service.consumer import TokenUnavailable, get_access_token
from token_service.store import Credential, TokenStore, fingerprint

STABLE = "/cgi-bin/stable_token"
PLANTED = "PLANTED-TOKEN-0123456789abcdef"
# Long lifetimes: the daemon's own schedule would not replace anything during a test.
LONG = {"token_lifetime": 600.0, "overlap": 60.0}


@pytest.fixture()
def sandbox(make_sandbox: Callable[..., SandboxServer]) -> SandboxServer:
    """This module's fake WeChat: long lifetimes (LONG)."""
    return make_sandbox(**LONG)


def long_cycle_env(sandbox: SandboxServer, redis_server: RedisServer) -> dict[str, str]:
    return daemon_env(sandbox, redis_server, TOKEN_OVERLAP_SECONDS="60", TOKEN_EXPIRY_MARGIN_SECONDS="10",
                      TOKEN_JSAPI_TICKET="0")


def key(appid: str) -> str:
    return f"wechat:access_token:{appid}"


def warnings(daemons: ThreadDaemons) -> list[str]:
    return daemons.lines(logging.WARNING, logging.WARNING)


def own_token(redis_client: redis.Redis, appid: str) -> Callable[[], str | None]:
    def current() -> str | None:
        value = redis_client.get(key(appid))
        return value.decode() if value is not None and value != PLANTED.encode() else None

    return current


def assert_no_token_value_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert not any(PLANTED in record.getMessage() for record in caplog.records)


def forged_meta(appid: str, value: str) -> dict[str, str]:
    """What the metadata of a daemon looks like, written by someone who read the source (no secret)."""
    now = time.time()
    return {"fetched_at": f"{now:.3f}", "expires_at": f"{now + 7000:.3f}", "source": "stable",
            "fingerprint": fingerprint(value), "leader": "somehost:1:00000000"}


@pytest.mark.parametrize("with_forged_meta", [False, True], ids=["set-by-hand", "forged-meta"])
def test_warm_start_does_not_adopt_a_token_without_the_daemons_metadata(
    with_forged_meta: bool,
    sandbox: SandboxServer,
    daemons: ThreadDaemons,
) -> None:
    appid = sandbox.platform.appid
    daemons.redis.set(key(appid), PLANTED, ex=7000)  # e.g. `redis-cli SET wechat:access_token:A x EX 7000`
    if with_forged_meta:
        daemons.redis.hset(key(appid) + ":meta", mapping=forged_meta(appid, PLANTED))

    daemons.start(long_cycle_env(sandbox, daemons.redis_server))
    token = wait_until(own_token(daemons.redis, appid), timeout=5)

    assert sandbox.platform.is_token_valid(token)
    assert get_access_token(daemons.redis, appid) == token
    assert sandbox.platform.calls(STABLE) == 1
    assert any("not written by a token daemon" in line for line in warnings(daemons)), warnings(daemons)
    assert not any("reusing stored" in record.getMessage() for record in daemons.caplog.records)
    assert_no_token_value_logged(daemons.caplog)


@pytest.mark.parametrize("with_forged_meta", [False, True], ids=["set-by-hand", "forged-meta"])
def test_a_token_planted_while_the_daemon_runs_is_replaced_by_its_own(
    with_forged_meta: bool,
    sandbox: SandboxServer,
    daemons: ThreadDaemons,
) -> None:
    appid = sandbox.platform.appid
    daemons.start(long_cycle_env(sandbox, daemons.redis_server))
    token = wait_until(own_token(daemons.redis, appid), timeout=5)

    pipe = daemons.redis.pipeline(transaction=True)
    pipe.set(key(appid), PLANTED, keepttl=True)
    if with_forged_meta:
        pipe.hset(key(appid) + ":meta", mapping=forged_meta(appid, PLANTED))
    pipe.execute()

    wait_until(lambda: daemons.redis.get(key(appid)) != PLANTED.encode(), timeout=5)
    assert get_access_token(daemons.redis, appid) == token  # stable_token gives the same, valid token back
    assert daemons.redis.pttl(key(appid)) > 0
    assert TokenStore(daemons.redis, appid).meta()["fingerprint"] == fingerprint(token)
    assert any("not written by a token daemon" in line for line in warnings(daemons)), warnings(daemons)
    assert_no_token_value_logged(daemons.caplog)


def test_a_planted_token_is_removed_when_wechat_gives_the_daemon_nothing_instead(
    sandbox: SandboxServer,
    daemons: ThreadDaemons,
) -> None:
    appid = sandbox.platform.appid
    sandbox.platform.inject_error(STABLE, 40164, count=100)  # e.g. this host left the IP whitelist
    daemons.redis.set(key(appid), PLANTED, ex=7000)

    daemons.start(long_cycle_env(sandbox, daemons.redis_server))
    wait_until(lambda: daemons.redis.exists(key(appid)) == 0, timeout=5)
    with pytest.raises(TokenUnavailable, match="40164"):
        get_access_token(daemons.redis, appid)
    assert any("not written by a token daemon" in line for line in warnings(daemons)), warnings(daemons)
    assert_no_token_value_logged(daemons.caplog)


def test_store_vouches_only_for_values_signed_with_the_accounts_secret(redis_client: redis.Redis) -> None:
    appid = "wxuntrustedstore01"
    signed = TokenStore(redis_client, appid, secret="the-app-secret")
    assert signed.acquire_lock("me", 5)
    now = time.time()
    assert signed.write("access_token", "me", Credential("GENUINE", now, now + 100, "stable"), 10)
    assert signed.read().vouched and signed.read().value == "GENUINE"
    assert "the-app-secret" not in str(signed.meta())
    assert not TokenStore(redis_client, appid, secret="another-secret").read().vouched
    assert TokenStore(redis_client, appid).read().vouched  # without a secret: the fingerprint matches

    redis_client.hset(key(appid) + ":meta", "expires_at", f"{now + 7000:.3f}")  # stretched by hand
    assert not signed.read().vouched
    redis_client.set(key(appid), PLANTED, keepttl=True)
    redis_client.hset(key(appid) + ":meta", mapping=forged_meta(appid, PLANTED))
    found = signed.read()
    assert found.value == PLANTED and not found.vouched and found.source == "unknown"
    assert not signed.discard("access_token", "someone-else", PLANTED)
    assert signed.discard("access_token", "me", PLANTED)
    assert redis_client.exists(key(appid)) == 0
