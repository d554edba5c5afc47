"""Benchmark: latency of the consumer's get_access_token() from a private Redis on a unix socket.

    .venv/bin/python bench/token_read.py [--reads 20000]

Prints one line with the median and p99 in microseconds. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from devstack.processes import running_redis
from token_service.consumer import get_access_token
from token_service.store import ACCESS_TOKEN, Credential, TokenStore

APPID = "wxbench0000000001"


def read_latency(reads: int = 20_000, warm_up: int = 1000) -> tuple[float, float]:
    """Median and p99 (µs) of get_access_token() against a private Redis on a unix socket."""
    with running_redis() as server:
        client = redis.Redis(unix_socket_path=str(server.socket_path))
        store = TokenStore(client, APPID)
        store.acquire_lock("bench", 60)
        now = time.time()
        store.write(ACCESS_TOKEN, "bench", Credential("x" * 140, now, now + 7200, "stable"), 60)
        for _ in range(warm_up):  # warm the connection pool and the interpreter
            get_access_token(client, APPID)
        samples = []
        for _ in range(reads):
            started = time.perf_counter_ns()
            get_access_token(client, APPID)
            samples.append(time.perf_counter_ns() - started)
        client.close()
    samples.sort()
    return statistics.median(samples) / 1000, samples[max(0, int(len(samples) * 0.99) - 1)] / 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=20_000)
    args = parser.parse_args(argv)
    median, p99 = read_latency(args.reads)
    print(f"get_access_token() from Redis (unix socket), {args.reads} reads: median {median:.1f} us, p99 {p99:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
