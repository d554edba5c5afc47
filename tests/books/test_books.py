"""books.py: ISBN checks, Open Library's JSON as a card, the Redis cache, and asking a local source over HTTP."""

from __future__ import annotations

import pytest
import redis

from books import (
    UNAVAILABLE_TEXT,
    Book,
    BookCache,
    BookSourceError,
    book_card,
    book_from_open_library,
    checksum_text,
    fetch_book,
    parse_isbn,
)
from processes import free_port
from tests.slow_replies.book_source import BookSource, new_isbn13


@pytest.mark.parametrize(
    ("text", "isbn13"),
    [
        ("9780140328721", "9780140328721"),
        ("978-0-14-032872-1", "9780140328721"),
        ("978 0 14 032872 1", "9780140328721"),
        ("0140328726", "9780140328721"),
        ("0-14-032872-6", "9780140328721"),
        ("ISBN 0-8044-2957-X", "9780804429573"),
        ("isbn-13：978-7-111-54742-6", "9787111547426"),
        ("  ISBN: 711154742x ", "9787111547426"),
    ],
)
def test_isbn_10_and_13_with_or_without_hyphens_spaces_and_a_label_are_valid(text: str, isbn13: str) -> None:
    check = parse_isbn(text)
    assert (check.isbn13, check.problem) == (isbn13, None)


@pytest.mark.parametrize(("text", "expected"), [("9780140328722", "1"), ("0-14-032872-X", "6"),
                                                ("0804429571", "X")])
def test_a_wrong_check_digit_is_named_with_the_one_the_other_digits_call_for(text: str, expected: str) -> None:
    check = parse_isbn(text)
    assert (check.problem, check.expected_check, check.isbn13) == ("checksum", expected, None)
    assert f"最后一位应是 {expected}" in checksum_text(check) and text in checksum_text(check)


@pytest.mark.parametrize("text", ["12345", "1234567890123", "hello", "97801403287211"])
def test_text_that_is_not_an_isbn_at_all_is_a_format_problem(text: str) -> None:
    assert parse_isbn(text).problem == "format"


OPEN_LIBRARY_ANSWER = {
    "ISBN:9780140328721": {
        "url": "https://openlibrary.org/books/OL7353617M/Fantastic_Mr._Fox",
        "key": "/books/OL7353617M",
        "title": "Fantastic Mr. Fox",
        "authors": [{"url": "https://openlibrary.org/authors/OL34184A/Roald_Dahl", "name": "Roald Dahl"}],
        "publishers": [{"name": "Puffin"}],
        "publish_date": "October 1, 1988",
        "cover": {
            "small": "https://covers.openlibrary.org/b/id/8739161-S.jpg",
            "medium": "https://covers.openlibrary.org/b/id/8739161-M.jpg",
            "large": "https://covers.openlibrary.org/b/id/8739161-L.jpg",
        },
    }
}


def test_open_library_json_becomes_one_news_card() -> None:
    book = book_from_open_library(OPEN_LIBRARY_ANSWER, "9780140328721")
    assert book == Book("9780140328721", "Fantastic Mr. Fox", ("Roald Dahl",), ("Puffin",), "1988",
                        "https://covers.openlibrary.org/b/id/8739161-L.jpg",
                        "https://openlibrary.org/books/OL7353617M/Fantastic_Mr._Fox")
    [card] = book_card(book, "https://openlibrary.org")
    assert card["title"] == "Fantastic Mr. Fox" and card["picurl"].endswith("-L.jpg")
    assert card["description"] == "作者：Roald Dahl\n出版社：Puffin\n出版年份：1988\nISBN：978-0-14-032872-1"


def test_a_sparse_record_still_makes_a_card_linking_to_the_source() -> None:
    book = book_from_open_library({"ISBN:9780140328721": {"title": "Untitled?", "cover": "broken"}}, "9780140328721")
    [card] = book_card(book, "https://openlibrary.org")
    assert card["url"] == "https://openlibrary.org/isbn/9780140328721" and card["picurl"] == ""


def test_an_empty_answer_is_not_found_and_a_non_object_is_a_source_error() -> None:
    assert book_from_open_library({}, "9780140328721") is None
    with pytest.raises(BookSourceError):
        book_from_open_library(["not", "an", "object"], "9780140328721")


def test_the_cache_keeps_books_a_week_and_misses_an_hour(redis_client: redis.Redis) -> None:
    cache = BookCache(redis_client)
    book = book_from_open_library(OPEN_LIBRARY_ANSWER, "9780140328721")
    assert cache.get("9780140328721") == (False, None)
    cache.put("9780140328721", book)
    cache.put("9787111547426", None)
    assert cache.get("9780140328721") == (True, book)
    assert cache.get("9787111547426") == (True, None)
    assert redis_client.ttl("wechat:books:isbn:9780140328721") > 6 * 86400
    assert 0 < redis_client.ttl("wechat:books:isbn:9787111547426") <= 3600


def test_fetch_asks_the_documented_url_and_reports_a_source_that_cannot_answer() -> None:
    source = BookSource().start()
    try:
        found, missing, down = new_isbn13(), new_isbn13(), new_isbn13()
        source.missing(missing)
        source.down(down)
        assert fetch_book(found, source.url).title.startswith("测试之书")
        assert fetch_book(missing, source.url) is None
        with pytest.raises(BookSourceError):
            fetch_book(down, source.url)
    finally:
        source.stop()
    with pytest.raises(BookSourceError, match="ConnectionError"):
        fetch_book(found, f"http://127.0.0.1:{free_port()}")
    assert "稍后" in UNAVAILABLE_TEXT or "过几分钟" in UNAVAILABLE_TEXT
