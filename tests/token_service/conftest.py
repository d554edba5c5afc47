"""Fixtures for the token service: a fake WeChat on loopback with short token lifetimes, and
token daemons as real subprocesses or as threads of the test process."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from devstack.processes import ManagedProcess, RedisServer
from sandbox.platform import DEFAULT_SECRET, FakeWeChat
from sandbox.server import SandboxServer
from sandbox.token_load import daemon_environment, short_cycle_settings
from tests.waiting import wait_until  # noqa: F401 - the tests of this folder import it from here
from token_service.daemon import TokenDaemon
from token_service.settings import load_token_settings
from token_service.store import Credential, TokenStore

# Short cycles: a stable token lives 9 s and is rotated in its last 4 s.
LIFETIME = 9.0
OVERLAP = 4.0
NO_DOTENV = Path("/nonexistent/.env")


@pytest.fixture()
def make_sandbox() -> Iterator[Callable[..., SandboxServer]]:
    """Start a fake WeChat (FakeWeChat keyword arguments) on a free port; stopped after the test."""
    servers: list[SandboxServer] = []

    def make(**options: object) -> SandboxServer:
        options.setdefault("token_lifetime", LIFETIME)
        options.setdefault("overlap", OVERLAP)
        server = SandboxServer(FakeWeChat(**options)).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture()
def sandbox(make_sandbox: Callable[..., SandboxServer]) -> SandboxServer:
    return make_sandbox(stable_force_spacing=0)


def daemon_env(sandbox: SandboxServer, redis_server: RedisServer, **extra: str) -> dict[str, str]:
    return short_cycle_settings(sandbox, redis_server.url, OVERLAP, **extra)


@pytest.fixture()
def start_daemon_process(tmp_path: Path) -> Iterator[Callable[..., ManagedProcess]]:
    """`python -m token_service run` as a real process (own process group), stopped after the test."""
    processes: list[ManagedProcess] = []

    def start(env: dict[str, str], name: str = "daemon") -> ManagedProcess:
        argv = [sys.executable, "-m", "token_service", "run"]
        log = tmp_path / f"{name}-{len(processes)}.log"
        process = ManagedProcess(name, argv, log, env=daemon_environment(env)).start()
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop(timeout=5)


@pytest.fixture()
def start_daemon_thread() -> Iterator[Callable[..., TokenDaemon]]:
    """A TokenDaemon running in a thread of the test process (fast; caplog sees its lines)."""
    running: list[tuple[TokenDaemon, threading.Thread]] = []

    def start(env: dict[str, str], name: str = "daemon") -> TokenDaemon:
        settings = load_token_settings(env, dotenv_path=NO_DOTENV)
        daemon = TokenDaemon(settings, redis.Redis.from_url(settings.redis_url))
        thread = threading.Thread(target=daemon.run, name=name, daemon=True)
        thread.start()
        running.append((daemon, thread))
        return daemon

    yield start
    for daemon, _ in running:
        daemon.stop()
    for _, thread in running:
        thread.join(5)


@dataclass
class DaemonProcesses:
    """What a test of daemon processes works with: one Redis (server and client) and `start(env, name)`, which
    runs `python -m token_service run` with the variables of env(sandbox, **extra)."""

    redis_server: RedisServer
    redis: redis.Redis
    start: Callable[..., ManagedProcess]

    def env(self, sandbox: SandboxServer, **extra: str) -> dict[str, str]:
        return daemon_env(sandbox, self.redis_server, **extra)


@pytest.fixture()
def daemon_processes(
    redis_server: RedisServer, redis_client: redis.Redis, start_daemon_process: Callable[..., ManagedProcess]
) -> DaemonProcesses:
    return DaemonProcesses(redis_server, redis_client, start_daemon_process)


@dataclass
class ThreadDaemons:
    """What a test of daemons in threads works with: one Redis (server and client), a way to start daemons
    against a sandbox, and the lines they log (INFO and up are captured)."""

    redis_server: RedisServer
    redis: redis.Redis
    start: Callable[..., TokenDaemon]
    caplog: pytest.LogCaptureFixture

    def env(self, sandbox: SandboxServer, **extra: str) -> dict[str, str]:
        return daemon_env(sandbox, self.redis_server, **extra)

    def lines(self, lowest: int, highest: int = logging.CRITICAL) -> list[str]:
        """The messages logged at a level from `lowest` to `highest`."""
        return [record.getMessage() for record in self.caplog.records if lowest <= record.levelno <= highest]


@pytest.fixture()
def daemons(
    redis_server: RedisServer,
    redis_client: redis.Redis,
    start_daemon_thread: Callable[..., TokenDaemon],
    caplog: pytest.LogCaptureFixture,
) -> ThreadDaemons:
    caplog.set_level(logging.INFO, logger="token_service")
    return ThreadDaemons(redis_server, redis_client, start_daemon_thread, caplog)


def seed_token(client: redis.Redis, appid: str, value: str, remaining: float, margin: float = 0.8) -> None:
    """Store a token as a previous leader would have (lock taken and released around the write; signed
    with the sandbox's AppSecret, as a daemon of the account signs what it stores)."""
    store = TokenStore(client, appid, secret=DEFAULT_SECRET)
    assert store.acquire_lock("seed", 5)
    now = time.time()
    assert store.write("access_token", "seed", Credential(value, now, now + remaining, "stable"), margin)
    store.release_lock("seed")


@contextlib.contextmanager
def token_watcher(client: redis.Redis, key: str, interval: float = 0.02) -> Iterator[dict]:
    """Poll a token key in the background: every distinct value seen, gaps, keys without TTL.

    A watcher that died or never polled would make "no gaps" pass without checking anything: on exit it
    fails loudly unless its thread ran to the end and polled at least once per 10 intervals it watched."""
    seen: dict = {"values": [], "gaps": 0, "without_ttl": 0, "polls": 0}
    failures: list[BaseException] = []
    stop = threading.Event()

    def watch() -> None:
        local = redis.Redis(connection_pool=client.connection_pool)
        try:
            while not stop.is_set():
                pipe = local.pipeline()
                pipe.get(key)
                pipe.pttl(key)
                value, ttl = pipe.execute()
                seen["polls"] += 1
                if value is None:
                    if seen["values"]:
                        seen["gaps"] += 1
                else:
                    if ttl < 0:
                        seen["without_ttl"] += 1
                    value = value.decode()
                    if not seen["values"] or seen["values"][-1] != value:
                        seen["values"].append(value)
                stop.wait(interval)
        except BaseException as error:  # reported by the `with` block's exit, not lost in a thread
            failures.append(error)

    thread = threading.Thread(target=watch, name="watcher", daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        yield seen
    finally:
        alive_at_exit = thread.is_alive()
        stop.set()
        thread.join(5)
    watched_intervals = (time.monotonic() - started) / interval
    if failures or not alive_at_exit:
        raise AssertionError(f"the token watcher stopped early: {failures!r}")
    if seen["polls"] < max(1, watched_intervals / 10):
        raise AssertionError(f"the token watcher polled {seen['polls']} times in {watched_intervals:.0f} intervals")
