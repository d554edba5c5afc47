"""The hand-off and the job in one process against real Redis and the sandbox over HTTP: exactly one of
"answered passively" and "sent", a job re-run by rq after a crash never sends twice, bounded retries."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from devstack.processes import free_port
from sandbox.platform import DEFAULT_SECRET, FakeWeChat
from sandbox.server import SandboxServer
from slow_replies import perform
from slow_replies.answer import BackgroundReplies, answer_or_defer
from slow_replies.delivery import CustomMessageSender
from slow_replies.handoff import HandOff, job_key
from slow_replies.jobs import JobSpec, make_queue
from slow_replies.perform import WorkerContext
from tests.conftest import TEST_APPID
from tests.counting_handlers import count_runs
from tests.waiting import wait_until
from weixin.config import load_settings
from weixin.messages import parse
from weixin.request_record import RequestRecord
from weixin.rules import Reply

SEND = "/cgi-bin/message/custom/send"
OPENID = "oRerunFollower00000000000001"


@pytest.fixture()
def wechat() -> Iterator[SandboxServer]:
    server = SandboxServer(FakeWeChat(appid=TEST_APPID)).start()
    server.platform.follower_interacted(OPENID)
    yield server
    server.stop()


@pytest.fixture()
def token(wechat: SandboxServer, redis_client: redis.Redis) -> str:
    """A token put in Redis where token_service keeps it (this module runs no daemon)."""
    answer = requests.get(wechat.url + "/cgi-bin/token", timeout=5, params={
        "grant_type": "client_credential", "appid": TEST_APPID, "secret": DEFAULT_SECRET,
    }).json()
    redis_client.set(f"wechat:access_token:{TEST_APPID}", answer["access_token"], ex=600)
    return answer["access_token"]


@pytest.fixture()
def worker_environment(monkeypatch: pytest.MonkeyPatch, redis_server, wechat: SandboxServer,
                       tmp_path: Path) -> Iterator[WorkerContext]:
    """The worker's context, built as the worker builds it, from this test's environment."""
    # The worker runs only handlers that a background rule of the replies file names.
    replies_file = tmp_path / "replies.yaml"
    replies_file.write_text('keywords:\n  - match: rerun\n    reply: {handler: "tests.counting_handlers:count_runs", '
                            'background: true}\n', encoding="utf-8")
    for name, value in {"REDIS_URL": redis_server.url, "WECHAT_APPID": TEST_APPID, "WECHAT_API_BASE": wechat.url,
                        "DOTENV_FILE": "/dev/null", "REPLIES_FILE": str(replies_file)}.items():
        monkeypatch.setenv(name, value)
    yield WorkerContext.build(load_settings(require_token=False))


def spec(job_id: str, content: str = "rerun", deadline_in: float = -1.0) -> JobSpec:
    fields = {"ToUserName": "gh_10f6c3c3ac5a", "FromUserName": OPENID, "CreateTime": "1700000000",
              "MsgType": "text", "Content": content, "MsgId": "1"}
    return JobSpec(job_id, "tests.counting_handlers:count_runs", fields, time.time() + deadline_in, "test-rule")


# --- the compare-and-sets ----------------------------------------------------------------------


def test_a_result_taken_in_time_is_the_passive_reply_and_is_never_sent(redis_client: redis.Redis) -> None:
    handoff = HandOff(redis_client)
    assert handoff.create("job-a", time.time() + 5, "rule")
    assert not handoff.create("job-a", time.time() + 5, "rule")  # a retry finds it
    assert handoff.finish("job-a", "<xml>card</xml>", '{"msgtype":"news"}') == "ready"
    assert handoff.wait_for_result("job-a", 1.0)
    taken = handoff.take("job-a", final=False)
    assert (taken.state, taken.xml) == ("passive", "<xml>card</xml>")
    assert handoff.wait_until_taken("job-a", 1.0)
    assert handoff.claim_send("job-a") == "passive"


def test_at_the_deadline_exactly_one_side_wins_whichever_comes_first(redis_client: redis.Redis) -> None:
    handoff = HandOff(redis_client)
    # The web process gives up first: the late result is the worker's to send.
    handoff.create("job-b", time.time(), "rule")
    assert handoff.take("job-b", final=True).state == "abandoned"
    assert handoff.finish("job-b", "<xml/>", "{}") == "sending"
    assert handoff.take("job-b", final=True).state == "sending"
    # The worker claims the send first: the web process's take comes back empty.
    handoff.create("job-c", time.time(), "rule")
    assert handoff.finish("job-c", "<xml/>", "{}") == "ready"
    assert handoff.claim_send("job-c") == "sending"
    taken = handoff.take("job-c", final=True)
    assert (taken.state, taken.xml) == ("sending", None)


def test_a_result_of_nothing_is_never_sent(redis_client: redis.Redis) -> None:
    handoff = HandOff(redis_client)
    handoff.create("job-d", time.time(), "rule")
    assert handoff.take("job-d", final=True).state == "abandoned"
    assert handoff.finish("job-d", None, None) == "nothing"


# --- the web side: one job per message, whatever the dedupe cache says ---------------------------


def test_the_same_message_delivered_twice_queues_one_job_and_no_worker_is_reported(
    redis_client: redis.Redis, redis_server, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings({"WECHAT_TOKEN": "abcdef", "REDIS_URL": redis_server.url, "REPLY_DEADLINE": "0.2"},
                             Path("/dev/null"))
    background = BackgroundReplies(settings)
    message = parse({"ToUserName": "gh_account", "FromUserName": OPENID, "MsgType": "text", "Content": "x",
                     "MsgId": "7"})
    for _ in range(2):
        record = RequestRecord(rule="test-rule")
        xml = answer_or_defer(Reply("handler", count_runs, background=True), message, "wechat:msg:A:id:7", background,
                              time.perf_counter() + settings.reply_deadline, record)
        assert xml is None and record.reply in ("deferred", "background-abandoned")
    assert len(make_queue(redis_client)) == 1
    assert caplog.text.count("no slow_replies worker is running") == 1


# --- the worker's job, re-run as rq does after a crash -------------------------------------------


def test_a_rerun_after_a_crash_during_the_send_does_not_send_again_and_says_so(
    worker_environment: WorkerContext, token: str, wechat: SandboxServer, redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    HandOff(redis_client).create("job-e", time.time(), "rule")
    redis_client.hset(job_key("job-e"), mapping={"state": "sending", "custom": '{"touser":"x"}'})
    with caplog.at_level(logging.WARNING, logger="slow_replies"):
        assert perform.perform_background_reply(spec("job-e").to_json(), worker_environment) == "unknown"
    assert wechat.platform.calls(SEND) == 0
    assert "may or may not have been delivered; not sending again (at most once)" in caplog.text


def test_a_rerun_after_a_crash_before_the_send_sends_once(
    worker_environment: WorkerContext, token: str, wechat: SandboxServer, redis_client: redis.Redis
) -> None:
    HandOff(redis_client).create("job-f", time.time() - 1, "rule")  # the web process died while waiting
    assert perform.perform_background_reply(spec("job-f", "once").to_json(), worker_environment) == "sent"
    assert perform.perform_background_reply(spec("job-f", "once").to_json(), worker_environment) == "sent"  # rq's retry
    assert [body["text"]["content"] for body in wechat.platform.delivered()] == ["handled once, run 1"]


def test_a_job_without_its_record_is_treated_as_past_its_deadline_and_sent(
    worker_environment: WorkerContext, token: str, wechat: SandboxServer
) -> None:
    assert perform.perform_background_reply(spec("job-g", "late").to_json(), worker_environment) == "sent"
    assert len(wechat.platform.delivered()) == 1


# --- custom/send retries -----------------------------------------------------------------------


def sender(base: str, redis_client: redis.Redis, **options) -> CustomMessageSender:
    return CustomMessageSender(base, TEST_APPID, redis_client, backoff_seconds=0.01, **options)


BODY = f'{{"touser":"{OPENID}","msgtype":"text","text":{{"content":"你好"}}}}'.encode()


def test_system_busy_is_retried_and_then_sent(token: str, wechat: SandboxServer, redis_client: redis.Redis) -> None:
    wechat.platform.inject_error(SEND, -1, count=2)
    result = sender(wechat.url, redis_client).send(BODY)
    assert result.sent and wechat.platform.calls(SEND) == 3
    assert wechat.platform.delivered()[0]["text"]["content"] == "你好"


def test_retries_are_bounded(token: str, wechat: SandboxServer, redis_client: redis.Redis) -> None:
    wechat.platform.inject_error(SEND, -1, count=5)
    result = sender(wechat.url, redis_client, attempts=3).send(BODY)
    assert not result.sent and result.errcode == -1 and wechat.platform.calls(SEND) == 3
    refused = sender(f"http://127.0.0.1:{free_port()}", redis_client, attempts=3).send(BODY)
    assert not refused.sent and refused.errcode is None and "no connection" in refused.detail


def test_a_call_that_may_have_reached_wechat_is_not_repeated(token: str, wechat: SandboxServer,
                                                             redis_client: redis.Redis, monkeypatch) -> None:
    monkeypatch.setattr("slow_replies.delivery.HTTP_TIMEOUT", (1.0, 0.3))
    wechat.platform.set_latency(SEND, 0.6)
    result = sender(wechat.url, redis_client).send(BODY)
    assert not result.sent and "at most once" in result.detail
    assert token not in result.detail
    # It did arrive, after the client had given up: wait for the platform to take it (the 0.6 s latency).
    # A repeat could only have come before send() returned, so the count is final.
    wait_until(lambda: len(wechat.platform.delivered()) == 1, timeout=5)
    assert wechat.platform.calls(SEND) == 1
