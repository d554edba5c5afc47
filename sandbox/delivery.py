"""Deliver a push over HTTP the way WeChat does: wait up to 5 s, re-send the same request on no answer."""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests

from sandbox.messages import Push

WECHAT_TIMEOUT = 5.0
WECHAT_RETRIES = 3


@dataclass(frozen=True)
class Attempt:
    """One HTTP request and what came of it."""

    number: int
    elapsed: float
    status: int | None = None
    reason: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    failure: str = ""  # why WeChat counts this as "no answer"; empty when it answered
    timed_out: bool = False

    @property
    def answered(self) -> bool:
        return not self.failure

    def header(self, name: str) -> str:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return ""


@dataclass(frozen=True)
class Delivery:
    """Every attempt at delivering one request; the last one is what WeChat acts on."""

    attempts: tuple[Attempt, ...]
    timeout: float

    @property
    def final(self) -> Attempt:
        return self.attempts[-1]

    @property
    def answered(self) -> bool:
        return self.final.answered

    @property
    def answered_by(self) -> int | None:
        """Which delivery (1 = the first, 2 and up = WeChat's re-sends of the same bytes) got the answer."""
        return self.final.number if self.final.answered else None

    @property
    def status(self) -> int | None:
        return self.final.status

    @property
    def body(self) -> bytes:
        return self.final.body

    @property
    def elapsed(self) -> float:
        return self.final.elapsed

    @property
    def content_type(self) -> str:
        return self.final.header("Content-Type")


def _attempt(
    method: str, url: str, body: bytes | None, headers: dict[str, str], timeout: float, number: int
) -> Attempt:
    started = time.monotonic()
    try:
        response = requests.request(
            method, url, data=body, headers=headers, timeout=(timeout, timeout), allow_redirects=False
        )
    except requests.Timeout:
        return Attempt(number, time.monotonic() - started, failure=f"no answer within {timeout:g} s", timed_out=True)
    except requests.ConnectionError as error:
        reason = "connection refused" if "refused" in str(error).lower() else "connection error"
        return Attempt(number, time.monotonic() - started, failure=f"{reason} ({type(error).__name__})")
    except requests.RequestException as error:  # a body cut short, a broken chunk, ...
        return Attempt(number, time.monotonic() - started, failure=f"broken answer ({type(error).__name__})")
    elapsed = time.monotonic() - started
    status = response.status_code
    failure = ""
    # A read timeout applies between bytes; WeChat's 5 s is for the whole answer.
    timed_out = elapsed > timeout
    if timed_out:
        failure = f"the answer took {elapsed:.1f} s, over {timeout:g} s"
    elif status >= 500:
        failure = f"HTTP {status} {response.reason}"
    return Attempt(
        number,
        elapsed,
        status,
        response.reason or "",
        tuple(response.headers.items()),
        response.content,
        failure,
        timed_out,
    )


def with_query(url: str, query_string: str) -> str:
    return url + ("&" if "?" in url else "?") + query_string


def send(url: str, push: Push, *, timeout: float = WECHAT_TIMEOUT, retries: int = WECHAT_RETRIES) -> Delivery:
    """POST `push` to `url`; on timeout, connection error or 5xx re-send the same request `retries` times."""
    target = with_query(url, push.query_string)
    attempts: list[Attempt] = []
    for number in range(1, retries + 2):
        attempt = _attempt("POST", target, push.body, dict(push.headers), timeout, number)
        attempts.append(attempt)
        if attempt.answered:
            break
    return Delivery(tuple(attempts), timeout)


def get(url: str, query_string: str, *, timeout: float = WECHAT_TIMEOUT) -> Delivery:
    """One GET, as the console's "submit" button makes it (no retry)."""
    attempt = _attempt("GET", with_query(url, query_string), None, {"Accept": "*/*"}, timeout, 1)
    return Delivery((attempt,), timeout)
