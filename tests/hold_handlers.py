"""Background handlers for the slow-reply delivery tests (tests/slow_replies/test_hold_*.py): they count their
runs in Redis and take as long as the message says ("long 2": a long text after 2 s)."""

from __future__ import annotations

import os
import time
from typing import Any

import redis

LONG_TEXT_LINES = 12


def runs(content: str, redis_url: str) -> int:
    """How many times a handler here ran for `content` (read by the test, on the worker's Redis)."""
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.get(f"test:handler-runs:{content}") or 0)
    finally:
        client.close()


def _count(message: Any) -> int:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    return int(client.incr(f"test:handler-runs:{message.content}"))


def long_text() -> str:
    """About 5.6 KB of UTF-8 in numbered lines: three text messages."""
    return "\n".join(f"第{n}段：" + "长答案内容" * 30 for n in range(1, LONG_TEXT_LINES + 1))


def slow_long_answer(message: Any) -> str:
    """`long SECONDS`: the long text after SECONDS."""
    _count(message)
    time.sleep(float(message.content.split()[1]))
    return long_text()


def slow_answer(message: Any) -> str:
    """`slow SECONDS`: a short text after SECONDS."""
    runs = _count(message)
    time.sleep(float(message.content.split()[1]))
    return f"慢答案 {message.content}, run {runs}"
