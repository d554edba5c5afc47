"""A fake OpenAI-compatible chat model for tests and `make run`: `POST /v1/chat/completions`, `GET /v1/models`.

Served by the sandbox's HTTP server beside the fake WeChat API (sandbox/platform.py hands it every path under
/v1/). Deterministic: the answer to a question is `第N轮：你说的是「…」` where N counts the user messages of the
request (the history plus the question), so a test sees whether the history was sent. Checks the Bearer key
(401 otherwise, without quoting it back). Faults, by a word in the question or by the control endpoint:

  in the question        effect
  长文                    a long answer (LONG_ANSWER_CHARS characters, numbered paragraphs `【第k段】`)
  #401 #429 #500         that HTTP error, with the OpenAI error body
  #超时 / #timeout        no answer for `hang_seconds` (default 30): the client's timeout fires first
  #空 / #empty            an empty answer (finish_reason stop)
  #过滤 / #filter         an empty answer with finish_reason content_filter

Control (JSON, under the sandbox's /sandbox/ endpoints; never delayed or faulted):
  GET  /sandbox/chat      {"requests": [the last requests: model, max_tokens, messages], "count": n, ...}
  POST /sandbox/chat/configure {"latency": s, "faults": ["429", ...] (the next calls, in order), "long": bool,
                           "hang_seconds": s, "api_key": KEY}; each field optional
The sandbox's `reset` forgets the requests and the settings too.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from typing import Any

Response = tuple[int, dict | str, dict]

DEFAULT_AI_KEY = "sandbox-ai-key"  # a public, made-up key: `make run` and the tests use it
SANDBOX_MODEL = "sandbox-chat"
LONG_ANSWER_CHARS = 1500
LONG_ANSWER_WORD = "长文"
DEFAULT_HANG_SECONDS = 30.0
KEPT_REQUESTS = 100  # the last requests kept for inspection
FAULTS = ("401", "429", "500", "timeout", "empty", "filter")
# Trigger words in the question, for each fault.
FAULT_WORDS = {
    "#401": "401", "#429": "429", "#500": "500", "#超时": "timeout", "#timeout": "timeout",
    "#空": "empty", "#empty": "empty", "#过滤": "filter", "#filter": "filter",
}
JSON_HEADERS = {"Content-Type": "application/json"}

_ERRORS = {
    "401": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "code": "invalid_api_key"},
    "429": {"message": "Rate limit reached for requests.", "type": "requests", "code": "rate_limit_exceeded"},
    "500": {"message": "The server had an error while processing your request.", "type": "server_error",
            "code": None},
}


def _error(status: int, message: str, type: str = "invalid_request_error", code: str | None = None) -> Response:
    """OpenAI's error body (`type` and `code` as OpenAI names them)."""
    return status, {"error": {"message": message, "type": type, "param": None, "code": code}}, JSON_HEADERS


def user_turns(messages: list[dict]) -> int:
    return sum(1 for message in messages if message.get("role") == "user")


def last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # the content-parts form: [{"type": "text", "text": ...}]
                return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
            return str(content or "")
    return ""


def answer_for(messages: list[dict]) -> str:
    """The deterministic answer to a request's messages."""
    return f"第{user_turns(messages)}轮：你说的是「{last_user_text(messages)}」"


def long_answer(chars: int = LONG_ANSWER_CHARS) -> str:
    """Numbered paragraphs up to `chars` characters, so that a test can check the order of the parts."""
    paragraphs: list[str] = []
    total = 0
    number = 0
    while total < chars:
        number += 1
        paragraph = f"【第{number}段】这是一个很长的回答，用来检验长文本的拆分与分页是否按顺序到达。"
        paragraphs.append(paragraph)
        total += len(paragraph) + 1
    return "\n".join(paragraphs)


def fault_in(text: str) -> str | None:
    for word, fault in FAULT_WORDS.items():
        if word in text:
            return fault
    return None


