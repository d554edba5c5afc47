"""Work that is still pending when WeChat retries, when the app restarts, and when the worker restarts too:
the card reaches the follower exactly once."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import requests

from devstack.processes import AppServer, RedisServer
from sandbox.server import SandboxServer
from slow_replies.jobs import job_id_for
from tests.conftest import TEST_APPID
from tests.slow_replies.book_source import BookSource, new_isbn13
from tests.slow_replies.conftest import (
    Worker,
    delivered_to,
    new_follower,
    send,
    text_message,
    wait_until,
    wait_until_settled,
)
from tests.wechat_requests import parsed_message
from weixin.messages import retry_key


def send_and_survive(app: AppServer, xml: bytes) -> requests.Response | None:
    """A delivery whose server may die under it (WeChat then simply retries)."""
    try:
        return send(app, xml)
    except requests.ConnectionError:
        return None


def job_id(xml: bytes) -> str:
    return job_id_for(retry_key(TEST_APPID, parsed_message(xml)))


def titles_delivered(wechat: SandboxServer, openid: str) -> list[str]:
    return [body["news"]["articles"][0]["title"] for body in delivered_to(wechat, openid)]


def test_a_wechat_retry_while_the_work_is_pending_does_not_start_it_again(
    app: AppServer, wechat: SandboxServer, book_source: BookSource, worker: Worker, redis_server: RedisServer
) -> None:
    openid, number = new_follower(wechat), new_isbn13()
    book_source.slow(number, 2.0)
    xml = text_message(openid, number)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(send, app, xml)
        assert wait_until(lambda: book_source.requests_for(number) == 1, timeout=5)  # the work has started
        retry_while_waiting = pool.submit(send, app, xml)  # the same message, signed anew: WeChat's retry
        responses = [first.result(), retry_while_waiting.result()]
    assert book_source.requests_for(number) == 1 and not delivered_to(wechat, openid)  # still pending
    responses.append(send(app, xml))
    assert [response.text for response in responses] == ["success"] * 3
    assert wait_until(lambda: delivered_to(wechat, openid), timeout=15)
    wait_until_settled(redis_server, job_id(xml))  # past the last moment a second delivery could come
    assert len(delivered_to(wechat, openid)) == 1
    assert book_source.requests_for(number) == 1
    assert worker.log_text().count(f"Job OK ({job_id(xml)})") == 1  # one job ran


def test_the_app_restarted_while_work_is_pending_still_delivers_the_card_exactly_once(
    own_app: AppServer, wechat: SandboxServer, book_source: BookSource, redis_server: RedisServer
) -> None:
    openid, number = new_follower(wechat), new_isbn13()
    book_source.slow(number, 2.0)
    xml = text_message(openid, number)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(send_and_survive, own_app, xml)
        assert wait_until(lambda: book_source.requests_for(number) == 1, timeout=5)
        own_app.stop()  # the web process dies while it waits for the result
        assert first.result() is None
    own_app.start()
    title = f"测试之书 {number[-4:]}：第二版"
    # WeChat's retry reaches the new app. The dead web process's claim is taken over (weixin/dedupe.py), and the
    # retry waits for the job that is already running (never a second one): the card comes either as the
    # retry's passive reply, when the job finishes within the deadline, or later through custom/send.
    retry = send(own_app, xml).text
    if retry == "success":
        assert wait_until(lambda: delivered_to(wechat, openid), timeout=15)
    else:
        assert title in retry
    # Past the last moment a second delivery could come: the job is finished (passive or sent) and rq
    # holds no further run of it.
    wait_until_settled(redis_server, job_id(xml))
    assert titles_delivered(wechat, openid) == ([title] if retry == "success" else [])
    assert book_source.requests_for(number) == 1


def test_the_app_and_the_worker_restarted_while_work_is_pending_deliver_each_card_exactly_once(
    own_app: AppServer, wechat: SandboxServer, book_source: BookSource, worker: Worker, redis_server: RedisServer
) -> None:
    openid, running, queued = new_follower(wechat), new_isbn13(), new_isbn13()
    book_source.slow(running, 2.0)
    with ThreadPoolExecutor(1) as pool:
        running_xml, queued_xml = text_message(openid, running), text_message(openid, queued)
        first = pool.submit(send_and_survive, own_app, running_xml)
        assert wait_until(lambda: book_source.requests_for(running) == 1, timeout=5)
        worker.stop_gracefully()  # systemctl restart: rq finishes the running job, then exits
        own_app.stop()
        first.result()
    own_app.start()
    # No worker takes jobs now: this one waits in Redis, and the app answers `success` at its deadline.
    assert send(own_app, queued_xml).text == "success"
    worker.wait_exit()
    assert titles_delivered(wechat, openid) == [f"测试之书 {running[-4:]}：第二版"]
    assert book_source.requests_for(queued) == 0
    worker.start()
    assert wait_until(lambda: len(delivered_to(wechat, openid)) == 2, timeout=15)
    wait_until_settled(redis_server, job_id(running_xml), job_id(queued_xml))
    assert titles_delivered(wechat, openid) == [f"测试之书 {running[-4:]}：第二版", f"测试之书 {queued[-4:]}：第二版"]
    assert re.search(r"warm shut down requested", worker.log_text())
