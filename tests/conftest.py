"""Fixtures shared by every test: a private real Redis server for the whole run."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devstack.processes import RedisServer  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private real Redis per test module: what a module writes, or a restart it does, never reaches
    another module, whatever the order (the suite runs in random order, pytest-randomly)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture()
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on an empty database; what a test writes is gone for the next one."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


TEST_TOKEN = "testtoken2026"
TEST_APPID = "wx2c2769f8efd9abc2"
TEST_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def app_environment(redis_server: RedisServer, **env: str | None) -> dict[str, str]:
    """The message server's environment in the tests; a value of None drops the setting."""
    full_env = {
        "WECHAT_TOKEN": TEST_TOKEN,
        "WECHAT_APPID": TEST_APPID,
        "WECHAT_ENCODING_AES_KEY": TEST_AES_KEY,
        "REDIS_URL": redis_server.url,
        "LOG_LEVEL": "INFO",
        "DOTENV_FILE": "/dev/null",  # a developer's .env must not leak into the tests
        **env,
    }
    return {key: value for key, value in full_env.items() if value is not None}


@pytest.fixture(scope="module")
def start_app(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer):
    """Start the message server under real uWSGI from the shipped uwsgi.xml (AppServer) with extra
    environment, on the module's Redis. Servers are shared per env within the module and stopped at its
    end: a test that changes the server's state (its log, its shared memory, a stop) takes `fresh_app`.
    Returns the AppServer (`.url`, `.process.log_text()`)."""
    from devstack.processes import AppServer

    servers: dict[tuple, AppServer] = {}

    def start(workers: int = 1, **env: str) -> AppServer:
        full_env = app_environment(redis_server, **env)
        key = (workers, *sorted(full_env.items()))
        if key not in servers:
            directory = tmp_path_factory.mktemp("app")
            servers[key] = AppServer(directory, full_env, workers=workers).start()
        return servers[key]

    yield start
    for server in servers.values():
        server.stop()


@pytest.fixture()
def fresh_app(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer):
    """Like start_app, but every call starts a server of this test's own, stopped after it: for a test
    that reads the whole log or changes the server's state."""
    from devstack.processes import AppServer

    servers: list[AppServer] = []

    def start(workers: int = 1, **env: str) -> AppServer:
        server = AppServer(tmp_path_factory.mktemp("app"), app_environment(redis_server, **env), workers=workers)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
