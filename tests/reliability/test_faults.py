"""Faults against real processes: Redis stopped under load and started again, Redis restarted empty
under the token daemons, the fake WeChat slow, timing out or answering -1, and the leading token
daemon killed with SIGKILL in the middle of a refresh."""

from __future__ import annotations

import collections
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests

from devstack.processes import AppServer, ManagedProcess, RedisServer
from sandbox.load_threads import LoadThreads
from sandbox.platform import FakeWeChat
from sandbox.server import SandboxServer
from tests.conftest import TEST_AES_KEY, TEST_APPID, TEST_TOKEN
from tests.token_service.conftest import daemon_env, start_daemon_process, token_watcher, wait_until
from tests.wechat_requests import deliver, fixture, post, prepare, reply_fields, with_fresh_ids
from token_service.store import TokenStore

__all__ = ["start_daemon_process"]  # a fixture, imported from the token_service tests

STABLE = "/cgi-bin/stable_token"
# A token lives 8 s; the daemon refreshes it when 3-4.5 s remain (0.6-0.9 of the 5 s overlap).
LIFETIME = 8.0
OVERLAP = 5.0


class WatchedWeChat(FakeWeChat):
    """The fake WeChat, also counting token calls as they arrive (its own counts come after any delay)."""

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        self.token_calls_arrived = 0

    def handle(self, method: str, path: str, query: dict, body: bytes, **options: object):
        if path == STABLE:
            self.token_calls_arrived += 1
        return super().handle(method, path, query, body, **options)


@pytest.fixture()
def wechat() -> Iterator[SandboxServer]:
    server = SandboxServer(WatchedWeChat(token_lifetime=LIFETIME, overlap=OVERLAP, stable_force_spacing=0)).start()
    yield server
    server.stop()


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, which it may stop and restart."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def token_env(wechat: SandboxServer, redis_server: RedisServer, **extra: str) -> dict[str, str]:
    return daemon_env(
        wechat, redis_server, TOKEN_OVERLAP_SECONDS=str(OVERLAP), TOKEN_JSAPI_TICKET="0", **extra
    )


def token_key(wechat: SandboxServer) -> str:
    return f"wechat:access_token:{wechat.platform.appid}"


# --- the message server and Redis -----------------------------------------------------------------


class Load(LoadThreads):
    """Threads posting fresh text messages to the app as WeChat would; every answer is recorded."""

    def __init__(self, url: str, threads: int = 4) -> None:
        super().__init__(threads, name="poster")
        self.url = url
        self.outcomes: collections.Counter[str] = collections.Counter()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                response = post(self.url, with_fresh_ids(fixture("messages/text.xml")), TEST_TOKEN, timeout=5)
                ok = response.status_code == 200 and reply_fields(response.text)["MsgType"] == "news"
                outcome = "news" if ok else f"HTTP {response.status_code} {response.text[:80]!r}"
            except requests.RequestException as error:
                outcome = type(error).__name__
            with self.lock:
                self.outcomes[outcome] += 1


def test_redis_stopped_during_load_the_app_keeps_answering_and_dedupe_comes_back(
    tmp_path: Path, own_redis: RedisServer, counting_replies: Path
) -> None:
    env = {
        "WECHAT_TOKEN": TEST_TOKEN, "WECHAT_APPID": TEST_APPID, "WECHAT_ENCODING_AES_KEY": TEST_AES_KEY,
        "REDIS_URL": own_redis.url, "REPLIES_FILE": str(counting_replies), "DOTENV_FILE": "/dev/null",
    }
    app = AppServer(tmp_path / "app", env, workers=2).start()
    weixin = app.url + "/weixin"
    client = redis.Redis.from_url(own_redis.url)
    try:
        # Each phase lasts until enough answers came (not a number of seconds): 20 answers while Redis
        # is down, then more once it is back; a phase that never gets them fails at its deadline.
        with Load(weixin) as load:
            wait_until(lambda: load.outcomes["news"] >= 5, timeout=30)
            own_redis.stop()
            answered_before_the_stop = load.outcomes["news"]
            wait_until(lambda: load.outcomes["news"] >= answered_before_the_stop + 20, timeout=30)
            answered_while_down = load.outcomes["news"]
            own_redis.start()  # the same port, empty
            wait_until(lambda: load.outcomes["news"] >= answered_while_down + 5, timeout=30)
        assert set(load.outcomes) == {"news"}, load.outcomes
        assert "Redis unreachable" in app.process.log_text()

        # Dedupe comes back once the app's back-off (5 s) is over: a message is claimed in Redis again.
        def claimed_in_redis() -> bool:
            response = post(weixin, with_fresh_ids(fixture("messages/text.xml")), TEST_TOKEN, timeout=5)
            assert response.status_code == 200
            return bool(client.keys("wechat:msg:*"))

        wait_until(claimed_in_redis, timeout=15, interval=0.2)
        message = with_fresh_ids(fixture("messages/text.xml").replace("微博".encode(), b"count-me"))
        query, body = prepare(message, TEST_TOKEN)
        answers = {deliver(weixin, query, body).text for _ in range(3)}
        assert len(answers) == 1 and "handled count-me, run 1" in answers.pop()
        assert int(client.get("test:handler-runs:count-me")) == 1
    finally:
        client.close()
        app.stop()


# --- the token daemons and Redis ------------------------------------------------------------------