class FakeChatModel:
    """The chat model's state behind one lock: its key, latency, queued faults and the requests it saw."""

    def __init__(self, api_key: str = DEFAULT_AI_KEY, model: str = SANDBOX_MODEL) -> None:
        self._initial_key = api_key
        self.model = model
        self._lock = threading.Lock()
        self._reset_state()

    def _reset_state(self) -> None:
        self._api_key = self._initial_key
        self._latency = 0.0
        self._hang_seconds = DEFAULT_HANG_SECONDS
        self._always_long = False
        self._faults: list[str] = []
        self._requests: list[dict] = []
        self._count = 0

    def reset(self) -> None:
        with self._lock:
            self._reset_state()

    # --- the API -----------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        if path == "/v1/models":
            if method != "GET":
                return _error(405, "use GET")
            if not self._key_accepted(headers):
                return _error(401, **_ERRORS["401"])
            return 200, {"object": "list", "data": [
                {"id": self.model, "object": "model", "created": 0, "owned_by": "sandbox"}]}, JSON_HEADERS
        if path != "/v1/chat/completions":
            return _error(404, f"the sandbox has no chat API at {path}", code="unknown_url")
        if method != "POST":
            return _error(405, "use POST")
        if not self._key_accepted(headers):
            return _error(401, **_ERRORS["401"])
        try:
            request = json.loads(body.decode("utf-8"))
            messages = request["messages"]
            if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
                raise ValueError("messages must be a non-empty list of objects")
            model = str(request["model"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
            return _error(400, f"bad request: {error}")
        question = last_user_text(messages)
        with self._lock:
            self._count += 1
            self._requests.append({"model": model, "max_tokens": request.get("max_tokens"), "messages": messages})
            del self._requests[:-KEPT_REQUESTS]
            fault = self._faults.pop(0) if self._faults else fault_in(question)
            latency, hang, always_long = self._latency, self._hang_seconds, self._always_long
        if latency > 0:
            time.sleep(latency)
        if fault == "timeout":
            time.sleep(hang)
        elif fault in _ERRORS:
            return _error(int(fault), **_ERRORS[fault])
        text, finish = answer_for(messages), "stop"
        if fault in ("empty", "filter"):
            text, finish = "", "stop" if fault == "empty" else "content_filter"
        elif always_long or LONG_ANSWER_WORD in question:
            text = long_answer()
        return 200, self._completion(model, text, finish, messages), JSON_HEADERS

    def _key_accepted(self, headers: dict[str, str]) -> bool:
        scheme, _, key = headers.get("authorization", "").partition(" ")
        with self._lock:
            expected = self._api_key
        return scheme.lower() == "bearer" and hmac.compare_digest(key.strip().encode(), expected.encode())

    def _completion(self, model: str, text: str, finish: str, messages: list[dict]) -> dict:
        prompt_chars = sum(len(str(message.get("content") or "")) for message in messages)
        return {
            "id": f"chatcmpl-sandbox-{self._count}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_chars, "completion_tokens": len(text),
                      "total_tokens": prompt_chars + len(text)},
        }

    # --- control -----------------------------------------------------------------------------

    def state(self) -> dict:
        with self._lock:
            return {
                "count": self._count,
                "requests": json.loads(json.dumps(self._requests)),
                "latency": self._latency,
                "faults": list(self._faults),
                "long": self._always_long,
                "hang_seconds": self._hang_seconds,
            }

    def requests(self) -> list[dict]:
        return list(self.state()["requests"])

    def configure(self, data: dict[str, Any]) -> None:
        """The control endpoint's settings (see the module docstring); ValueError/TypeError for bad input."""
        latency = float(data["latency"]) if "latency" in data else None
        hang = float(data["hang_seconds"]) if "hang_seconds" in data else None
        faults = [str(fault) for fault in data.get("faults", [])]
        for value in (latency, hang):
            if value is not None and not 0 <= value <= 600:
                raise ValueError("seconds must be 0 to 600")
        if any(fault not in FAULTS for fault in faults):
            raise ValueError(f"faults are among {', '.join(FAULTS)}")
        if "long" in data and not isinstance(data["long"], bool):
            raise TypeError("long must be true or false")
        if "api_key" in data and not (isinstance(data["api_key"], str) and data["api_key"]):
            raise TypeError("api_key must be a non-empty string")
        with self._lock:
            if latency is not None:
                self._latency = latency
            if hang is not None:
                self._hang_seconds = hang
            self._faults.extend(faults)
            if "long" in data:
                self._always_long = data["long"]
            if "api_key" in data:
                self._api_key = data["api_key"]
