"""Slow replies on an account without custom/send (the sandbox answers 48001, as for an unverified account),
through nginx and uWSGI from the shipped configuration, the worker and Redis: the answer goes out on one of
WeChat's re-sends (hold), or later for a keyword, and the handler runs once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import requests

from devstack.processes import NginxServer, RedisServer
from sandbox.platform import FakeWeChat
from sandbox.server import SandboxServer
from sandbox.simulator import carried_by
from tests.conftest import TEST_APPID, TEST_TOKEN
from tests.hold_handlers import long_text, runs
from tests.slow_replies.book_source import BookSource, new_isbn13
from tests.slow_replies.conftest import Worker, delivered_to, new_follower, text_message
from tests.slow_replies.hold_support import REPLIES, as_wechat, job_state, start_worker
from tests.waiting import wait_until
from tests.wechat_requests import post

OTHER_FOLLOWERS = 10
OTHERS_BOUND_SECONDS = 0.1  # the bound for other followers while a delivery is held
MORE = "回复「更多」继续"


@pytest.fixture(scope="module")
def wechat() -> Iterator[SandboxServer]:
    """An unverified account: custom/send and custom/typing answer 48001 (overrides conftest's)."""
    server = SandboxServer(FakeWeChat(appid=TEST_APPID, stable_force_spacing=0, unverified=True)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, wechat: SandboxServer,
           book_source: BookSource, token_daemon) -> Iterator[Worker]:
    process = start_worker(tmp_path_factory.mktemp("worker"), redis_server, wechat, book_source)
    yield process
    process.stop()


def behind_nginx(start_app, tmp_path_factory: pytest.TempPathFactory, **env: str) -> Iterator[str]:
    """The app (one worker, as the tests start it: its 16 threads serve everyone) behind the shipped nginx."""
    app = start_app(REPLIES_FILE=str(REPLIES), **env)
    nginx = NginxServer(tmp_path_factory.mktemp("nginx"), app.socket_path).start()
    yield nginx.url + "/weixin"
    nginx.stop()
    assert "Traceback" not in app.process.log_text(), app.process.log_text()[-3000:]


@pytest.fixture(scope="module")
def hold_url(start_app, tmp_path_factory, wechat: SandboxServer, book_source: BookSource,
             worker: Worker) -> Iterator[str]:
    """The message server in hold mode, with the default REPLY_DEADLINE, behind nginx."""
    yield from behind_nginx(start_app, tmp_path_factory, WECHAT_API_BASE=wechat.url,
                            BOOKS_API_BASE=book_source.url, SLOW_REPLY_DELIVERY="hold")


@pytest.fixture(scope="module")
def auto_url(start_app, tmp_path_factory, wechat: SandboxServer, book_source: BookSource,
             worker: Worker) -> Iterator[str]:
    yield from behind_nginx(start_app, tmp_path_factory, WECHAT_API_BASE=wechat.url,
                            BOOKS_API_BASE=book_source.url, SLOW_REPLY_DELIVERY="auto")


def text_of(exchange) -> str:
    return exchange.follower_view


def test_a_slow_isbn_reaches_the_follower_on_a_resend_and_is_looked_up_once(
        hold_url: str, wechat: SandboxServer, book_source: BookSource) -> None:
    openid, number = new_follower(wechat), new_isbn13()
    book_source.slow(number, 6.0)  # later than WeChat's 5 s: no first delivery can carry it
    result = as_wechat(hold_url, openid, number)
    assert result.delivery.answered_by in (2, 3), carried_by(result)
    assert "passive reply on the" in carried_by(result)
    assert result.verdict.reply is not None and result.verdict.reply.msg_type == "news", result.follower_view
    assert book_source.requests_for(number) == 1
    assert delivered_to(wechat, openid) == []


def test_while_a_delivery_is_held_other_followers_are_answered_at_once(
        hold_url: str, wechat: SandboxServer, redis_server: RedisServer) -> None:
    held: list = []
    openid = new_follower(wechat)
    content = f"slow 7 {openid}"
    thread = threading.Thread(target=lambda: held.append(as_wechat(hold_url, openid, content)))
    thread.start()
    try:
        # Past the first deadline (3.5 s): the first delivery is now held without an answer.
        wait_until(lambda: runs(content, redis_server.url) == 1, 10, describe="the slow handler started")
        latencies = []
        while thread.is_alive():  # the whole hold: the first delivery's wait, its hold, the second's wait
            other = new_follower(wechat)
            started = time.perf_counter()
            answer = post(hold_url, text_message(other, "hello"), TEST_TOKEN, timeout=5)
            latencies.append(time.perf_counter() - started)
            assert answer.status_code == 200 and "hi there" in answer.text
            time.sleep(0.2)  # pacing: a message every 0.2 s while the hold lasts
    finally:
        thread.join(30)
    assert len(latencies) >= OTHER_FOLLOWERS and max(latencies) < OTHERS_BOUND_SECONDS, latencies
    (result,) = held
    assert result.delivery.answered_by == 2, carried_by(result)
    assert "慢答案" in text_of(result) and runs(content, redis_server.url) == 1


def test_the_last_delivery_says_how_to_fetch_a_result_that_is_not_ready_and_the_keyword_fetches_it(
        hold_url: str, wechat: SandboxServer, redis_server: RedisServer) -> None:
    openid = new_follower(wechat)
    content = f"slow 16 {openid}"
    result = as_wechat(hold_url, openid, content)
    assert result.delivery.answered_by == 3, carried_by(result)
    assert "还在处理，稍后发送「结果」取回" in text_of(result)
    wait_until(lambda: job_state(redis_server, result) == "kept", 15, describe="the result kept")
    answer = post(hold_url, text_message(openid, "结果"), TEST_TOKEN, timeout=5)
    assert f"慢答案 {content}, run 1" in answer.text
    assert runs(content, redis_server.url) == 1
    # Taken once: the keyword now goes to the rules like any text (none matches: `success`).
    assert post(hold_url, text_message(openid, "结果"), TEST_TOKEN, timeout=5).text == "success"


def test_a_long_text_comes_page_by_page_with_the_more_keyword(hold_url: str, wechat: SandboxServer) -> None:
    openid = new_follower(wechat)
    result = as_wechat(hold_url, openid, "long 0.5")
    pages = [text_of(result)]
    while pages[-1].endswith(MORE):
        answer = post(hold_url, text_message(openid, "更多"), TEST_TOKEN, timeout=5)
        assert answer.status_code == 200 and "<Content>" in answer.text, answer.text
        pages.append(answer.text.split("<Content><![CDATA[", 1)[1].split("]]></Content>", 1)[0])
    assert len(pages) == 3
    assert all(len(page.encode()) <= 2048 for page in pages)
    assert "".join(page.removesuffix("\n" + MORE) for page in pages) == long_text()


def test_auto_switches_to_hold_on_48001_once_and_keeps_the_result_that_hit_it(
        auto_url: str, wechat: SandboxServer, redis_server: RedisServer, worker: Worker) -> None:
    openid = new_follower(wechat)
    first = as_wechat(auto_url, openid, f"slow 5 {openid}")
    # Still custom mode: `success` at REPLY_DEADLINE on the first delivery (no retries), then custom/send's 48001.
    assert first.delivery.answered_by == 1 and first.delivery.body == b"success", carried_by(first)
    wait_until(lambda: job_state(redis_server, first) == "kept", 15, describe="the 48001 result kept")
    answer = post(auto_url, text_message(openid, "结果"), TEST_TOKEN, timeout=5)
    assert f"慢答案 slow 5 {openid}, run 1" in answer.text
    second = as_wechat(auto_url, openid, f"slow 7 {openid}")
    assert second.delivery.answered_by == 2, carried_by(second)
    switches = [line for line in worker.log_text().splitlines() if "SLOW_REPLY_DELIVERY=auto: WeChat refused" in line]
    assert len(switches) == 1, switches
    assert delivered_to(wechat, openid) == []


def test_nginx_answers_nothing_before_wechat_gives_up_on_a_held_delivery(hold_url: str, wechat: SandboxServer) -> None:
    """A held delivery ends after WeChat's 5 s, and neither nginx nor uWSGI answers it first (a 504 or a
    `success` would end WeChat's retries)."""
    openid = new_follower(wechat)
    with pytest.raises(requests.Timeout):
        post(hold_url, text_message(openid, f"slow 12 {openid}"), TEST_TOKEN, timeout=5)