def test_redis_restarted_empty_makes_the_token_service_fetch_once(
    wechat: SandboxServer, own_redis: RedisServer, start_daemon_process: Callable[..., ManagedProcess]
) -> None:
    env = token_env(wechat, own_redis)
    daemons = [start_daemon_process(env, "first"), start_daemon_process(env, "second")]
    client = redis.Redis.from_url(own_redis.url)
    first = wait_until(lambda: client.get(token_key(wechat)), timeout=10).decode()
    assert wechat.platform.calls(STABLE) == 1
    own_redis.restart()
    client = redis.Redis.from_url(own_redis.url)
    again = wait_until(lambda: client.get(token_key(wechat)), timeout=8).decode()
    time.sleep(1.5)  # both daemons are back: a second fetch would show up now
    assert wechat.platform.calls(STABLE) == 2
    assert again == first  # stable_token hands back the same token: nothing was invalidated
    assert client.pttl(token_key(wechat)) > 0
    assert all(daemon.alive() for daemon in daemons)
    assert sum("Redis is reachable again" in daemon.log_text() for daemon in daemons) >= 1
    client.close()


def serve_then_break(wechat: SandboxServer, own_redis: RedisServer, start: Callable[..., ManagedProcess], **env: str):
    """One daemon process with a first token stored; returns (client, that token)."""
    start(token_env(wechat, own_redis, **env))
    client = redis.Redis.from_url(own_redis.url)
    first = wait_until(lambda: client.get(token_key(wechat)), timeout=10).decode()
    return client, first


def test_wechat_answering_minus_one_keeps_the_old_token_with_bounded_retries(
    wechat: SandboxServer, own_redis: RedisServer, start_daemon_process: Callable[..., ManagedProcess]
) -> None:
    client, first = serve_then_break(
        wechat, own_redis, start_daemon_process, TOKEN_BACKOFF_SECONDS="0.1", TOKEN_BACKOFF_CAP_SECONDS="0.4"
    )
    wechat.platform.inject_error(STABLE, -1, count=3)
    with token_watcher(client, token_key(wechat)) as seen:
        wait_until(lambda: len(seen["values"]) >= 2, timeout=LIFETIME)
        time.sleep(0.5)
    assert seen["values"] == [first, seen["values"][1]]
    assert seen["gaps"] == 0 and seen["without_ttl"] == 0
    assert wechat.platform.calls(STABLE) == 1 + 3 + 1  # three refusals, one success, nothing more
    assert wechat.platform.is_token_valid(seen["values"][1])


@pytest.mark.parametrize(
    ("fault", "latency", "http_timeout"),
    [("slow", 0.6, "2"), ("timing out", 1.5, "0.3")],
)
def test_wechat_slow_or_timing_out_keeps_the_old_token_with_bounded_retries(
    wechat: SandboxServer,
    own_redis: RedisServer,
    start_daemon_process: Callable[..., ManagedProcess],
    fault: str,
    latency: float,
    http_timeout: str,
) -> None:
    client, first = serve_then_break(
        wechat, own_redis, start_daemon_process,
        TOKEN_HTTP_TIMEOUT_SECONDS=http_timeout, TOKEN_BACKOFF_SECONDS="0.1", TOKEN_BACKOFF_CAP_SECONDS="0.4",
    )
    platform = wechat.platform
    platform.set_latency(STABLE, latency)
    with token_watcher(client, token_key(wechat)) as seen:
        if fault == "timing out":
            wait_until(lambda: platform.token_calls_arrived >= 3, timeout=LIFETIME)  # two calls given up on
            assert seen["values"] == [first]
            platform.set_latency(STABLE, 0)
        wait_until(lambda: len(seen["values"]) >= 2, timeout=LIFETIME)
        time.sleep(0.5)
    assert seen["values"] == [first, seen["values"][1]]
    assert seen["gaps"] == 0 and seen["without_ttl"] == 0
    if fault == "slow":
        assert platform.token_calls_arrived == 2  # waited for the slow answer, no second call
    else:
        assert 4 <= platform.token_calls_arrived <= 6  # a few backed-off retries, not a storm


def test_leader_killed_with_sigkill_mid_refresh_another_daemon_takes_over_without_a_gap(
    wechat: SandboxServer, own_redis: RedisServer, start_daemon_process: Callable[..., ManagedProcess]
) -> None:
    env = token_env(wechat, own_redis)
    daemons = [start_daemon_process(env, "first"), start_daemon_process(env, "second")]
    client = redis.Redis.from_url(own_redis.url)
    store = TokenStore(client, wechat.platform.appid)
    first = wait_until(lambda: client.get(token_key(wechat)), timeout=10).decode()
    platform = wechat.platform
    platform.set_latency(STABLE, 0.3)  # the refresh call stays in flight long enough to be cut
    with token_watcher(client, token_key(wechat)) as seen:
        wait_until(lambda: platform.token_calls_arrived >= 2, timeout=LIFETIME, interval=0.005)
        holder = store.lock_holder()
        leader = next(daemon for daemon in daemons if holder and f":{daemon.pid}:" in holder)
        follower = next(daemon for daemon in daemons if daemon is not leader)
        leader.send_signal(signal.SIGKILL)
        second = wait_until(
            lambda: (value := client.get(token_key(wechat))) and value.decode() != first and value.decode(),
            timeout=LIFETIME,
        )
        time.sleep(0.3)
    assert seen["gaps"] == 0 and seen["without_ttl"] == 0
    assert seen["values"] == [first, second]
    assert f":{follower.pid}:" in (store.lock_holder() or "")
    assert platform.is_token_valid(second)
    assert not leader.alive() and follower.alive()
