"""Waiting on events, not on time: the one polling helper the tests share."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.02) -> object:
    """Poll `predicate` until it returns something truthy, and return that; at `timeout` seconds fail
    loudly with AssertionError (never return a falsy value that a caller could forget to check)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s: {getattr(predicate, '__name__', predicate)}")
        time.sleep(interval)
