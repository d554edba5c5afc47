"""The AI chat handler (`handlers.ai_chat:chat`, a background rule): answer with a chat model through an
OpenAI-compatible chat completions API, with the follower's last turns from their session as history.

The pure parts (the question, the history kept and sent, the messages, the texts) are apart from the I/O
(ChatModel: one call to the model; chat and reset: the handlers). Configured by the AI_* variables of
weixin/config.py. The follower's words and the model's answers are never logged; the API key neither
(it is in the SecretRedactor's list too, in case a library puts it in an error).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from wechatpy.messages import BaseMessage

from weixin.config import Settings, load_settings
from weixin.render import HandlerContext
from weixin.sessions import Session

log = logging.getLogger("ai_chat")

# The session field that holds the history: a list of {"q": question, "a": answer}, one item per turn, so
# that the session's size cap (which drops the oldest items first) never splits a question from its answer.
HISTORY_FIELD = "ai_history"
# What one turn keeps of each side: a follower's long paste or a long answer must not crowd out the other
# turns. The session holds SESSION_MAX_BYTES (4096) in all and Chinese takes 3 bytes a character, so a turn
# is at most about 1.2 KB and the last three always fit; the session drops the oldest turns beyond its cap.
MAX_STORED_QUESTION_CHARS = 100
MAX_STORED_ANSWER_CHARS = 300
# The history sent with a question, at most (oldest turns dropped first): bounds the prompt's cost even when
# the session's cap is raised.
MAX_HISTORY_CHARS = 3000
# A question longer than this is cut: WeChat's own text messages are at most 2048 bytes, a voice
# recognition shorter still; this only guards a handler called from elsewhere.
MAX_QUESTION_CHARS = 2000
ELLIPSIS = "…"
# Where the handler keeps its ChatModel on the process's HandlerContext.
CLIENT_NAME = "ai_chat"
# One try: a follower is waiting, a retry doubles the wait, and a model server that answered 429 or 5xx
# is not helped by more calls. The follower can ask again; the polite text says so.
MAX_RETRIES = 0
# Connecting never takes longer than this, whatever AI_TIMEOUT says (an unreachable host fails fast).
CONNECT_TIMEOUT_SECONDS = 5.0
# The API key sent when AI_API_KEY is unset (local model servers need none; the openai client wants one).
NO_KEY = "unset"

# `问 xxx`, `问：xxx`: the shipped rule's prefix, not part of the question.
# `问题是…` keeps its 问: a space or a colon must follow.
_ASK_PREFIX = re.compile(r"^\s*问(?:\s*[:：]\s*|\s+)(?=\S)")

BUSY_TEXT = "抱歉，我现在有点忙，请稍后再试。"
RATE_LIMITED_TEXT = "抱歉，现在问的人有点多，请过一会儿再问我。"
UNAVAILABLE_TEXT = "抱歉，AI 助手暂时不可用，请稍后再试。"
EMPTY_TEXT = "抱歉，这个问题我没想好怎么回答，换个说法试试？"
FILTERED_TEXT = "抱歉，这个问题我不方便回答，我们换个话题吧。"
ASK_TEXT = "请用文字把问题发给我，例如：问 今天适合做什么？"
RESET_TEXT = "好的，我们重新开始吧。之前的对话我已经忘掉了。"

# What the follower reads for each kind of failure (ChatFailure.kind).
FAILURE_TEXTS = {
    "timeout": BUSY_TEXT,
    "unavailable": BUSY_TEXT,
    "rate_limited": RATE_LIMITED_TEXT,
    "refused_key": UNAVAILABLE_TEXT,
    "bad_request": UNAVAILABLE_TEXT,
    "empty": EMPTY_TEXT,
    "filtered": FILTERED_TEXT,
}


class ChatFailure(Exception):
    """The chat model gave no usable answer. `kind` is a key of FAILURE_TEXTS; the message is for the log and
    holds neither the key nor the follower's words."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


@dataclass(frozen=True)
class Turn:
    question: str
    answer: str


# --- pure ------------------------------------------------------------------------------------


