"""A WeChat retry gets the bytes stored for the first delivery, never a new rendering: not after a hot
reload changed the rule in between, not with another CreateTime. Real uWSGI, real Redis."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.conftest import TEST_AES_KEY, TEST_APPID, TEST_TOKEN
from tests.wechat_requests import deliver, fixture, open_encrypted_reply, prepare, with_fresh_ids

FIRST_RULES = "keywords:\n  - match: retry-probe\n    reply: the first rules' answer\n"
SECOND_RULES = "keywords:\n  - match: retry-probe\n    reply: the edited rules' answer\n"


def probe() -> bytes:
    return with_fresh_ids(fixture("messages/text.xml").replace("微博".encode(), b"retry-probe"))


def wait_for_reply_containing(url: str, text: str, timeout: float = 10.0) -> None:
    """Send fresh plaintext messages until one is answered with `text` (the hot reload has happened)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        query, body = prepare(probe(), TEST_TOKEN)
        last = deliver(url, query, body).text
        if text in last:
            return
        time.sleep(0.1)
    raise AssertionError(f"no reply with {text!r} within {timeout}s; last: {last[:200]!r}")


@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_a_retry_after_a_hot_reload_gets_the_first_deliverys_stored_bytes(
    start_app, tmp_path: Path, mode: str
) -> None:
    replies = tmp_path / "replies.yaml"
    replies.write_text(FIRST_RULES, encoding="utf-8")
    app = start_app(REPLIES_FILE=str(replies))
    url = app.url + "/weixin"

    query, body = prepare(probe(), TEST_TOKEN, mode, TEST_AES_KEY, TEST_APPID)
    first = deliver(url, query, body)
    assert first.status_code == 200
    if mode == "plain":
        assert "the first rules' answer" in first.text

    replies.write_text(SECOND_RULES, encoding="utf-8")
    wait_for_reply_containing(url, "the edited rules' answer")

    retry = deliver(url, query, body)  # WeChat's retry: the same query and the same bytes
    assert retry.status_code == 200
    if mode == "plain":
        assert retry.text == first.text  # the stored reply, CreateTime and all
    else:
        # The envelope is made anew for each answer (its own random prefix); what it carries must be the same.
        assert open_encrypted_reply(retry.text, TEST_TOKEN, TEST_AES_KEY, TEST_APPID) == open_encrypted_reply(
            first.text, TEST_TOKEN, TEST_AES_KEY, TEST_APPID
        )


def test_a_retry_seconds_later_keeps_the_first_createtime(start_app, tmp_path: Path) -> None:
    replies = tmp_path / "replies.yaml"
    replies.write_text(FIRST_RULES, encoding="utf-8")
    app = start_app(REPLIES_FILE=str(replies))
    url = app.url + "/weixin"
    query, body = prepare(probe(), TEST_TOKEN, "plain")
    first = deliver(url, query, body)
    started = int(time.time())
    while int(time.time()) == started:  # the next second: a new rendering would carry another CreateTime
        time.sleep(0.05)
    assert requests.post(url, params=query, data=body, timeout=10).text == first.text
