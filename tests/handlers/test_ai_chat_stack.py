"""The AI chat rules of the shipped replies.yaml through the real stack: uWSGI, Redis, the rq worker, the token
daemon and the sandbox as WeChat's API and as the chat model (sandbox/chat_model.py). A question gets the
model's answer, the next one carries the history, a slow answer arrives by custom/send, a long one is split
(custom) or paged (hold), the model's failures give polite texts without stopping anything, and the API key
never reaches a log."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.processes import AppServer, RedisServer, TokenServiceProcess
from handlers import ai_chat
from sandbox.chat_model import SANDBOX_MODEL, long_answer
from sandbox.server import SandboxServer
from sandbox.simulator import carried_by
from tests.slow_replies.conftest import (
    Worker,
    delivered_to,
    job_id_of,
    new_follower,
    send,
    text_message,
    token_daemon,
    wait_until_settled,
    wechat,
    worker_environment,
)
from tests.slow_replies.hold_support import as_wechat
from tests.waiting import wait_until
from tests.wechat_requests import reply_fields

__all__ = ["token_daemon", "wechat"]

KEY = "sk-stack-" + "0a1b2c3d4e5f" * 3
DEADLINE = "1.0"
AI_TIMEOUT = "2"
MORE = "回复「更多」继续"


@pytest.fixture(scope="module")
def ai_env(wechat: SandboxServer) -> dict[str, str]:
    wechat.platform.chat_model.configure({"api_key": KEY, "hang_seconds": 5})
    return {"AI_BASE_URL": f"{wechat.url}/v1", "AI_API_KEY": KEY, "AI_MODEL": SANDBOX_MODEL,
            "AI_TIMEOUT": AI_TIMEOUT}


@pytest.fixture(scope="module")
def ai_worker(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, wechat: SandboxServer,
              token_daemon: TokenServiceProcess, ai_env: dict[str, str]) -> Iterator[Worker]:
    env = worker_environment(redis_server, wechat, LOG_LEVEL="DEBUG", **ai_env)
    process = Worker(tmp_path_factory.mktemp("worker"), env).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def ai_app(start_app, wechat: SandboxServer, ai_worker: Worker, ai_env: dict[str, str]) -> AppServer:
    """The message server with the shipped replies.yaml (`问 ...` is a background rule, `新对话` inline)."""
    return start_app(WECHAT_API_BASE=wechat.url, REPLY_DEADLINE=DEADLINE, LOG_LEVEL="DEBUG", **ai_env)


@pytest.fixture(scope="module")
def hold_app(start_app, wechat: SandboxServer, ai_worker: Worker, ai_env: dict[str, str]) -> AppServer:
    """The same, for an account whose slow answers go through WeChat's retries (SLOW_REPLY_DELIVERY=hold)."""
    return start_app(WECHAT_API_BASE=wechat.url, REPLY_DEADLINE=DEADLINE, SLOW_REPLY_DELIVERY="hold", **ai_env)


@pytest.fixture(autouse=True)
def model_as_configured(wechat: SandboxServer) -> Iterator[None]:
    yield
    wechat.platform.chat_model.configure({"latency": 0, "long": False})


def say(app: AppServer, openid: str, content: str) -> str:
    reply = reply_fields(send(app, text_message(openid, content)).text)
    assert reply["MsgType"] == "text", reply
    return reply["Content"]


def test_a_question_gets_the_models_answer_and_the_next_one_carries_the_history(
    ai_app: AppServer, wechat: SandboxServer
) -> None:
    openid = new_follower(wechat)
    assert say(ai_app, openid, "问 你好") == "第1轮：你说的是「你好」"
    assert say(ai_app, openid, "问：你还记得我刚才说了什么吗") == "第2轮：你说的是「你还记得我刚才说了什么吗」"
    sent = wechat.platform.chat_model.requests()[-1]["messages"]
    assert [message["content"] for message in sent[1:]] == [
        "你好", "第1轮：你说的是「你好」", "你还记得我刚才说了什么吗"]
    assert say(ai_app, new_follower(wechat), "问 我是谁") == "第1轮：你说的是「我是谁」"  # their own history
    assert say(ai_app, openid, "新对话") == ai_chat.RESET_TEXT
    assert say(ai_app, openid, "问 重新开始") == "第1轮：你说的是「重新开始」"


def test_other_texts_still_get_the_echo_default(ai_app: AppServer, wechat: SandboxServer) -> None:
    count = wechat.platform.chat_model.state()["count"]
    assert say(ai_app, new_follower(wechat), "问题是什么") == "问题是什么"
    assert wechat.platform.chat_model.state()["count"] == count


