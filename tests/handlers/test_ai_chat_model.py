"""The AI chat handler against the sandbox's fake chat model over HTTP on loopback (in this process): the
answer, the history it sends and keeps, each failure's polite text, and logs without the key or the words."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from handlers import ai_chat
from sandbox.chat_model import DEFAULT_AI_KEY, SANDBOX_MODEL
from sandbox.server import SandboxServer
from tests.slow_replies.conftest import text_message
from tests.wechat_requests import parsed_message
from weixin.config import Settings, load_settings
from weixin.render import HandlerContext
from weixin.sessions import Session

NO_DOTENV = Path("/nonexistent/.env")
KEY = "sk-test-" + "k3y" * 10  # long enough to be masked by value


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    server = SandboxServer().start()
    server.platform.chat_model.configure({"api_key": KEY})
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_model(sandbox: SandboxServer) -> None:
    sandbox.platform.chat_model.reset()
    sandbox.platform.chat_model.configure({"api_key": KEY})


def settings_for(base_url: str, **env: str) -> Settings:
    return load_settings({"AI_BASE_URL": base_url, "AI_API_KEY": KEY, "AI_MODEL": SANDBOX_MODEL,
                          "AI_TIMEOUT": "2", **env}, dotenv_path=NO_DOTENV, require_token=False)


def context_for(sandbox: SandboxServer, **env: str) -> HandlerContext:
    return HandlerContext(settings_for(f"{sandbox.url}/v1", **env), None)  # the handler uses no Redis


def ask(content: str, context: HandlerContext, session: Session | None = None) -> str:
    message = parsed_message(text_message("oAiChatFollower000000000001", content)).wechat
    return ai_chat.chat(message, context, session)


def test_a_question_gets_the_models_answer_and_the_turn_is_kept(sandbox: SandboxServer) -> None:
    context, session = context_for(sandbox), Session("k")
    assert ask("问 你好", context, session) == "第1轮：你说的是「你好」"
    assert session.get(ai_chat.HISTORY_FIELD) == [{"q": "你好", "a": "第1轮：你说的是「你好」"}]
    assert ask("问 还记得吗", context, session) == "第2轮：你说的是「还记得吗」"
    request = sandbox.platform.chat_model.requests()[-1]
    assert request["model"] == SANDBOX_MODEL and request["max_tokens"] == 800
    assert [message["role"] for message in request["messages"]] == ["system", "user", "assistant", "user"]
    assert request["messages"][0]["content"] == context.settings.ai_system_prompt


def test_the_history_sent_is_at_most_ai_history_turns(sandbox: SandboxServer) -> None:
    context, session = context_for(sandbox, AI_HISTORY_TURNS="2"), Session("k")
    for number in range(1, 5):
        assert ask(f"问 第{number}个问题", context, session).startswith(f"第{min(number, 3)}轮")
    assert len(session.get(ai_chat.HISTORY_FIELD)) == 2
    no_history = context_for(sandbox, AI_HISTORY_TURNS="0")
    session = Session("k")
    assert ask("问 一", no_history, session).startswith("第1轮")
    assert ask("问 二", no_history, session).startswith("第1轮")
    assert ai_chat.HISTORY_FIELD not in session


def test_reset_forgets_the_history(sandbox: SandboxServer) -> None:
    context, session = context_for(sandbox), Session("k")
    ask("问 一", context, session)
    assert ai_chat.reset(None, context, session) == ai_chat.RESET_TEXT
    assert ask("问 二", context, session).startswith("第1轮")


def test_a_long_answer_is_returned_whole(sandbox: SandboxServer) -> None:
    answer = ask("问 来一篇长文", context_for(sandbox))
    assert len(answer) > 1000 and answer.startswith("【第1段】")


def test_the_client_is_built_once_per_context(sandbox: SandboxServer) -> None:
    context = context_for(sandbox)
    ai_chat.prepare_process(context)
    model = context.clients[ai_chat.CLIENT_NAME]
    ask("问 一", context)
    assert context.clients[ai_chat.CLIENT_NAME] is model
    assert model.client.max_retries == ai_chat.MAX_RETRIES


@pytest.mark.parametrize(
    ("question", "text", "kind"),
    [
        ("问 #401", ai_chat.UNAVAILABLE_TEXT, "refused_key"),
        ("问 #429", ai_chat.RATE_LIMITED_TEXT, "rate_limited"),
        ("问 #500", ai_chat.BUSY_TEXT, "unavailable"),
        ("问 #超时", ai_chat.BUSY_TEXT, "timeout"),
        ("问 #空", ai_chat.EMPTY_TEXT, "empty"),
        ("问 #过滤", ai_chat.FILTERED_TEXT, "filtered"),
    ],
)
def test_each_failure_gives_its_polite_text_and_a_log_line_without_secrets(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture, question: str, text: str, kind: str
) -> None:
    sandbox.platform.chat_model.configure({"hang_seconds": 4})  # AI_TIMEOUT is 2
    context, session = context_for(sandbox), Session("k")
    with caplog.at_level(logging.DEBUG):
        assert ask(question, context, session) == text
    assert f": {kind} (" in caplog.text
    assert KEY not in caplog.text and question[2:] not in caplog.text
    assert ai_chat.HISTORY_FIELD not in session  # a failed turn is not history


def test_a_wrong_key_is_refused_and_the_log_names_the_variable_not_the_key(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    context = context_for(sandbox, AI_API_KEY="sk-wrong-" + "x" * 20)
    with caplog.at_level(logging.DEBUG):
        assert ask("问 你好", context) == ai_chat.UNAVAILABLE_TEXT
    assert "check AI_API_KEY" in caplog.text and "sk-wrong" not in caplog.text
    with caplog.at_level(logging.DEBUG):
        assert ask("问 你好", context_for(sandbox, AI_API_KEY="")) == ai_chat.UNAVAILABLE_TEXT
    assert "AI_API_KEY is not set" in caplog.text


def test_an_unreachable_model_gives_the_busy_text(caplog: pytest.LogCaptureFixture) -> None:
    from devstack.processes import free_port

    context = HandlerContext(settings_for(f"http://127.0.0.1:{free_port()}/v1"), None)
    with caplog.at_level(logging.INFO):
        assert ask("问 有人吗", context) == ai_chat.BUSY_TEXT
    assert "unavailable" in caplog.text


def test_a_text_without_a_question_asks_for_one(sandbox: SandboxServer) -> None:
    message = parsed_message(text_message("oAiChatFollower000000000001", "  ")).wechat
    assert ai_chat.chat(message, context_for(sandbox)) == ai_chat.ASK_TEXT
    assert sandbox.platform.chat_model.state()["count"] == 0


def test_the_fake_model_checks_the_key_and_lists_its_model(sandbox: SandboxServer) -> None:
    import requests

    models = requests.get(f"{sandbox.url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
    assert models.status_code == 200 and models.json()["data"][0]["id"] == SANDBOX_MODEL
    refused = requests.post(f"{sandbox.url}/v1/chat/completions", json={"model": "m", "messages": []},
                            headers={"Authorization": "Bearer nope"}, timeout=5)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert "nope" not in refused.text
    sandbox.platform.chat_model.configure({"api_key": DEFAULT_AI_KEY})
    bad = requests.post(f"{sandbox.url}/v1/chat/completions", data=b"{",
                        headers={"Authorization": f"Bearer {DEFAULT_AI_KEY}"}, timeout=5)
    assert bad.status_code == 400


def test_faults_can_be_queued_through_the_control_endpoint(sandbox: SandboxServer) -> None:
    from sandbox.control import SandboxControl

    control = SandboxControl(sandbox.url)
    control.configure_chat(faults=["429", "500"])
    context = context_for(sandbox)
    assert ask("问 一", context) == ai_chat.RATE_LIMITED_TEXT
    assert ask("问 二", context) == ai_chat.BUSY_TEXT
    assert ask("问 三", context).startswith("第1轮")
    assert control.chat_state()["count"] == 3
    control.close()


def test_the_worker_prepares_the_client_before_it_forks_jobs(sandbox: SandboxServer,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    from slow_replies.worker import prepare_handlers

    context = context_for(sandbox)
    with caplog.at_level(logging.INFO):
        prepare_handlers({"handlers.ai_chat:chat", "handlers.books:lookup", "no_such_module:f"}, context)
    assert isinstance(context.clients[ai_chat.CLIENT_NAME], ai_chat.ChatModel)
    assert "could not prepare the handlers of no_such_module" in caplog.text
