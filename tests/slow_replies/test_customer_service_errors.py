"""What the worker does when custom/send refuses: 45015 and 45047 are final (one call, one clear log line),
40001 makes one compare-and-refresh through token_service and one retry."""

from __future__ import annotations

import pytest
import redis

from devstack.processes import AppServer, RedisServer
from sandbox.server import SandboxServer
from slow_replies.handoff import job_key
from slow_replies.jobs import job_id_for
from tests.conftest import TEST_APPID
from tests.slow_replies.book_source import BookSource, new_isbn13
from tests.slow_replies.conftest import (
    SLOW,
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

SEND = "/cgi-bin/message/custom/send"


def deferred_lookup(app: AppServer, book_source: BookSource, openid: str) -> str:
    """Send an ISBN whose source is slower than the deadline (so the card goes by custom/send); its job id."""
    number = new_isbn13()
    book_source.slow(number, SLOW)
    xml = text_message(openid, number)
    assert send(app, xml).text == "success"
    return job_id_for(retry_key(TEST_APPID, parsed_message(xml)))


def job_state(redis_server: RedisServer, job_id: str) -> str | None:
    state = redis.Redis.from_url(redis_server.url).hget(job_key(job_id), "state")
    return state.decode() if state else None


def log_lines(worker: Worker, job_id: str, text: str) -> list[str]:
    return [line for line in worker.log_text().splitlines() if job_id in line and text in line]


@pytest.mark.parametrize(
    ("errcode", "window_open", "reason"),
    [
        (45015, False, "48-hour"),  # the sandbox itself refuses: no open window for this follower
        (45047, True, "quota"),  # injected: the customer-service quota is used up
    ],
    ids=["45015-outside-the-48-hour-window", "45047-quota-used-up"],
)
def test_a_final_customer_service_error_fails_the_job_with_one_clear_log_line(
    errcode: int, window_open: bool, reason: str,
    app: AppServer, wechat: SandboxServer, book_source: BookSource, worker: Worker, redis_server: RedisServer,
) -> None:
    openid = new_follower(wechat, interacted=window_open)
    calls = wechat.platform.calls(SEND)
    if window_open:
        wechat.platform.inject_error(SEND, errcode)
    job_id = deferred_lookup(app, book_source, openid)
    assert wait_until(lambda: job_state(redis_server, job_id) == "failed", timeout=15)
    wait_until_settled(redis_server, job_id)  # no crash retry of the job is left to send again
    assert wechat.platform.calls(SEND) == calls + 1 and delivered_to(wechat, openid) == []
    [line] = log_lines(worker, job_id, f"errcode {errcode}")
    assert "ERROR" in line and reason in line and "not retrying" in line


def test_a_rejected_token_40001_is_refreshed_by_compare_and_set_then_sent_with_one_retry(
    app: AppServer, wechat: SandboxServer, book_source: BookSource, worker: Worker, redis_server: RedisServer
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    token_before = client.get(f"wechat:access_token:{TEST_APPID}")
    openid = new_follower(wechat)
    calls = wechat.platform.calls(SEND)
    wechat.platform.inject_error(SEND, 40001)
    job_id = deferred_lookup(app, book_source, openid)
    assert wait_until(lambda: delivered_to(wechat, openid), timeout=20)
    wait_until_settled(redis_server, job_id)  # the last moment a second delivery could come
    assert len(delivered_to(wechat, openid)) == 1
    assert wechat.platform.calls(SEND) == calls + 2  # the refused call and the one retry
    token_after = client.get(f"wechat:access_token:{TEST_APPID}")
    assert token_after != token_before and wechat.platform.is_token_valid(token_after.decode())
    assert "compare-and-refresh" in worker.log_text()
    assert job_state(redis_server, job_id) == "sent"
    assert token_before.decode() not in worker.log_text() and token_after.decode() not in worker.log_text()
