"""Waiting on events, not on time: the one polling helper the tests share."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    predicate: Callable[[], object],
    timeout: float,
    interval: float = 0.02,
    describe: Callable[[], object] | None = None,
) -> object:
    """Poll `predicate` until it returns something truthy, and return that; at `timeout` seconds fail
    loudly with AssertionError (never return a falsy value that a caller could forget to check), with
    `describe()` (a log's tail, say) in the message."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f"\n{describe()}" if describe is not None else ""
            raise AssertionError(
                f"condition not met within {timeout}s: {getattr(predicate, '__name__', predicate)}{detail}"
            )
        time.sleep(interval)