def capped(text: str, limit: int) -> str:
    """`text` without surrounding spaces, at most `limit` characters (ending with an ellipsis when cut)."""
    text = text.strip()
    return text if len(text) <= limit else text[:limit - len(ELLIPSIS)] + ELLIPSIS


def question_of(text: str) -> str:
    """The question in a follower's text: without the `问` prefix of the shipped rule, capped."""
    return capped(_ASK_PREFIX.sub("", text, count=1), MAX_QUESTION_CHARS)


def stored_turn(question: str, answer: str) -> dict[str, str]:
    """One turn as the session keeps it (JSON), each side capped."""
    return {"q": capped(question, MAX_STORED_QUESTION_CHARS), "a": capped(answer, MAX_STORED_ANSWER_CHARS)}


def recent_turns(history: Any, max_turns: int, max_chars: int = MAX_HISTORY_CHARS) -> list[Turn]:
    """The last `max_turns` well-formed turns of a session's history (anything else in the list is skipped:
    the session is JSON from Redis), then the oldest dropped until questions and answers hold at most
    `max_chars` characters together."""
    if max_turns <= 0 or not isinstance(history, list):
        return []
    turns = [
        Turn(item["q"], item["a"]) for item in history
        if isinstance(item, dict) and isinstance(item.get("q"), str) and isinstance(item.get("a"), str)
    ][-max_turns:]
    total = sum(len(turn.question) + len(turn.answer) for turn in turns)
    while turns and total > max_chars:
        dropped = turns.pop(0)
        total -= len(dropped.question) + len(dropped.answer)
    return turns


def chat_messages(system_prompt: str, turns: list[Turn], question: str) -> list[dict[str, str]]:
    """The chat completions `messages`: the system prompt (when set), the earlier turns in order, the question."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    for turn in turns:
        messages.append({"role": "user", "content": turn.question})
        messages.append({"role": "assistant", "content": turn.answer})
    messages.append({"role": "user", "content": question})
    return messages


def failure_text(kind: str) -> str:
    return FAILURE_TEXTS.get(kind, BUSY_TEXT)


def text_of(message: BaseMessage) -> str:
    """What the follower said: a text message's content, or a voice message's recognition (when on)."""
    return str(getattr(message, "content", "") or getattr(message, "recognition", "") or "")


# --- I/O ---------------------------------------------------------------------------------------


@dataclass
class ChatModel:
    """One process's client of the chat model (an openai.OpenAI: its connection pool and TLS set-up), built
    once per process and kept on its HandlerContext (see model_for)."""

    client: Any
    model: str
    max_tokens: int
    timeout: float
    key_is_set: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatModel:
        # Imported here: the web process resolves the rule's handler but never runs a background one, and
        # importing openai costs about half a second and some memory in each process that does.
        import openai

        timeout = openai.Timeout(settings.ai_timeout, connect=min(CONNECT_TIMEOUT_SECONDS, settings.ai_timeout))
        client = openai.OpenAI(
            base_url=settings.ai_base_url,
            api_key=settings.ai_api_key or NO_KEY,
            timeout=timeout,
            max_retries=MAX_RETRIES,
        )
        return cls(client, settings.ai_model, settings.ai_max_tokens, settings.ai_timeout, bool(settings.ai_api_key))

    def answer(self, messages: list[dict[str, str]]) -> str:
        """The model's answer to `messages`, or ChatFailure. AI_TIMEOUT bounds each wait for the server (httpx
        times connect and each read, not the whole call; the job's own limit, 120 s, ends anything longer)."""
        import openai

        try:
            completion = self.client.chat.completions.create(
                model=self.model, messages=messages, max_tokens=self.max_tokens,
            )
        except openai.APITimeoutError:
            raise ChatFailure("timeout", f"no answer within AI_TIMEOUT ({self.timeout:g} s)") from None
        except openai.APIConnectionError as error:
            # Its message names the cause (refused, DNS), never the request.
            raise ChatFailure("unavailable", f"cannot reach AI_BASE_URL: {type(error.__cause__).__name__}") from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
            # Not str(error): some servers quote the key they were given in the message.
            hint = "check AI_API_KEY" if self.key_is_set else "AI_API_KEY is not set"
            raise ChatFailure("refused_key", f"HTTP {error.status_code}: the key was refused ({hint})") from None
        except openai.RateLimitError:
            raise ChatFailure("rate_limited", "HTTP 429: rate limited or out of quota") from None
        except openai.APIStatusError as error:
            code = _error_code(error)
            if code == "content_filter":  # Azure refuses a filtered question with 400 content_filter
                raise ChatFailure("filtered", f"HTTP {error.status_code}: content filter") from None
            kind = "unavailable" if error.status_code >= 500 else "bad_request"
            raise ChatFailure(kind, f"HTTP {error.status_code} {code or ''}".rstrip()) from None
        except openai.OpenAIError as error:  # an answer that is not the API's JSON, say
            raise ChatFailure("unavailable", type(error).__name__) from None
        choices = getattr(completion, "choices", None) or []
        if not choices:
            raise ChatFailure("empty", "an answer without choices")
        choice = choices[0]
        text = str(getattr(choice.message, "content", None) or "").strip()
        if choice.finish_reason == "content_filter":
            raise ChatFailure("filtered", "finish_reason content_filter")
        if not text:
            raise ChatFailure("empty", f"an empty answer (finish_reason {choice.finish_reason})")
        return text


