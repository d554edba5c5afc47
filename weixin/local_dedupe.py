"""Dedupe while Redis is down: claims and replies in uWSGI's shared cache (every worker of this server),
or in this process's memory when not running under uWSGI.

Only a stand-in: it covers WeChat's retries that reach the same server, which is every retry on a
single-server deployment. Redis stays the store that several servers share.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Protocol

UWSGI_CACHE_NAME = "weixin-dedupe"  # declared in uwsgi.xml (cache2)
MEMORY_ITEMS = 10_000


class LocalClaims(Protocol):
    def claim(self, key: str, value: bytes, ttl_seconds: int) -> bytes | None: ...

    def store(self, key: str, value: bytes, ttl_seconds: int) -> None: ...

    def peek(self, key: str) -> bytes | None: ...


class UwsgiCacheClaims:
    """uWSGI's cache2: shared memory with its own lock, no system call on the way."""

    def __init__(self, uwsgi_module: object, cache_name: str = UWSGI_CACHE_NAME) -> None:
        self.uwsgi = uwsgi_module
        self.cache_name = cache_name

    def claim(self, key: str, value: bytes, ttl_seconds: int) -> bytes | None:
        """None when `key` is now ours; else what is stored under it (or b"" when it cannot be stored)."""
        if self.uwsgi.cache_set(key, value, ttl_seconds, self.cache_name):
            return None
        return self.uwsgi.cache_get(key, self.cache_name) or b""

    def store(self, key: str, value: bytes, ttl_seconds: int) -> None:
        self.uwsgi.cache_update(key, value, ttl_seconds, self.cache_name)

    def peek(self, key: str) -> bytes | None:
        return self.uwsgi.cache_get(key, self.cache_name)


class MemoryClaims:
    """The same in one process's memory (tests, `python index.py`), bounded in size."""

    def __init__(self, max_items: int = MEMORY_ITEMS) -> None:
        self.max_items = max_items
        self._items: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, key: str, value: bytes, ttl_seconds: int) -> bytes | None:
        now = time.monotonic()
        with self._lock:
            existing = self._items.get(key)
            if existing is not None and existing[1] > now:
                return existing[0]
            self._put(key, value, now + ttl_seconds)
            return None

    def store(self, key: str, value: bytes, ttl_seconds: int) -> None:
        with self._lock:
            self._put(key, value, time.monotonic() + ttl_seconds)

    def peek(self, key: str) -> bytes | None:
        with self._lock:
            existing = self._items.get(key)
        return existing[0] if existing is not None and existing[1] > time.monotonic() else None

    def _put(self, key: str, value: bytes, expires: float) -> None:
        self._items[key] = (value, expires)
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)


def local_claims() -> LocalClaims:
    """uWSGI's shared cache when this process is a uWSGI worker with the cache configured, else memory."""
    try:
        import uwsgi  # only importable inside uWSGI
    except ImportError:
        return MemoryClaims()
    # uWSGI answers None to every call on a cache it does not have: a probe write tells.
    if uwsgi.cache_update("weixin-dedupe-probe", b"1", 1, UWSGI_CACHE_NAME):
        return UwsgiCacheClaims(uwsgi)
    return MemoryClaims()
