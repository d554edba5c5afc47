"""Token daemons as real processes against the fake WeChat and a real Redis: one refresher among
several, no gap, compare-and-refresh, failover on SIGKILL, clean SIGTERM, warm start, no leaks."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable

import requests

from sandbox.platform import DEFAULT_SECRET
from sandbox.server import SandboxServer
from sandbox.token_load import TokenConsumers
from tests.token_service.conftest import OVERLAP, DaemonProcesses, seed_token, token_watcher, wait_until
from token_service.consumer import get_access_token, request_refresh
from token_service.store import TokenStore

STABLE = "/cgi-bin/stable_token"
REJECTED = {40001, 40014, 42001}


def token_key(appid: str) -> str:
    return f"wechat:access_token:{appid}"


def fetch_stable_token_directly(sandbox: SandboxServer, force: bool = False) -> dict:
    """What another system sharing the AppSecret would do (counts as an upstream call)."""
    body = {"grant_type": "client_credential", "appid": sandbox.platform.appid, "secret": DEFAULT_SECRET,
            "force_refresh": force}
    return requests.post(sandbox.url + STABLE, json=body, timeout=5).json()


def leader_pid(store: TokenStore) -> int | None:
    holder = store.lock_holder()
    return int(holder.split(":")[1]) if holder else None


def test_three_daemons_and_twenty_consumers_make_one_token_call_per_cycle(
    make_sandbox: Callable[..., SandboxServer],
    daemon_processes: DaemonProcesses,
) -> None:
    sandbox = make_sandbox()
    platform = sandbox.platform
    env = daemon_processes.env(sandbox)
    key = token_key(platform.appid)
    client = daemon_processes.redis
    with token_watcher(client, key) as seen, TokenConsumers(client, sandbox, 20) as consumers:
        daemons = [daemon_processes.start(env, f"daemon{index}") for index in range(3)]
        # The first token, then three rotations (each cycle is lifetime - lead, about 6 s).
        wait_until(lambda: len(seen["values"]) >= 4, timeout=40, interval=0.1)
        calls = platform.calls(STABLE)
    assert calls == len(seen["values"]) == 4, (calls, platform.call_counts())
    assert consumers.errcodes[0] > 200
    assert not REJECTED & set(consumers.errcodes), consumers.errcodes
    assert consumers.unavailable_after_first == 0 and consumers.failures == 0
    assert seen["gaps"] == 0 and seen["without_ttl"] == 0
    assert platform.calls("/cgi-bin/token") == 0  # stable_token is the default
    assert sum("is now the leader" in daemon.log_text() for daemon in daemons) == 1
    for daemon in daemons:
        assert daemon.alive()
        assert daemon.stop() == 0
        log = daemon.log_text()
        assert DEFAULT_SECRET not in log
        assert not any(token in log for token in seen["values"])


def test_twenty_reports_of_the_same_invalid_token_cause_one_refresh(
    sandbox: SandboxServer,
    daemon_processes: DaemonProcesses,
) -> None:
    platform = sandbox.platform
    daemon_processes.start(daemon_processes.env(sandbox, TOKEN_JSAPI_TICKET="0"))
    daemon_processes.start(daemon_processes.env(sandbox, TOKEN_JSAPI_TICKET="0"))
    stale = wait_until(lambda: daemon_processes.redis.get(token_key(platform.appid)), timeout=10).decode()
    fetch_stable_token_directly(sandbox, force=True)  # someone else invalidates our token
    assert not platform.is_token_valid(stale)
    calls_before = platform.calls(STABLE)

    barrier = threading.Barrier(20)
    results: list[tuple[int, str, int]] = []

    def consumer() -> None:
        session = requests.Session()
        token = get_access_token(daemon_processes.redis, platform.appid)
        barrier.wait()
        first = session.get(sandbox.url + "/cgi-bin/getcallbackip", params={"access_token": token}, timeout=5)
        fresh = request_refresh(token, wait=5, redis_client=daemon_processes.redis, appid=platform.appid)
        second = session.get(sandbox.url + "/cgi-bin/getcallbackip", params={"access_token": fresh}, timeout=5)
        results.append((first.json()["errcode"], fresh, second.json().get("errcode", 0)))

    threads = [threading.Thread(target=consumer) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert len(results) == 20
    assert {first for first, _, _ in results} == {40001}
    assert len({fresh for _, fresh, _ in results}) == 1
    assert {second for _, _, second in results} == {0}
    assert platform.calls(STABLE) == calls_before + 1


def test_follower_refreshes_before_expiry_when_the_leader_is_killed(
    make_sandbox: Callable[..., SandboxServer],
    daemon_processes: DaemonProcesses,
) -> None:
    sandbox = make_sandbox()
    platform = sandbox.platform
    env = daemon_processes.env(sandbox, TOKEN_JSAPI_TICKET="0")
    store = TokenStore(daemon_processes.redis, platform.appid)
    daemons = [daemon_processes.start(env, "first"), daemon_processes.start(env, "second")]
    first_token = wait_until(lambda: store.read(), timeout=10)
    with token_watcher(daemon_processes.redis, token_key(platform.appid)) as seen:
        # Kill the leader just before its refresh window (it refreshes in the last 0.6-0.9 x overlap).
        time.sleep(max(0.0, first_token.remaining() - OVERLAP * 0.9 - 0.15))
        pid = leader_pid(store)
        leader = next(daemon for daemon in daemons if daemon.pid == pid)
        follower = next(daemon for daemon in daemons if daemon.pid != pid)
        assert platform.calls(STABLE) == 1
        leader.send_signal(signal.SIGKILL)
        second_token = wait_until(
            lambda: (credential := store.read()) and credential.value != first_token.value and credential,
            timeout=first_token.remaining() + 2,
        )
        assert second_token.fetched_at < first_token.expires_at - 0.8  # before the Redis copy expired
        assert leader_pid(store) == follower.pid
        time.sleep(0.3)
    assert seen["gaps"] == 0
    assert store.meta()["leader"].split(":")[1] == str(follower.pid)
    assert platform.is_token_valid(second_token.value)
    assert platform.calls(STABLE) == 2


def test_sigterm_releases_the_lock_and_exits_zero_so_a_follower_takes_over_at_once(
    sandbox: SandboxServer,
    daemon_processes: DaemonProcesses,
) -> None:
    env = daemon_processes.env(sandbox, TOKEN_LOCK_LEASE_SECONDS="20", TOKEN_JSAPI_TICKET="0")
    store = TokenStore(daemon_processes.redis, sandbox.platform.appid)
    first = daemon_processes.start(env, "first")
    wait_until(lambda: store.read(), timeout=10)
    assert leader_pid(store) == first.pid
    second = daemon_processes.start(env, "second")
    wait_until(lambda: "started for appid" in second.log_text(), timeout=10)  # a follower in its loop
    started = time.monotonic()
    first.send_signal(signal.SIGTERM)
    first.process.wait(5)
    assert first.process.returncode == 0
    # A 20 s lease: taking over within 3 s means the lock was released, not left to expire.
    wait_until(lambda: leader_pid(store) == second.pid, timeout=3)
    assert time.monotonic() - started < 3
    assert "released the leader lock" in first.log_text()
    assert sandbox.platform.calls(STABLE) == 1  # the new leader reuses the stored token


def test_warm_start_reuses_a_valid_token_instead_of_fetching(
    sandbox: SandboxServer,
    daemon_processes: DaemonProcesses,
) -> None:
    platform = sandbox.platform
    answer = fetch_stable_token_directly(sandbox)
    seed_token(daemon_processes.redis, platform.appid, answer["access_token"], answer["expires_in"])
    daemon = daemon_processes.start(daemon_processes.env(sandbox))
    store = TokenStore(daemon_processes.redis, platform.appid)
    wait_until(lambda: leader_pid(store) == daemon.pid, timeout=10)
    wait_until(lambda: daemon_processes.redis.get(f"wechat:jsapi_ticket:{platform.appid}"), timeout=5)
    assert platform.calls(STABLE) == 1  # only ours above
    assert get_access_token(daemon_processes.redis, platform.appid) == answer["access_token"]
    assert "reusing stored access_token" in daemon.log_text()
    assert 0 < daemon_processes.redis.pttl(token_key(platform.appid)) < answer["expires_in"] * 1000


def test_daemon_stores_the_jsapi_ticket_with_a_ttl_and_its_metadata(
    sandbox: SandboxServer,
    daemon_processes: DaemonProcesses,
) -> None:
    daemon_processes.start(daemon_processes.env(sandbox))
    key = f"wechat:jsapi_ticket:{sandbox.platform.appid}"
    ticket = wait_until(lambda: daemon_processes.redis.get(key), timeout=10).decode()
    state = requests.get(sandbox.url + "/sandbox/state", timeout=5).json()
    assert state["tokens"]["jsapi_ticket"] == ticket[:6] + "..."
    assert 0 < daemon_processes.redis.pttl(key) <= 7200 * 1000
    meta = {name.decode(): value.decode() for name, value in daemon_processes.redis.hgetall(key + ":meta").items()}
    assert meta["source"] == "getticket"
    assert json.dumps(meta).find(ticket) == -1
