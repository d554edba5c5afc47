"""The pure parts of the title/author search: what a follower's text asks for, reading Open Library's answer,
the card's cover and link."""

from __future__ import annotations

import pytest

from handlers.book_search import (
    PAGE_SIZE,
    Hit,
    Query,
    cache_key,
    cover_url,
    hit_card,
    hit_link,
    more_line,
    page_from_open_library,
    parse_query,
)
from handlers.books import BookSourceError

OPEN_LIBRARY = "https://openlibrary.org"


@pytest.mark.parametrize(("text", "query"), [
    ("查书 浪潮之巅", Query("q", "浪潮之巅")),
    ("  查书：  浪潮   之巅 ", Query("q", "浪潮 之巅")),
    ("作者 吴军", Query("author", "吴军")),
    ("作者吴军", Query("author", "吴军")),
    ("书名: The C Programming Language", Query("title", "The C Programming Language")),
    ("浪潮之巅", Query("q", "浪潮之巅")),  # no prefix: a book bot's default rule
    ("查书", None),
    ("   ", None),
])
def test_parse_query(text: str, query: Query | None) -> None:
    assert parse_query(text) == query


def test_an_open_library_answer_becomes_hits_and_odd_records_are_skipped() -> None:
    document = {"numFound": 1234, "docs": [
        {"key": "/works/OL27448W", "title": "The Lord of the Rings", "author_name": ["J.R.R. Tolkien"],
         "first_publish_year": 1954, "cover_i": 9255566, "isbn": ["9780261103252"]},
        {"key": "/works/OL1W", "title": ""},  # no title: not a hit
        "not a record",
        {"key": "/works/OL2W", "title": "无封面", "subtitle": "副题", "author_name": "not a list", "cover_i": True,
         "cover_edition_key": "OL5M", "isbn": ["bad", "7111547426"]},
    ]}
    page = page_from_open_library(document)
    assert page.found == 1234 and len(page.hits) == 2
    first, second = page.hits
    assert (first.title, first.authors, first.year, first.cover_id) == (
        "The Lord of the Rings", ("J.R.R. Tolkien",), "1954", 9255566)
    assert (second.title, second.authors, second.cover_id, second.edition, second.isbn) == (
        "无封面：副题", (), 0, "OL5M", "7111547426")


@pytest.mark.parametrize("document", [[], {"docs": "x"}, {"numFound": 3}, "text"])
def test_an_answer_without_docs_is_a_source_error(document: object) -> None:
    with pytest.raises(BookSourceError):
        page_from_open_library(document)


def test_a_page_never_holds_more_than_page_size_hits_and_found_is_at_least_the_hits() -> None:
    document = {"numFound": "many", "docs": [{"key": f"/works/OL{n}W", "title": f"T{n}"} for n in range(50)]}
    page = page_from_open_library(document)
    assert len(page.hits) == PAGE_SIZE and page.found == PAGE_SIZE


def test_covers_come_from_covers_openlibrary_org_or_the_sources_own_host() -> None:
    assert cover_url(Hit("/works/OL1W", "t", cover_id=42), OPEN_LIBRARY) == \
        "https://covers.openlibrary.org/b/id/42-L.jpg"
    assert cover_url(Hit("/works/OL1W", "t", edition="OL5M"), OPEN_LIBRARY) == \
        "https://covers.openlibrary.org/b/olid/OL5M-L.jpg"
    assert cover_url(Hit("/works/OL1W", "t", isbn="7111547426"), OPEN_LIBRARY) == \
        "https://covers.openlibrary.org/b/isbn/7111547426-L.jpg"
    assert cover_url(Hit("/works/OL1W", "t"), OPEN_LIBRARY) == ""
    assert cover_url(Hit("/works/OL1W", "t", cover_id=42), "http://127.0.0.1:8081") == \
        "http://127.0.0.1:8081/covers/b/id/42-L.jpg"


def test_a_link_is_the_work_page_or_the_search_page_for_an_odd_key() -> None:
    query = Query("title", "三体 & co")
    assert hit_link(Hit("/works/OL1W", "t"), query, OPEN_LIBRARY) == "https://openlibrary.org/works/OL1W"
    assert hit_link(Hit("https://evil.example/x", "t"), query, OPEN_LIBRARY) == \
        "https://openlibrary.org/search?title=%E4%B8%89%E4%BD%93%20%26%20co"


def test_the_card_says_how_many_more_there_are() -> None:
    assert more_line(0, 5) == "第 1 本，还有 4 本 · 回复「下一本」看下一本"
    assert more_line(4, 5) == "第 5 本，这是最后一本了。"
    assert more_line(0, 1) == "只找到这一本。"
    (card,) = hit_card(Hit("/works/OL1W", "浪潮之巅", ("吴军",), "2011", 9001), 0, 2, Query("q", "浪潮之巅"),
                       OPEN_LIBRARY)
    assert card["description"] == "作者：吴军\n首次出版：2011\n第 1 本，还有 1 本 · 回复「下一本」看下一本"


def test_the_cache_key_holds_no_query_text_and_folds_case() -> None:
    key = cache_key(Query("q", "Roald Dahl"), 0)
    assert "Dahl" not in key and key == cache_key(Query("q", "roald dahl"), 0) != cache_key(Query("q", "roald dahl"), 1)
