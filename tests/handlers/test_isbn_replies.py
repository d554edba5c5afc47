"""A follower sends an ISBN: the card (or a helpful text) as the passive reply when the book source is quick,
`success` and then a customer-service message when it is slower than the deadline."""

from __future__ import annotations

import re
import time

import redis
from stdnum import isbn

from devstack.processes import AppServer, RedisServer
from sandbox.server import SandboxServer
from tests.conftest import TEST_AES_KEY, TEST_APPID, TEST_TOKEN
from tests.slow_replies.book_source import BookSource, new_isbn13
from tests.slow_replies.conftest import (
    SLOW,
    delivered_to,
    job_id_of,
    new_follower,
    send,
    text_message,
    wait_until,
    wait_until_settled,
)
from tests.wechat_requests import open_encrypted_reply, reply_fields


def test_a_valid_isbn_gets_the_book_card_as_the_passive_reply(app: AppServer, wechat: SandboxServer,
                                                              book_source: BookSource) -> None:
    openid, number = new_follower(wechat), new_isbn13()
    response = send(app, text_message(openid, f"ISBN {isbn.format(number)}"), mode="safe")
    assert response.status_code == 200
    reply = open_encrypted_reply(response.text, TEST_TOKEN, TEST_AES_KEY, TEST_APPID)
    assert reply["MsgType"] == "news" and reply["ArticleCount"] == "1" and reply["ToUserName"] == openid
    card = reply["Articles"]["item"]
    assert card["Title"] == f"测试之书 {number[-4:]}：第二版"
    assert "作者：王小波、Roald Dahl" in card["Description"] and "出版社：机械工业出版社" in card["Description"]
    assert "出版年份：2016" in card["Description"]
    assert card["PicUrl"] == f"{book_source.url}/covers/{number}-L.jpg"
    assert card["Url"] == f"{book_source.url}/books/OL{number}M/a_book"
    assert delivered_to(wechat, openid) == []  # answered passively: never sent again


def test_the_same_book_by_its_isbn10_with_spaces_comes_from_the_cache(app: AppServer, wechat: SandboxServer,
                                                                       book_source: BookSource,
                                                                       redis_server: RedisServer) -> None:
    openid, number = new_follower(wechat), new_isbn13()
    first = reply_fields(send(app, text_message(openid, number)).text)
    isbn10 = " ".join(isbn.format(isbn.to_isbn10(number)).split("-"))
    second = reply_fields(send(app, text_message(openid, isbn10)).text)
    assert first["Articles"]["item"]["Title"] == second["Articles"]["item"]["Title"]
    assert book_source.requests_for(number) == 1
    ttl = redis.Redis.from_url(redis_server.url).ttl(f"wechat:books:isbn:{number}")
    assert 6 * 86400 < ttl <= 7 * 86400


def test_a_wrong_check_digit_gets_a_helpful_text_and_no_lookup(app: AppServer, wechat: SandboxServer,
                                                              book_source: BookSource) -> None:
    openid, number = new_follower(wechat), new_isbn13()
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    reply = reply_fields(send(app, text_message(openid, wrong)).text)
    assert reply["MsgType"] == "text"
    assert "校验位不对" in reply["Content"] and f"最后一位应是 {number[-1]}" in reply["Content"]
    assert book_source.requests_for(wrong) == 0 and book_source.requests_for(number) == 0


def test_an_unknown_isbn_gets_a_not_found_text_and_the_miss_is_cached_for_an_hour(
    app: AppServer, wechat: SandboxServer, book_source: BookSource, redis_server: RedisServer
) -> None:
    openid, number = new_follower(wechat), new_isbn13()
    book_source.missing(number)
    for _ in range(2):
        reply = reply_fields(send(app, text_message(openid, number)).text)
        assert reply["MsgType"] == "text" and "没有找到" in reply["Content"] and isbn.format(number) in reply["Content"]
    assert book_source.requests_for(number) == 1
    assert 0 < redis.Redis.from_url(redis_server.url).ttl(f"wechat:books:isbn:{number}") <= 3600


def test_a_source_that_is_down_gets_a_try_later_text_and_is_asked_again_next_time(
    app: AppServer, wechat: SandboxServer, book_source: BookSource
) -> None:
    openid, number = new_follower(wechat), new_isbn13()
    book_source.down(number)
    reply = reply_fields(send(app, text_message(openid, number)).text)
    assert reply["MsgType"] == "text" and "暂时连不上" in reply["Content"]
    book_source.found(number)
    reply = reply_fields(send(app, text_message(openid, number)).text)
    assert reply["MsgType"] == "news"
    assert book_source.requests_for(number) == 2


def test_a_source_slower_than_the_deadline_answers_success_in_time_then_the_card_arrives_once(
    app: AppServer, wechat: SandboxServer, book_source: BookSource, redis_server: RedisServer
) -> None:
    openid, number = new_follower(wechat), new_isbn13()
    book_source.slow(number, SLOW)
    xml = text_message(openid, number)
    started = time.monotonic()
    response = send(app, xml)
    answered = time.monotonic()
    assert response.status_code == 200 and response.text == "success"
    # Answered before the source did (so without waiting for it), and well inside WeChat's 5 s.
    assert number not in book_source.answered_at or answered < book_source.answered_at[number]
    assert answered - started < 4.0
    deferred = re.compile(r"rule=keywords\[\d+\]:regex:\S+ dedupe=first reply=deferred")
    assert wait_until(lambda: deferred.search(app.process.log_text()), timeout=5)
    assert wait_until(lambda: delivered_to(wechat, openid), timeout=15)
    wait_until_settled(redis_server, job_id_of(xml))  # past the last moment a (wrong) second delivery could come
    [message] = delivered_to(wechat, openid)
    assert message["msgtype"] == "news" and len(message["news"]["articles"]) == 1
    article = message["news"]["articles"][0]
    assert article["title"] == f"测试之书 {number[-4:]}：第二版"
    assert article["picurl"].endswith(f"{number}-L.jpg") and article["url"].startswith(book_source.url)
    assert "出版社：机械工业出版社" in article["description"]


def test_a_source_answering_100k_nested_brackets_gets_the_try_later_text_not_silence(
    app: AppServer, wechat: SandboxServer, book_source: BookSource
) -> None:
    """json raises RecursionError (not a ValueError) on such nesting; the follower must still get an answer."""
    openid, number = new_follower(wechat), new_isbn13()
    book_source.raw(number, b"[" * 100_000)
    reply = reply_fields(send(app, text_message(openid, number)).text)
    assert reply["MsgType"] == "text" and "暂时连不上" in reply["Content"]
    assert book_source.requests_for(number) == 1
