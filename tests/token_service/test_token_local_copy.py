"""TokenClient's process-local copy: served from memory while fresh, refreshed in the background, dropped
on a rejection report, re-read after a fork, and safe across the sandbox's token rotations."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest
import redis
import requests

from devstack.processes import RedisServer
from sandbox.server import SandboxServer
from tests.token_service.conftest import daemon_env, wait_until
from token_service.consumer import TokenClient, TokenServiceClient, TokenUnavailable
from token_service.daemon import TokenDaemon
from token_service.policy import INVALID_TOKEN_ERRCODES
from token_service.store import TokenStore, credential_key

APPID = "wxlocalcopy000001"
KEY = credential_key(APPID, "access_token")
CALLBACK_IP = "/cgi-bin/getcallbackip"


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def quiet_client(redis_client: redis.Redis, **options: float) -> TokenClient:
    """A client whose background refresh never comes during a test: what it returns is the local copy."""
    return TokenClient(redis_client, APPID, refresh_interval=3600, max_age=7200, **options)


def test_the_copy_is_served_from_memory_until_dropped(redis_client: redis.Redis) -> None:
    redis_client.set(KEY, "FIRST", px=600_000)
    tokens = quiet_client(redis_client)
    assert tokens.access_token() == "FIRST"
    redis_client.set(KEY, "SECOND", px=600_000)
    assert tokens.access_token() == "FIRST"  # no Redis read on the hot path
    tokens.drop_copy()
    assert tokens.access_token() == "SECOND"


def test_a_rejection_report_drops_the_copy_at_once(redis_client: redis.Redis) -> None:
    redis_client.set(KEY, "REJECTED", px=600_000)
    tokens = quiet_client(redis_client)
    assert tokens.access_token() == "REJECTED"
    redis_client.set(KEY, "REPLACEMENT", px=600_000)  # as a daemon's compare-and-refresh would
    assert tokens.request_refresh("REJECTED", wait=1) == "REPLACEMENT"
    assert tokens.access_token() == "REPLACEMENT"


def test_a_copy_older_than_max_age_or_past_its_ttl_is_read_again(redis_client: redis.Redis) -> None:
    clock = ManualClock()
    tokens = TokenClient(redis_client, APPID, refresh_interval=3600, max_age=7200, clock=clock)
    redis_client.set(KEY, "SHORT", px=5_000)
    assert tokens.access_token() == "SHORT"
    redis_client.set(KEY, "LONG", px=600_000)
    clock.now += 4
    assert tokens.access_token() == "SHORT"
    clock.now += 2  # past the Redis TTL it was read with
    assert tokens.access_token() == "LONG"

    aged = TokenClient(redis_client, APPID, refresh_interval=3600, max_age=7201, clock=clock)
    assert aged.access_token() == "LONG"
    redis_client.set(KEY, "NEWER", px=600_000)
    clock.now += 7201  # still inside the TTL, but older than max_age
    assert aged.access_token() == "NEWER"


def test_the_background_refresh_follows_redis_and_drops_a_deleted_value(redis_client: redis.Redis) -> None:
    redis_client.set(KEY, "FIRST", px=600_000)
    tokens = TokenClient(redis_client, APPID, refresh_interval=0.05, max_age=3600)
    assert tokens.access_token() == "FIRST"
    redis_client.set(KEY, "SECOND", px=600_000)
    wait_until(lambda: tokens.access_token() == "SECOND", timeout=10)
    redis_client.delete(KEY)  # a daemon removes a value it does not trust: the copy must not outlive it
    wait_until(lambda: "access_token" not in tokens._local.copies, timeout=10)
    with pytest.raises(TokenUnavailable):
        tokens.access_token()
    tokens.close()


def test_a_forked_child_reads_again_and_runs_its_own_refresher(redis_client: redis.Redis) -> None:
    redis_client.set(KEY, "PARENT", px=600_000)
    tokens = quiet_client(redis_client)
    assert tokens.access_token() == "PARENT"
    parent_thread = tokens._local.refresher
    redis_client.set(KEY, "CHILD", px=600_000)
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only, never return into pytest
        code = 1
        try:
            ok = tokens.access_token() == "CHILD"
            thread = tokens._local.refresher
            code = 0 if ok and thread is not None and thread is not parent_thread and thread.is_alive() else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert tokens.access_token() == "PARENT"  # the parent's copy is untouched


def test_the_one_call_functions_keep_no_copy(redis_client: redis.Redis) -> None:
    from token_service.consumer import get_access_token

    redis_client.set(KEY, "FIRST", px=600_000)
    assert get_access_token(redis_client, APPID) == "FIRST"
    redis_client.set(KEY, "SECOND", px=600_000)
    assert get_access_token(redis_client, APPID) == "SECOND"


@pytest.mark.parametrize("source", ["stable", "classic"])
def test_a_copy_a_few_seconds_old_is_never_rejected_across_rotations(
    source: str,
    sandbox: SandboxServer,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    start_daemon_thread: Callable[..., TokenDaemon],
) -> None:
    """The sandbox keeps the previous token valid after a rotation (stable: to its expiry; classic: for the
    overlap, 4 s here). A copy at most max_age = 3.5 s old is therefore always accepted, and it follows
    each new token within max_age. Two rotations are watched, so that calls made with the previous token
    after Redis already held the new one do happen (the refresh interval leaves a gap each time)."""
    start_daemon_thread(daemon_env(sandbox, redis_server, TOKEN_SOURCE=source, TOKEN_JSAPI_TICKET="0"))
    store = TokenStore(redis_client, sandbox.platform.appid)
    wait_until(store.read_value, timeout=5)
    tokens = TokenClient(redis_client, sandbox.platform.appid, refresh_interval=2.0, max_age=3.5)
    session = requests.Session()
    errcodes: list[int] = []
    stored = store.read_value()
    rotated_at: float | None = None
    convergence: list[float] = []
    calls_with_previous = 0
    deadline = time.monotonic() + 40
    while len(convergence) < 2:
        assert time.monotonic() < deadline, f"{len(convergence)} rotations seen in 40 s"
        token = tokens.access_token()
        now_stored = store.read_value()
        answer = session.get(sandbox.url + CALLBACK_IP, params={"access_token": token}, timeout=5).json()
        errcodes.append(int(answer.get("errcode", 0)))
        if now_stored is not None and now_stored != stored:
            stored, rotated_at = now_stored, time.monotonic()
        if rotated_at is not None:
            if token == stored:
                convergence.append(time.monotonic() - rotated_at)
                rotated_at = None
            else:
                calls_with_previous += 1
        time.sleep(0.005)  # pacing only: a shared machine
    rejected = [code for code in errcodes if code in INVALID_TOKEN_ERRCODES]
    assert not rejected and set(errcodes) == {0}, (rejected, set(errcodes))
    assert calls_with_previous > 0, "no call used the previous token after a rotation: nothing was proved"
    assert all(seconds <= tokens.max_age for seconds in convergence), convergence
    tokens.close()


def test_wechatpy_client_drops_a_copy_killed_by_a_forced_refresh(
    sandbox: SandboxServer,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    start_daemon_thread: Callable[..., TokenDaemon],
) -> None:
    """A forced refresh (someone else's 40001) kills the old token at once: the client's copy gets one
    40001, the report drops it, the retry and every later call use the new token."""
    start_daemon_thread(daemon_env(sandbox, redis_server, TOKEN_JSAPI_TICKET="0"))
    platform = sandbox.platform
    store = TokenStore(redis_client, platform.appid)
    old = wait_until(store.read_value, timeout=5)
    client = TokenServiceClient(platform.appid, redis_client, api_base=sandbox.url, refresh_wait=5)
    client.tokens.refresh_interval = 3600  # the copy stays the old token until the report drops it
    assert client.access_token == old
    other = TokenClient(redis_client, platform.appid, local_copy=False)
    new = other.request_refresh(old, wait=5)
    assert new != old and not platform.is_token_valid(old)
    assert client.access_token == old  # still the copy
    assert client.misc.get_wechat_ips() == ["127.0.0.1"]
    assert platform.calls(CALLBACK_IP) == 2  # one 40001, one retry
    assert client.access_token == new
    assert client.misc.get_wechat_ips() == ["127.0.0.1"]
    assert platform.calls(CALLBACK_IP) == 3
