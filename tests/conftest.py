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


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
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


@pytest.fixture(scope="session")
def start_app(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer):
    """Start the message server under real uWSGI from the shipped uwsgi.xml (AppServer) with extra
    environment; servers are shared per env and stopped at the end of the run. Returns the AppServer
    (`.url`, `.process.log_text()`)."""
    from devstack.processes import AppServer

    servers: dict[tuple, AppServer] = {}

    def start(workers: int = 1, **env: str) -> AppServer:
        full_env = {
            "WECHAT_TOKEN": TEST_TOKEN,
            "WECHAT_APPID": TEST_APPID,
            "WECHAT_ENCODING_AES_KEY": TEST_AES_KEY,
            "REDIS_URL": redis_server.url,
            "LOG_LEVEL": "INFO",
            "DOTENV_FILE": "/dev/null",  # a developer's .env must not leak into the tests
            **env,
        }
        full_env = {key: value for key, value in full_env.items() if value is not None}
        key = (workers, *sorted(full_env.items()))
        if key not in servers:
            directory = tmp_path_factory.mktemp("app")
            servers[key] = AppServer(directory, full_env, workers=workers).start()
        return servers[key]

    yield start
    for server in servers.values():
        server.stop()
