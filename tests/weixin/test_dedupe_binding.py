"""Issue 13, item 2: a stored reply belongs to one account, one sender and one message.

The retry-cache key (and the background job id derived from it) covers ToUserName, FromUserName and
MsgId, so a request that carries another follower's MsgId never gets that follower's reply."""

from __future__ import annotations

import pytest

from slow_replies.jobs import job_id_for
from tests.conftest import TEST_AES_KEY, TEST_APPID, TEST_TOKEN
from tests.wechat_requests import (
    deliver,
    fixture,
    fresh_id,
    open_encrypted_reply,
    parsed_message,
    prepare,
    reply_fields,
)
from weixin.messages import parse, retry_key

VICTIM = "oVictim000000000000000000001"
OTHER = "oOther0000000000000000000002"
ACCOUNT = "gh_10f6c3c3ac5a"


def text_xml(sender: str, content: str, msg_id: str, account: str = ACCOUNT) -> bytes:
    xml = fixture("messages/text.xml").decode()
    xml = xml.replace("oFollower0000000000000000001", sender).replace("gh_10f6c3c3ac5a", account)
    xml = xml.replace("微博", content).replace("6054768590064713728", msg_id)
    return xml.encode()


def parsed(sender: str, msg_id: str = "6054768590064713728", account: str = ACCOUNT, content: str = "hi"):
    return parsed_message(text_xml(sender, content, msg_id, account))


# --- the key (pure) ------------------------------------------------------------------------------


def test_the_message_key_covers_account_sender_and_msgid() -> None:
    victim = retry_key("wxapp", parsed(VICTIM))
    assert retry_key("wxapp", parsed(VICTIM, content="a retry")) == victim  # WeChat's retry: the same key
    others = {
        retry_key("wxapp", parsed(OTHER)),  # another follower, the same MsgId
        retry_key("wxapp", parsed(VICTIM, account="gh_000000000001")),  # another account behind one AppID
        retry_key("wxapp", parsed(VICTIM, msg_id="6054768590064713729")),  # another message
        retry_key("wxother", parsed(VICTIM)),  # another AppID
    }
    assert victim not in others and len(others) == 4


def test_the_message_key_is_short_and_holds_no_openid_or_odd_text() -> None:
    odd_account = "gh_" + "x" * 5000 + "\n:*?"
    for key in (
        retry_key("wxapp", parsed(VICTIM)),
        retry_key("", parsed(VICTIM)),
        retry_key("", parsed(VICTIM, account=odd_account)),
        retry_key("wxapp", parsed_message(fixture("events/view.xml"))),
    ):
        assert key.startswith("wechat:msg:") and len(key) <= 120, key
        assert key.isascii() and key.isprintable() and " " not in key, key
        assert VICTIM not in key and "oFollower" not in key and "xxxx" not in key
    assert retry_key("wxapp", parsed(VICTIM)).startswith("wechat:msg:wxapp:id:6054768590064713728:")


@pytest.mark.parametrize("msg_id", ["٤٧١١", "４７１１", "4711\n", "+4711", " 4711", "1" * 25])
def test_a_msgid_that_is_not_ascii_digits_is_not_used_as_a_message_id(msg_id: str) -> None:
    """str.isdigit() accepts '٤' (Arabic-Indic) and '４' (full-width): such a MsgId is no WeChat MsgId, and
    it must not end up in a key name; the message is keyed by its digest, as an event is."""
    fields = dict(parsed(VICTIM).fields, MsgId=msg_id)  # as the endpoint parses it: no stripping
    key = retry_key("wxapp", parse(fields))
    assert key.isascii() and ":id:" not in key, key
    assert key != retry_key("wxapp", parse(dict(fields, FromUserName=OTHER)))


def test_background_job_ids_follow_the_same_key() -> None:
    victim = job_id_for(retry_key(TEST_APPID, parsed(VICTIM)))
    assert victim == job_id_for(retry_key(TEST_APPID, parsed(VICTIM)))
    assert victim != job_id_for(retry_key(TEST_APPID, parsed(OTHER)))


# --- through uWSGI and Redis -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def weixin(start_app) -> str:
    return start_app().url + "/weixin"  # the shipped replies.yaml: its default echoes the text


def fields_of(response, mode: str) -> dict:
    assert response.status_code == 200, response.text
    if mode == "plain":
        return reply_fields(response.text)
    return open_encrypted_reply(response.text, TEST_TOKEN, TEST_AES_KEY, TEST_APPID)


@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_another_follower_with_the_victims_msgid_never_gets_the_victims_reply(weixin: str, mode: str) -> None:
    msg_id = str(fresh_id())
    victim_request = prepare(text_xml(VICTIM, "我的订单号 4711", msg_id), TEST_TOKEN, mode, TEST_AES_KEY, TEST_APPID)
    victim_reply = fields_of(deliver(weixin, *victim_request), mode)
    assert victim_reply["ToUserName"] == VICTIM and "4711" in victim_reply["Content"]

    other_request = prepare(text_xml(OTHER, "我的快递单号 0815", msg_id), TEST_TOKEN, mode, TEST_AES_KEY, TEST_APPID)
    other_reply = fields_of(deliver(weixin, *other_request), mode)
    assert other_reply["ToUserName"] == OTHER
    assert "4711" not in other_reply["Content"] and other_reply["Content"] == "我的快递单号 0815"

    # WeChat's own retry of the victim's message (the same bytes) still gets the victim's stored reply.
    retried = fields_of(deliver(weixin, *victim_request), mode)
    assert retried["ToUserName"] == VICTIM and retried["Content"] == victim_reply["Content"]
