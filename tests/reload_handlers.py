"""A handler for the hot-reload tests: it holds its uWSGI worker until the test releases it, so that the test
knows which worker takes the next message (the only free one)."""

from __future__ import annotations

import os
from typing import Any

import redis

HELD_KEY = "test:reload:held"  # a list of the pids holding a message
HOLD_SECONDS = 4  # the longest a worker is held: below the shipped harakiri (6 s, counted in whole seconds)


def release_key(pid: int | str) -> str:
    return f"test:reload:release:{pid}"


def hold(message: Any) -> str:
    """Record this worker's pid, wait until the test releases it, and say who answered."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    pid = os.getpid()
    client.rpush(HELD_KEY, pid)
    released = client.blpop([release_key(pid)], timeout=HOLD_SECONDS)
    return f"held by {pid}" if released else f"never released {pid}"
