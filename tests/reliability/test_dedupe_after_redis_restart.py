"""The retry cache after Redis restarts: once Redis answers again, dedupe is back within one back-off."""

from __future__ import annotations

import time
from pathlib import Path

from devstack.processes import RedisServer
from weixin import redis_clients
from weixin.dedupe import REDIS_BACKOFF_SECONDS, Outcome, RetryCache


def test_after_a_redis_restart_the_first_claim_after_the_back_off_uses_redis_again(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        cache = RetryCache(redis_clients.request_path(server.url))
        # Both of the cache's connections are open: the claim script's and the client pool's (store()).
        assert cache.claim("wechat:msg:before").outcome is Outcome.FIRST
        cache.store("wechat:msg:before", "<xml/>")
        server.stop()
        cache.store("wechat:msg:during", "<xml/>")  # a handler finished while Redis was down: back-off starts
        server.start()  # the same port, empty
        time.sleep(REDIS_BACKOFF_SECONDS + 0.2)
        # Redis has been back for 5 s: the next message must be claimed in Redis again...
        first = cache.claim("wechat:msg:after")
        assert first.outcome is Outcome.FIRST, first
        cache.store("wechat:msg:after", "<xml>reply</xml>")
        # ...so that WeChat's retry of it gets that reply instead of being handled a second time.
        assert cache.claim("wechat:msg:after").outcome is Outcome.DONE
    finally:
        server.stop()
