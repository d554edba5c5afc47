"""Load on token_service against the sandbox, for tests and benchmarks: consumer threads that read the
access_token from Redis and call a WeChat API with it, and the settings that give a daemon short cycles.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

import redis
import requests

from sandbox.load_threads import LoadThreads
from sandbox.platform import DEFAULT_SECRET
from sandbox.server import SandboxServer
from token_service.consumer import TokenUnavailable, get_access_token

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def short_cycle_settings(sandbox: SandboxServer, redis_url: str, overlap: float, **extra: str) -> dict[str, str]:
    """token_service's variables for the sandbox's short token lifetimes: a refresh `overlap` seconds before
    expiry, and leases and back-offs short enough for a cycle of a few seconds."""
    settings = {
        "WECHAT_APPID": sandbox.platform.appid,
        "WECHAT_APPSECRET": DEFAULT_SECRET,
        "REDIS_URL": redis_url,
        "WECHAT_API_BASE": sandbox.url,
        "TOKEN_OVERLAP_SECONDS": str(overlap),
        "TOKEN_EXPIRY_MARGIN_SECONDS": str(min(0.8, overlap / 4)),
        "TOKEN_LOCK_LEASE_SECONDS": "1",
        "TOKEN_HTTP_TIMEOUT_SECONDS": "2",
        "TOKEN_BACKOFF_SECONDS": "0.2",
        "TOKEN_BACKOFF_CAP_SECONDS": "1",
        "TOKEN_FORCE_SPACING_SECONDS": "0",
        "LOG_LEVEL": "INFO",
    }
    settings.update(extra)
    return settings


def daemon_environment(settings: dict[str, str]) -> dict[str, str]:
    """The environment for a `python -m token_service run` child: this one without any WECHAT_ or TOKEN_
    variable of the caller's (nor its .env), then `settings`."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("WECHAT_", "TOKEN_"))}
    environment.update({"DOTENV_FILE": "/dev/null", "PYTHONPATH": str(PROJECT_ROOT)})
    environment.update(settings)
    return environment


class TokenConsumers(LoadThreads):
    """Threads that each read the token (one Redis GET) and call getcallbackip with it, in a loop, counting
    the errcodes; a context manager that starts them and stops them."""

    def __init__(self, client: redis.Redis, sandbox: SandboxServer, count: int, pause: float = 0.03) -> None:
        super().__init__(count, name="consumer")
        self.client, self.sandbox, self.pause = client, sandbox, pause
        self.errcodes: collections.Counter[int] = collections.Counter()
        self.failures = 0  # requests that raised (timeouts, refused connections)
        self.unavailable_after_first = 0  # reads that found no token after one had been seen

    def _run(self) -> None:
        session = requests.Session()
        had_token = False
        appid = self.sandbox.platform.appid
        while not self.stop.is_set():
            try:
                token = get_access_token(self.client, appid)
            except TokenUnavailable:
                with self.lock:
                    self.unavailable_after_first += had_token
                self.stop.wait(0.05)
                continue
            had_token = True
            try:
                answer = session.get(
                    self.sandbox.url + "/cgi-bin/getcallbackip", params={"access_token": token}, timeout=5
                ).json()
                with self.lock:
                    self.errcodes[int(answer.get("errcode", 0))] += 1
            except (requests.RequestException, ValueError):
                with self.lock:
                    self.failures += 1
            self.stop.wait(self.pause)
