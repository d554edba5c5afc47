"""What the slow-reply delivery tests share: their replies file, a worker that loads it, WeChat's deliveries
as the simulator makes them (the same bytes again after 5 s without an answer, 3 deliveries in all)."""

from __future__ import annotations

from pathlib import Path

import redis

from devstack.processes import RedisServer
from sandbox import simulator
from sandbox.messages import Account, build_message
from sandbox.server import SandboxServer
from slow_replies.handoff import job_key
from tests.conftest import TEST_APPID, TEST_TOKEN
from tests.slow_replies.book_source import BookSource
from tests.slow_replies.conftest import Worker, job_id_of, worker_environment
from tests.wechat_requests import FIXTURES

REPLIES = FIXTURES / "replies" / "hold.yaml"
ACCOUNT = Account(TEST_TOKEN, TEST_APPID)
WECHAT_RESENDS = 2  # 3 deliveries in all, as WeChat's documentation counts them


def start_worker(directory: Path, redis_server: RedisServer, wechat: SandboxServer, book_source: BookSource,
                 **extra: str) -> Worker:
    env = worker_environment(redis_server, wechat, BOOKS_API_BASE=book_source.url, REPLIES_FILE=str(REPLIES),
                             LOG_LEVEL="INFO", **extra)
    return Worker(directory, env).start()


def as_wechat(url: str, openid: str, content: str) -> simulator.Exchange:
    """A text message delivered as WeChat does: re-sent (same bytes) after each 5 s without an answer."""
    message = build_message("text", content=content, from_user=openid)
    return simulator.exchange(url, message, ACCOUNT, "plain", retries=WECHAT_RESENDS, hold=True)


def job_state(redis_server: RedisServer, exchange: simulator.Exchange) -> str:
    client = redis.Redis.from_url(redis_server.url)
    try:
        value = client.hget(job_key(job_id_of(exchange.push.message.xml)), "state")
    finally:
        client.close()
    return value.decode() if value else ""
