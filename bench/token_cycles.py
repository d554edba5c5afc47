"""token_service under many consumers: upstream stable_token calls per token cycle, and consumer errors.

The sandbox platform (short token lifetime) in this process, two `python -m token_service run` daemons as
real processes, and many consumer threads that read the token from Redis and call a sandbox API with it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devstack.processes import ManagedProcess, RedisServer  # noqa: E402
from sandbox.platform import FakeWeChat  # noqa: E402
from sandbox.server import SandboxServer  # noqa: E402
from sandbox.token_load import TokenConsumers, daemon_environment, short_cycle_settings  # noqa: E402

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
        with TokenConsumers(client, sandbox, consumers, pause) as running:
            env = daemon_environment(short_cycle_settings(sandbox, redis_server.url, overlap))
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
