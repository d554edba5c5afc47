"""Handlers that the endpoint tests put in their replies file: they count their runs in Redis."""

from __future__ import annotations

import os
import time
from typing import Any

import redis


def _count(message: Any) -> int:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    return int(client.incr(f"test:handler-runs:{message.content}"))


def count_runs(message: Any) -> str:
    return f"handled {message.content}, run {_count(message)}"


def slow_count_runs(message: Any) -> str:
    runs = _count(message)
    time.sleep(1.0)
    return f"slowly handled {message.content}, run {runs}"


def explode(message: Any) -> str:
    raise RuntimeError("handler bug with a secret-looking detail: Traceback (most recent call last)")
