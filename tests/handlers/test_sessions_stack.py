"""Follower sessions through the real stack: uWSGI runs `猜数字` inline, the rq worker runs each `猜 N` in the
background, and each message sees what the previous one stored (handlers/guess.py, the README's example)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from devstack.processes import AppServer, RedisServer, TokenServiceProcess
from sandbox.server import SandboxServer
from tests.conftest import TEST_APPID
from tests.slow_replies.conftest import (
    Worker,
    new_follower,
    send,
    text_message,
    token_daemon,
    wechat,
    worker_environment,
)
from tests.wechat_requests import reply_fields
from weixin.sessions import session_key

__all__ = ["token_daemon", "wechat"]

RULES = """
keywords:
  - match: 猜数字
    reply: {handler: "handlers.guess:start"}
  - regex: '^猜\\s*\\d{1,3}\\s*$'
    reply: {handler: "handlers.guess:guess", background: true}
  - regex: '^记 '
    reply: {handler: "tests.session_handlers:remember"}
  - match: 回忆
    reply: {handler: "tests.session_handlers:recall"}
default:
  echo: true
"""


@pytest.fixture(scope="module")
def replies_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "replies.yaml"
    path.write_text(RULES, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def session_worker(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, wechat: SandboxServer,
                   token_daemon: TokenServiceProcess, replies_file: Path) -> Iterator[Worker]:
    env = worker_environment(redis_server, wechat, REPLIES_FILE=str(replies_file))
    process = Worker(tmp_path_factory.mktemp("worker"), env).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def session_app(start_app, wechat: SandboxServer, session_worker: Worker, replies_file: Path) -> AppServer:
    return start_app(WECHAT_API_BASE=wechat.url, REPLIES_FILE=str(replies_file), REPLY_DEADLINE="3.5")


def say(app: AppServer, openid: str, content: str) -> str:
    reply = reply_fields(send(app, text_message(openid, content)).text)
    assert reply["MsgType"] == "text", reply
    return reply["Content"]


def test_a_guessing_game_carries_its_state_from_message_to_message(session_app: AppServer, wechat: SandboxServer,
                                                                   redis_server: RedisServer) -> None:
    openid = new_follower(wechat)
    assert "发送「猜数字」" in say(session_app, openid, "猜 50")  # no game yet: the session is empty
    assert "我想好了" in say(session_app, openid, "猜数字")
    key = session_key(TEST_APPID, openid)
    client = redis.Redis.from_url(redis_server.url)
    assert client.exists(key) and openid not in key
    assert 1700 < client.ttl(key) <= 1800
    low, high = 1, 100
    for tries in range(1, 8):  # a binary search finds any secret from 1 to 100 in 7 tries
        middle = (low + high) // 2
        answer = say(session_app, openid, f"猜 {middle}")
        if "猜对了" in answer:
            assert f"就是 {middle}，你用了 {tries} 次" in answer
            break
        assert f"（第 {tries} 次）" in answer
        low, high = (low, middle - 1) if "大了" in answer else (middle + 1, high)
    else:
        pytest.fail("seven tries did not find the number")
    assert "发送「猜数字」" in say(session_app, openid, "猜 50")  # the finished game left the session


def test_each_follower_has_a_session_of_their_own(session_app: AppServer, wechat: SandboxServer) -> None:
    first, second = new_follower(wechat), new_follower(wechat)
    assert "我想好了" in say(session_app, first, "猜数字")
    assert "发送「猜数字」" in say(session_app, second, "猜 50")
    assert re.search(r"(大了|小了|猜对了)", say(session_app, first, "猜 50"))


def test_two_concurrent_deliveries_of_one_follower_keep_both_session_writes(session_app: AppServer,
                                                                            wechat: SandboxServer) -> None:
    # Two messages of one follower handled at once by two uWSGI threads, both inside their handlers before
    # either session is saved: each write and each appended item survives the other's save.
    openid = new_follower(wechat)
    with ThreadPoolExecutor(2) as pool:
        answers = sorted(pool.map(lambda word: say(session_app, openid, f"记 {word}"), ["苹果", "香蕉"]))
    assert answers == ["记住了 苹果", "记住了 香蕉"]
    assert say(session_app, openid, "回忆") == "words=苹果,香蕉 fields=seen_苹果,seen_香蕉"
