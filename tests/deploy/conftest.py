"""The production stack for the deployment tests, started once: real nginx with the shipped site config,
real uWSGI with the shipped uwsgi.xml (2 workers), a private Redis, the sandbox platform, token_service."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.processes import (
    PROJECT_ROOT,
    NginxServer,
    RedisServer,
    SandboxProcess,
    TokenServiceProcess,
    UwsgiServer,
)
from sandbox.messages import Account
from sandbox.platform import DEFAULT_APPID, DEFAULT_SECRET

TOKEN = "deploytoken2026"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
# Text starting with `load-` runs a handler that counts its runs in Redis (tests/counting_handlers.py), so that
# the fault tests can check that every message ran its rule exactly once.
COUNTED_RULE = """keywords:
  - regex: '^load-'
    reply: {handler: "tests.counting_handlers:count_runs"}
"""


@dataclass
class Stack:
    redis: RedisServer
    sandbox: SandboxProcess
    tokens: TokenServiceProcess
    app: UwsgiServer
    nginx: NginxServer
    account: Account

    @property
    def url(self) -> str:
        return f"{self.nginx.url}/weixin"


def replies_with_counted_rule(directory: Path) -> Path:
    """The shipped replies.yaml (what the demo conversation expects) plus the counted `load-` rule first."""
    shipped = (PROJECT_ROOT / "replies.yaml").read_text(encoding="utf-8")
    assert "\nkeywords:\n" in shipped
    path = directory / "replies.yaml"
    path.write_text(shipped.replace("\nkeywords:\n", "\n" + COUNTED_RULE, 1), encoding="utf-8")
    return path


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("deploy")
    started: list = []
    try:
        redis = RedisServer(directory / "redis").start()
        started.append(redis)
        sandbox = SandboxProcess(directory / "sandbox", DEFAULT_APPID, DEFAULT_SECRET).start()
        started.append(sandbox)
        env = {
            "WECHAT_TOKEN": TOKEN,
            "WECHAT_APPID": DEFAULT_APPID,
            "WECHAT_APPSECRET": DEFAULT_SECRET,
            "WECHAT_ENCODING_AES_KEY": AES_KEY,
            "WECHAT_API_BASE": sandbox.url,
            "REDIS_URL": redis.url,
            "REPLIES_FILE": str(replies_with_counted_rule(directory)),
            "DOTENV_FILE": "/dev/null",
            "LOG_LEVEL": "INFO",
        }
        tokens = TokenServiceProcess(directory / "token_service", env).start()
        started.append(tokens)
        tokens.wait_for_token()
        app = UwsgiServer(directory / "uwsgi", env, workers=2).start()
        started.append(app)
        nginx = NginxServer(directory / "nginx", app.socket_path).start()
        started.append(nginx)
        yield Stack(redis, sandbox, tokens, app, nginx, Account(TOKEN, DEFAULT_APPID, AES_KEY))
    finally:
        for server in reversed(started):
            server.stop()
