"""Fresh deliveries are claimed in memory and written to Redis behind (weixin/write_behind.py): WeChat's retry,
to another host, still gets the first answer and the rule runs once.

Two app servers (two uWSGI instances, each with its own shared cache) on one Redis play two hosts behind a
load balancer. A retry is the same bytes as the first delivery, 5 s later. Instead of sleeping 5 s, host B
lives 5 s later than host A: its clock is shifted by WECHAT_TEST_CLOCK_OFFSET and its warm-up deliveries
are stamped with WeChat's clock of that later moment (real time + 5 s). For A the message is brand new;
for B the same bytes are 5 s old, a retry, as they would be after a real 5 s. The retry is sent only once
A's answer is visible in Redis, which it is long before 5 s have passed (a batch is a few ms).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
import yaml

from tests.conftest import TEST_APPID, TEST_TOKEN
from tests.waiting import wait_until
from tests.wechat_requests import deliver, fresh_id, parsed_message, prepare, reply_fields, signed_query
from weixin.dedupe import PENDING
from weixin.messages import retry_key
from weixin.write_behind import MIN_AGE_SAMPLES, TEST_CLOCK_OFFSET_VARIABLE

ROOT = Path(__file__).resolve().parent.parent
RETRY_AFTER_SECONDS = 5  # WeChat's first retry


@pytest.fixture(scope="module")
def replies_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    document = yaml.safe_load((ROOT / "replies.yaml").read_text())
    document["keywords"] = [
        {"match": "count-me", "reply": {"handler": "tests.counting_handlers:count_runs"}},
        *document["keywords"],
    ]
    path = tmp_path_factory.mktemp("replies") / "replies.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    return path


def text_message(content: str, create_time: int) -> bytes:
    return (
        "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>"
        "<FromUserName><![CDATA[oFollower0000000000000000001]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{fresh_id()}</MsgId></xml>"
    ).encode()


def send_at(url: str, xml: bytes, wechat_time: int):
    """POST as WeChat does at `wechat_time` on its clock: the signed query's timestamp."""
    query, body = prepare(xml, TEST_TOKEN, query=signed_query(TEST_TOKEN, timestamp=str(wechat_time)))
    return query, body, deliver(url, query, body)


def warm_up(url: str, wechat_shift: int) -> None:
    """Enough fresh deliveries (on WeChat's clock, shifted) for the worker to know its clock's offset."""
    for _ in range(MIN_AGE_SAMPLES + 4):
        now = int(time.time()) + wechat_shift
        assert send_at(url, text_message("warm-up", now), now)[2].status_code == 200


def two_hosts(fresh_app, replies_file: Path, skew: int):
    """Host A, and host B living RETRY_AFTER_SECONDS later; both clocks `skew` s off WeChat's."""
    host_a = fresh_app(REPLIES_FILE=str(replies_file), **{TEST_CLOCK_OFFSET_VARIABLE: str(skew)})
    host_b = fresh_app(
        REPLIES_FILE=str(replies_file), **{TEST_CLOCK_OFFSET_VARIABLE: str(skew + RETRY_AFTER_SECONDS)}
    )
    warm_up(host_a.url + "/weixin", 0)
    warm_up(host_b.url + "/weixin", RETRY_AFTER_SECONDS)
    return host_a, host_b


def stored_reply(client: redis.Redis, xml: bytes) -> bytes | None:
    value = client.get(retry_key(TEST_APPID, parsed_message(xml)))
    return None if value is None or value.startswith(PENDING) else value


@pytest.mark.parametrize("skew", [0, 3, -3], ids=["clocks-agree", "app-3s-ahead", "app-3s-behind"])
def test_a_retry_to_another_host_gets_the_first_hosts_reply_and_the_rule_runs_once(
    fresh_app, replies_file: Path, redis_client: redis.Redis, skew: int
) -> None:
    host_a, host_b = two_hosts(fresh_app, replies_file, skew)
    content = "count-me"  # the rule's keyword; the run counter starts empty with the test's Redis
    now = int(time.time())
    query, body, first = send_at(host_a.url + "/weixin", text_message(content, now), now)
    assert reply_fields(first.text)["Content"] == f"handled {content}, run 1"
    assert "dedupe=first-behind " in host_a.process.wait_for_log("dedupe=first-behind")  # in A's memory
    wait_until(lambda: stored_reply(redis_client, body), 5, describe=host_a.process.log_text)

    retry = deliver(host_b.url + "/weixin", query, body)

    assert retry.status_code == 200 and retry.text == first.text
    assert int(redis_client.get(f"test:handler-runs:{content}")) == 1
    assert "dedupe=retry-answered " in host_b.process.wait_for_log("dedupe=retry-answered")


def test_a_first_answer_given_while_redis_restarts_reaches_redis_for_the_retry(
    fresh_app, replies_file: Path, redis_server, redis_client: redis.Redis
) -> None:
    host_a, host_b = two_hosts(fresh_app, replies_file, 0)
    redis_server.stop()
    try:
        now = int(time.time())
        xml = text_message("微博", now)  # a reply from the rules file: no handler needs Redis
        query, body, first = send_at(host_a.url + "/weixin", xml, now)
        assert first.status_code == 200 and "<Articles>" in first.text
        assert "dedupe=first-behind " in host_a.process.wait_for_log("dedupe=first-behind")
        failed = "writing 1 dedupe entries to Redis failed"
        assert failed in host_a.process.wait_for_log(failed)  # kept in the queue, not lost
    finally:
        redis_server.start()  # the same port, empty
    client = redis.Redis.from_url(redis_server.url)
    wait_until(lambda: stored_reply(client, body), 10, describe=host_a.process.log_text)

    retry = deliver(host_b.url + "/weixin", query, body)

    assert retry.status_code == 200 and retry.text == first.text
    assert "dedupe=retry-answered " in host_b.process.wait_for_log("dedupe=retry-answered")