def _error_code(error: Any) -> str | None:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        code = body.get("code", (body.get("error") or {}).get("code") if isinstance(body.get("error"), dict) else None)
        return str(code) if code else None
    return None


def model_for(context: HandlerContext) -> ChatModel:
    """The process's ChatModel, built on first use and kept on its HandlerContext (the worker builds it before
    it forks a process per job: see prepare_process)."""
    model = context.clients.get(CLIENT_NAME)
    if model is None:
        model = context.clients[CLIENT_NAME] = ChatModel.from_settings(context.settings)
    return model


def prepare_process(context: HandlerContext) -> None:
    """Called once by the worker before it forks a process per job: each job inherits the client instead of
    setting up its TLS again (about a quarter of a second)."""
    model_for(context)


def chat(message: BaseMessage, context: HandlerContext | None = None, session: Session | None = None) -> str:
    """The rules file's `handlers.ai_chat:chat`: the model's answer to the follower's text, with their last
    AI_HISTORY_TURNS turns from `session` (no history without one); a polite text when the model fails."""
    question = question_of(text_of(message))
    if not question:
        return ASK_TEXT
    if context is None:  # a script or test without a process context: a client for this one question
        settings = load_settings(require_token=False)
        model = ChatModel.from_settings(settings)
    else:
        settings, model = context.settings, model_for(context)
    turns = recent_turns(session.get(HISTORY_FIELD, []) if session is not None else [], settings.ai_history_turns)
    started = time.monotonic()
    try:
        answer = model.answer(chat_messages(settings.ai_system_prompt, turns, question))
    except ChatFailure as failure:
        level = logging.ERROR if failure.kind in ("refused_key", "bad_request") else logging.WARNING
        log.log(level, "chat model %s gave no answer after %.1f s: %s (%s); the follower gets a polite text",
                settings.ai_model, time.monotonic() - started, failure.kind, failure)
        return failure_text(failure.kind)
    log.info("chat model %s answered in %.1f s (%d earlier turns, %d characters)",
             settings.ai_model, time.monotonic() - started, len(turns), len(answer))
    if session is not None and settings.ai_history_turns > 0:
        session.append(HISTORY_FIELD, stored_turn(question, answer), keep=settings.ai_history_turns)
    return answer


# The rules checker refuses this handler in a rule without `background: true`: a model can take longer than
# WeChat waits, and uWSGI's harakiri would cut it inline.
chat.background_only = True  # type: ignore[attr-defined]


def reset(message: BaseMessage, context: HandlerContext | None = None, session: Session | None = None) -> str:
    """The rules file's `handlers.ai_chat:reset` (e.g. `新对话`): forget the follower's chat history."""
    if session is not None:
        session.delete(HISTORY_FIELD)
    return RESET_TEXT
