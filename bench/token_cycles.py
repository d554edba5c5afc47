"""token_service under many consumers: upstream stable_token calls per token cycle, and consumer errors.

The sandbox platform (short token lifetime) in this process, two `python -m token_service run` daemons as
real processes, and many consumer threads that read the token from Redis and call a sandbox API with it.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from processes import ManagedProcess, RedisServer  # noqa: E402
from sandbox.platform import DEFAULT_SECRET, FakeWeChat  # noqa: E402
from sandbox.server import SandboxServer  # noqa: E402
from token_service.consumer import TokenUnavailable, get_access_token  # noqa: E402

STABLE_TOKEN = "/cgi-bin/stable_token"


@dataclass
class TokenCycles:
    consumers: int
    daemons: int
    seconds: float
    tokens_seen: int
    stable_token_calls: int
    api_calls: int
    api_errors: int
    errcodes: dict[int, int]
    unavailable_after_first_token: int

    @property
    def calls_per_cycle(self) -> float:
        return self.stable_token_calls / max(1, self.tokens_seen)


class Consumers:
    """Threads that each read the token (one Redis GET) and call getcallbackip with it, in a loop."""

    def __init__(self, client: redis.Redis, sandbox: SandboxServer, count: int, pause: float) -> None:
        self.client, self.sandbox, self.pause = client, sandbox, pause
        self.stop = threading.Event()
        self.errcodes: collections.Counter[int] = collections.Counter()
        self.failures = 0  # requests that raised (timeouts, refused connections)
        self.unavailable_after_first = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, name=f"consumer-{n}", daemon=True) for n in range(count)]

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

    def __enter__(self) -> Consumers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


def daemon_env(sandbox: SandboxServer, redis_server: RedisServer, overlap: float) -> dict[str, str]:
    """As tests/token_service/conftest.py starts the daemons: short leases and backoffs for short cycles."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("WECHAT_", "TOKEN_"))}
    env.update({
        "WECHAT_APPID": sandbox.platform.appid,
        "WECHAT_APPSECRET": DEFAULT_SECRET,
        "REDIS_URL": redis_server.url,
        "WECHAT_API_BASE": sandbox.url,
        "TOKEN_OVERLAP_SECONDS": str(overlap),
        "TOKEN_EXPIRY_MARGIN_SECONDS": str(min(0.8, overlap / 4)),
        "TOKEN_LOCK_LEASE_SECONDS": "1",
        "TOKEN_HTTP_TIMEOUT_SECONDS": "2",
        "TOKEN_BACKOFF_SECONDS": "0.2",
        "TOKEN_BACKOFF_CAP_SECONDS": "1",
        "TOKEN_FORCE_SPACING_SECONDS": "0",
        "LOG_LEVEL": "INFO",
        "DOTENV_FILE": "/dev/null",
        "PYTHONPATH": str(ROOT),
    })
    return env


def measure_token_cycles(
    directory: Path,
    redis_server: RedisServer,
    consumers: int = 50,
    daemons: int = 2,
    rotations: int = 3,
    lifetime: float = 6.0,
    overlap: float = 3.0,
    pause: float = 0.02,
) -> TokenCycles:
    """Run until the first token and `rotations` more have been seen in Redis (or a timeout)."""
    sandbox = SandboxServer(FakeWeChat(token_lifetime=lifetime, overlap=overlap, stable_force_spacing=0)).start()
    client = redis.Redis(unix_socket_path=str(redis_server.socket_path), max_connections=consumers + 10)
    key = f"wechat:access_token:{sandbox.platform.appid}"
    seen: list[bytes] = []
    processes: list[ManagedProcess] = []
    started = time.monotonic()
    try:
        with Consumers(client, sandbox, consumers, pause) as running:
            env = daemon_env(sandbox, redis_server, overlap)
            for number in range(daemons):
                argv = [sys.executable, "-m", "token_service", "run"]
                log = directory / f"daemon-{number}.log"
                processes.append(ManagedProcess(f"daemon-{number}", argv, log, env=env).start())
            deadline = time.monotonic() + 10 + (rotations + 1) * lifetime * 2
            while len(seen) < rotations + 1 and time.monotonic() < deadline:
                value = client.get(key)
                if value is not None and (not seen or seen[-1] != value):
                    seen.append(value)
                time.sleep(0.02)
            stable_calls = sandbox.platform.calls(STABLE_TOKEN)
        elapsed = time.monotonic() - started
        if len(seen) < rotations + 1:
            logs = "\n".join(process.log_text()[-1500:] for process in processes)
            raise RuntimeError(f"only {len(seen)} tokens seen in {elapsed:.0f}s:\n{logs}")
    finally:
        for process in processes:
            process.stop(timeout=5)
        sandbox.stop()
        client.close()
    errcodes = dict(running.errcodes)
    return TokenCycles(
        consumers=consumers, daemons=daemons, seconds=elapsed, tokens_seen=len(seen),
        stable_token_calls=stable_calls, api_calls=sum(errcodes.values()) + running.failures,
        api_errors=sum(count for code, count in errcodes.items() if code != 0) + running.failures,
        errcodes=errcodes, unavailable_after_first_token=running.unavailable_after_first,
    )
