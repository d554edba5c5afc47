"""Benchmark: latency of a consumer's access_token read, from a private Redis on a unix socket.

    .venv/bin/python bench/token_read.py [--reads 20000]

Two figures from the same Redis in the same run: the one-call get_access_token() (one Redis round trip per
call), and a TokenClient held across the loop (its process-local copy: no round trip while it is fresh).
Prints median and p99 in microseconds. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from devstack.processes import running_redis
from token_service.consumer import TokenClient, get_access_token
from token_service.store import ACCESS_TOKEN, Credential, TokenStore

APPID = "wxbench0000000001"


def _percentiles(read: Callable[[], str], reads: int, warm_up: int) -> tuple[float, float]:
    for _ in range(warm_up):  # warm the connection pool and the interpreter
        read()
    samples = []
    for _ in range(reads):
        started = time.perf_counter_ns()
        read()
        samples.append(time.perf_counter_ns() - started)
    samples.sort()
    return statistics.median(samples) / 1000, samples[max(0, int(len(samples) * 0.99) - 1)] / 1000


def read_latencies(reads: int = 20_000, warm_up: int = 1000) -> dict[str, tuple[float, float]]:
    """Median and p99 (µs) of get_access_token() ("redis") and of TokenClient.access_token() with its local
    copy ("local copy"), against one private Redis on a unix socket."""
    with running_redis() as server:
        client = redis.Redis(unix_socket_path=str(server.socket_path))
        store = TokenStore(client, APPID)
        store.acquire_lock("bench", 60)
        now = time.time()
        store.write(ACCESS_TOKEN, "bench", Credential("x" * 140, now, now + 7200, "stable"), 60)
        tokens = TokenClient(client, APPID)  # the default refresh interval: its thread reads Redis meanwhile
        results = {
            "redis": _percentiles(lambda: get_access_token(client, APPID), reads, warm_up),
            "local copy": _percentiles(tokens.access_token, reads, warm_up),
        }
        tokens.close()
    return results


def read_latency(reads: int = 20_000, warm_up: int = 1000) -> tuple[float, float]:
    """Median and p99 (µs) of get_access_token() (one Redis round trip per call)."""
    return read_latencies(reads, warm_up)["redis"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=20_000)
    args = parser.parse_args(argv)
    results = read_latencies(args.reads)
    median, p99 = results["redis"]
    print(f"get_access_token() from Redis (unix socket), {args.reads} reads: median {median:.1f} us, p99 {p99:.1f} us")
    median, p99 = results["local copy"]
    print(f"TokenClient.access_token() local copy, {args.reads} reads: median {median:.1f} us, p99 {p99:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
