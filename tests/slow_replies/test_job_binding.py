"""Issue 13, item 2 for background replies: the job id follows the retry-cache key (account, sender,
MsgId), so two followers whose messages carry the same MsgId each get their own card, never the other's."""

from __future__ import annotations

import re

from devstack.processes import AppServer
from sandbox.server import SandboxServer
from tests.slow_replies.book_source import BookSource, new_isbn13
from tests.slow_replies.conftest import delivered_to, new_follower, send, text_message
from tests.waiting import wait_until
from tests.wechat_requests import fresh_id, reply_fields


def with_msg_id(xml: bytes, msg_id: int) -> bytes:
    return re.sub(rb"<MsgId>\d+</MsgId>", b"<MsgId>%d</MsgId>" % msg_id, xml)


def title(number: str) -> str:
    return f"测试之书 {number[-4:]}：第二版"


def test_a_passive_card_goes_only_to_the_follower_who_asked(app: AppServer, wechat: SandboxServer) -> None:
    msg_id = fresh_id()
    victim, other = new_follower(wechat), new_follower(wechat)
    victim_isbn, other_isbn = new_isbn13(), new_isbn13()
    victim_reply = reply_fields(send(app, with_msg_id(text_message(victim, victim_isbn), msg_id)).text)
    assert victim_reply["ToUserName"] == victim and victim_reply["Articles"]["item"]["Title"] == title(victim_isbn)
    other_reply = reply_fields(send(app, with_msg_id(text_message(other, other_isbn), msg_id)).text)
    assert other_reply["ToUserName"] == other and other_reply["Articles"]["item"]["Title"] == title(other_isbn)


def test_slow_cards_for_two_followers_with_the_same_msgid_each_reach_their_follower(
    app: AppServer, wechat: SandboxServer, book_source: BookSource
) -> None:
    msg_id = fresh_id()
    victim, other = new_follower(wechat), new_follower(wechat)
    victim_isbn, other_isbn = new_isbn13(), new_isbn13()
    book_source.slow(victim_isbn, 2.0)
    book_source.slow(other_isbn, 2.0)
    assert send(app, with_msg_id(text_message(victim, victim_isbn), msg_id)).text == "success"
    assert send(app, with_msg_id(text_message(other, other_isbn), msg_id)).text == "success"
    wait_until(lambda: delivered_to(wechat, victim) and delivered_to(wechat, other), timeout=20)
    for openid, number in ((victim, victim_isbn), (other, other_isbn)):
        cards = [body["news"]["articles"][0]["title"] for body in delivered_to(wechat, openid)]
        assert cards == [title(number)], (openid, cards)