def test_a_slow_answer_arrives_by_custom_send(ai_app: AppServer, wechat: SandboxServer,
                                              redis_server: RedisServer) -> None:
    openid = new_follower(wechat)
    wechat.platform.chat_model.configure({"latency": 1.6})  # past REPLY_DEADLINE (1 s)
    xml = text_message(openid, "问 慢慢想")
    assert send(ai_app, xml).text == "success"
    wait_until_settled(redis_server, job_id_of(xml))
    [message] = delivered_to(wechat, openid)
    assert message["msgtype"] == "text" and message["text"]["content"] == "第1轮：你说的是「慢慢想」"


def test_a_long_slow_answer_goes_out_as_ordered_messages(ai_app: AppServer, wechat: SandboxServer,
                                                          redis_server: RedisServer) -> None:
    """custom/send: split at WeChat's 2048 bytes (weixin/long_text.py), in order, nothing lost."""
    openid = new_follower(wechat)
    wechat.platform.chat_model.configure({"latency": 1.6})
    xml = text_message(openid, "问 写一篇长文")
    assert send(ai_app, xml).text == "success"
    wait_until_settled(redis_server, job_id_of(xml))
    contents = [message["text"]["content"] for message in delivered_to(wechat, openid)]
    assert len(contents) >= 2 and all(len(content.encode()) <= 2048 for content in contents)
    assert "".join(contents) == long_answer()


def test_a_long_answer_on_a_hold_account_comes_page_by_page_with_more(hold_app: AppServer,
                                                                       wechat: SandboxServer) -> None:
    """SLOW_REPLY_DELIVERY=hold: the answer rides on one of WeChat's re-sends, its first page ends with the
    hint, and the keyword fetches the rest."""
    openid = new_follower(wechat)
    wechat.platform.chat_model.configure({"latency": 1.6})  # past REPLY_DEADLINE: not the first delivery's
    result = as_wechat(f"{hold_app.url}/weixin", openid, "问 写一篇长文")
    assert result.delivery.answered_by in (2, 3), carried_by(result)
    pages = [result.follower_view]
    while pages[-1].endswith(MORE):
        pages.append(say(hold_app, openid, "更多"))
    assert len(pages) >= 2 and all(len(page.encode()) <= 2048 for page in pages)
    assert "".join(page.removesuffix("\n" + MORE) for page in pages) == long_answer()
    assert delivered_to(wechat, openid) == []


@pytest.mark.parametrize(
    ("trigger", "text"),
    [
        ("#401", ai_chat.UNAVAILABLE_TEXT),
        ("#429", ai_chat.RATE_LIMITED_TEXT),
        ("#500", ai_chat.BUSY_TEXT),
        ("#超时", ai_chat.BUSY_TEXT),
        ("#空", ai_chat.EMPTY_TEXT),
        ("#过滤", ai_chat.FILTERED_TEXT),
    ],
)
def test_the_models_failures_give_a_polite_text_and_nothing_stops(
    ai_app: AppServer, ai_worker: Worker, wechat: SandboxServer, redis_server: RedisServer, trigger: str, text: str
) -> None:
    openid = new_follower(wechat)
    xml = text_message(openid, f"问 {trigger}")
    answer = send(ai_app, xml).text
    if answer == "success":  # the timeout (AI_TIMEOUT 2 s) outlasts REPLY_DEADLINE: custom/send brings it
        wait_until_settled(redis_server, job_id_of(xml))
        assert [message["text"]["content"] for message in delivered_to(wechat, openid)] == [text]
    else:
        assert reply_fields(answer)["Content"] == text
    assert ai_worker.process.alive() and ai_app.process.alive()
    assert say(ai_app, openid, "问 还在吗") == "第1轮：你说的是「还在吗」"  # a failed turn is no history


def test_the_api_key_and_the_followers_words_never_reach_a_log(
    ai_app: AppServer, ai_worker: Worker, wechat: SandboxServer, redis_server: RedisServer
) -> None:
    openid = new_follower(wechat)
    words = "问 这句话不该出现在日志里"
    for content in (words, "问 #401 这句话不该出现在日志里"):
        xml = text_message(openid, content)
        send(ai_app, xml)
        wait_until_settled(redis_server, job_id_of(xml))
    wait_until(lambda: "the key was refused" in ai_worker.log_text(), 10, describe=ai_worker.log_text)
    logs = ai_worker.log_text() + ai_app.process.log_text()
    assert "chat model sandbox-chat answered" in logs
    assert KEY not in logs
    assert "这句话不该出现在日志里" not in logs


def test_the_readmes_simulator_conversation_passes(ai_app: AppServer) -> None:
    import subprocess
    import sys

    from devstack.processes import PROJECT_ROOT
    from tests.conftest import TEST_TOKEN

    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "chat", "sandbox/conversations/ai.yaml", "--url", f"{ai_app.url}/weixin",
         "--token", TEST_TOKEN],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
