"""Slow replies on an account that can use custom/send (SLOW_REPLY_DELIVERY=custom and auto): "typing" is
shown once per job, and a long text goes out as ordered messages that each fit WeChat's limit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.processes import AppServer, RedisServer
from sandbox.server import SandboxServer
from tests.hold_handlers import long_text, runs
from tests.slow_replies.book_source import BookSource
from tests.slow_replies.conftest import DEADLINE, Worker, delivered_to, job_id_of, new_follower, wait_until_settled
from tests.slow_replies.hold_support import REPLIES, as_wechat, start_worker
from tests.waiting import wait_until
from weixin.long_text import TEXT_LIMIT_BYTES


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, wechat: SandboxServer,
           book_source: BookSource, token_daemon) -> Iterator[Worker]:
    process = start_worker(tmp_path_factory.mktemp("worker"), redis_server, wechat, book_source)
    yield process
    process.stop()


@pytest.fixture(scope="module", params=["custom", "auto"])
def app(request, start_app, wechat: SandboxServer, book_source: BookSource, worker: Worker) -> AppServer:
    return start_app(WECHAT_API_BASE=wechat.url, BOOKS_API_BASE=book_source.url, REPLY_DEADLINE=str(DEADLINE),
                     REPLIES_FILE=str(REPLIES), SLOW_REPLY_DELIVERY=request.param)


def typing_for(wechat: SandboxServer, openid: str) -> list[dict]:
    return [body for body in wechat.platform.typing() if body.get("touser") == openid]


def test_a_long_slow_text_goes_out_as_ordered_messages_with_typing_shown_once(
        app: AppServer, wechat: SandboxServer, redis_server: RedisServer) -> None:
    openid = new_follower(wechat)
    content = f"long 2 {openid}"
    result = as_wechat(app.url + "/weixin", openid, content)
    assert result.delivery.answered_by == 1 and result.delivery.body == b"success"
    wait_until(lambda: len(delivered_to(wechat, openid)) >= 3, 20, describe=lambda: delivered_to(wechat, openid))
    wait_until_settled(redis_server, job_id_of(result.push.message.xml.encode()))
    sent = delivered_to(wechat, openid)
    texts = [body["text"]["content"] for body in sent]
    assert [body["msgtype"] for body in sent] == ["text"] * 3
    assert all(len(text.encode("utf-8")) <= TEXT_LIMIT_BYTES for text in texts)
    assert "".join(texts) == long_text()
    assert typing_for(wechat, openid) == [{"touser": openid, "command": "Typing"}]
    assert runs(content, redis_server.url) == 1
