"""The two guards of TokenDaemon._refresh_token, each pinned on its own, and compare-and-refresh through
a daemon thread (a second path beside the process test in test_token_daemon_processes.py).

The guards only matter when another writer lands between two reads of the daemon, a race that a test
cannot wait for; so the first two tests put the daemon in the state the race leaves behind (a fresh
token stored by someone else while a refresh is due; the reported token replaced after the report was
checked) and count the fake WeChat's token calls. Real Redis and a real fake WeChat on loopback."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
import requests

from devstack.processes import RedisServer
from sandbox.platform import DEFAULT_SECRET
from sandbox.server import SandboxServer
from tests.token_service.conftest import NO_DOTENV, OVERLAP, daemon_env, seed_token, wait_until
from token_service.daemon import TokenDaemon
from token_service.settings import load_token_settings
from token_service.store import ACCESS_TOKEN, Credential, TokenStore, fingerprint

STABLE = "/cgi-bin/stable_token"
# Long enough that no scheduled refresh (at lifetime - overlap) falls inside a test, even on a loaded
# machine: every token call counted below comes from the path under test.
LONG_LIFETIME = 120.0


def fetch_stable_token_directly(sandbox: SandboxServer, force: bool = False) -> str:
    """What another system sharing the AppSecret would do (counts as an upstream call)."""
    body = {"grant_type": "client_credential", "appid": sandbox.platform.appid, "secret": DEFAULT_SECRET,
            "force_refresh": force}
    return requests.post(sandbox.url + STABLE, json=body, timeout=5).json()["access_token"]


def idle_daemon(sandbox: SandboxServer, redis_server: RedisServer) -> TokenDaemon:
    """A daemon that is built but not running: the test drives it one step at a time."""
    env = daemon_env(sandbox, redis_server, TOKEN_JSAPI_TICKET="0")
    return TokenDaemon(load_token_settings(env, dotenv_path=NO_DOTENV), redis.Redis.from_url(redis_server.url))


def test_a_refresh_that_comes_due_after_another_leader_stored_a_fresh_token_does_not_call_wechat(
    make_sandbox: Callable[..., SandboxServer], redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    sandbox = make_sandbox(token_lifetime=LONG_LIFETIME, stable_force_spacing=0)
    fresh = fetch_stable_token_directly(sandbox)
    seed_token(redis_client, sandbox.platform.appid, fresh, remaining=LONG_LIFETIME)  # a previous leader's
    calls_before = sandbox.platform.calls(STABLE)
    daemon = idle_daemon(sandbox, redis_server)  # its refresh is due now (never scheduled)

    before = time.time()
    assert daemon._refresh_token(force=False) is False

    assert sandbox.platform.calls(STABLE) == calls_before  # adopted, not fetched
    assert redis_client.get(f"wechat:access_token:{sandbox.platform.appid}").decode() == fresh
    # ...and it takes over the stored token's schedule: the next refresh falls in that token's overlap.
    due_at = daemon._states[ACCESS_TOKEN].due_at
    assert before + LONG_LIFETIME - OVERLAP - 1 <= due_at <= before + LONG_LIFETIME


def test_a_forced_refresh_for_a_token_replaced_after_the_report_was_checked_does_not_fetch_again(
    make_sandbox: Callable[..., SandboxServer], redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    sandbox = make_sandbox(token_lifetime=LONG_LIFETIME, stable_force_spacing=0)
    appid = sandbox.platform.appid
    daemon = idle_daemon(sandbox, redis_server)
    daemon._step()  # wins the lease and fetches the first token
    reported = wait_until(lambda: redis_client.get(f"wechat:access_token:{appid}"), timeout=10).decode()
    assert daemon.is_leader

    # Another refresh lands between the report check in _handle_reports and the fetch: the moment the
    # daemon records its forced refresh, the token it was asked to replace is already replaced.
    replacement: list[tuple[str, int]] = []  # (the new token, WeChat's token calls once it was stored)
    record_forced = daemon.store.record_forced

    def replaced_meanwhile(now: float | None = None) -> None:
        record_forced(now)
        value = fetch_stable_token_directly(sandbox, force=True)
        started = time.time()
        store = TokenStore(redis_client, appid, secret=DEFAULT_SECRET)
        credential = Credential(value, started, started + LONG_LIFETIME, "stable")
        assert store.write(ACCESS_TOKEN, daemon.owner, credential, 0.8)
        replacement.append((value, sandbox.platform.calls(STABLE)))

    daemon.store.record_forced = replaced_meanwhile  # type: ignore[method-assign]
    try:
        daemon._handle_reports([fingerprint(reported)])
    finally:
        daemon.stop()  # ends the lease renewer
        daemon._resign()
    assert replacement, "the report of the stored token did not reach the forced refresh"
    value, calls_after_replacement = replacement[0]

    assert sandbox.platform.calls(STABLE) == calls_after_replacement  # no second, needless forced fetch
    assert redis_client.get(f"wechat:access_token:{appid}").decode() == value
    assert sandbox.platform.is_token_valid(value)


def test_reports_of_an_invalid_token_to_a_daemon_thread_cause_one_refresh_and_late_reports_none(
    make_sandbox: Callable[..., SandboxServer],
    redis_server: RedisServer,
    redis_client: redis.Redis,
    start_daemon_thread: Callable[..., TokenDaemon],
) -> None:
    sandbox = make_sandbox(token_lifetime=LONG_LIFETIME, stable_force_spacing=0)
    platform = sandbox.platform
    key = f"wechat:access_token:{platform.appid}"
    daemon = start_daemon_thread(daemon_env(sandbox, redis_server, TOKEN_JSAPI_TICKET="0"))
    stale = wait_until(lambda: redis_client.get(key), timeout=10).decode()
    fetch_stable_token_directly(sandbox, force=True)  # someone else invalidates our token
    assert not platform.is_token_valid(stale)
    calls_before = platform.calls(STABLE)

    store = TokenStore(redis_client, platform.appid)
    for _ in range(20):  # what 20 consumers that got 40001 for `stale` send (consumer.request_refresh)
        store.push_refresh_request(stale)
    fresh = wait_until(lambda: (value := redis_client.get(key)) and value.decode() != stale and value, 10).decode()
    assert platform.is_token_valid(fresh)

    for _ in range(5):  # consumers that read `stale` before the refresh report it late
        store.push_refresh_request(stale)
    wait_until(lambda: not redis_client.exists(store.requests_key), timeout=10)
    # Stopped and resigned: whatever the daemon does with the late reports is done, and counted below.
    daemon.stop()
    wait_until(lambda: not daemon.is_leader and store.lock_holder() is None, timeout=10)

    assert platform.calls(STABLE) == calls_before + 1
    assert redis_client.get(key).decode() == fresh
