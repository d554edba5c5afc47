"""handlers/books.py: ISBN checks, Open Library's JSON as a card, the Redis cache, and asking a local source
over HTTP."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devstack.processes import free_port
from handlers.books import (
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
from tests.slow_replies.book_source import HUGE_BYTES, BookSource, new_isbn13
from tests.waiting import wait_until


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


# --- a hostile or broken source (issue 13, item 13) -------------------------------------------


@pytest.fixture()
def book_source() -> Iterator[BookSource]:
    source = BookSource().start()
    yield source
    source.stop()


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "until-close"])
def test_a_huge_answer_is_a_source_error_without_reading_it_all(book_source: BookSource,
                                                                declare_length: bool) -> None:
    number = new_isbn13()
    book_source.huge(number, declare_length=declare_length)
    started = time.monotonic()
    with pytest.raises(BookSourceError, match="larger than"):
        fetch_book(number, book_source.url)
    assert time.monotonic() - started < 8.0  # stopped by the size cap, not by a deadline
    # We hung up: the source could not write its 10 MB to the end.
    wait_until(lambda: book_source.ended.get(number), timeout=10)
    assert book_source.completed[number] is False and book_source.bytes_sent[number] < HUGE_BYTES


@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_source_dripping_a_byte_every_half_second_is_cut_at_the_overall_deadline(book_source: BookSource,
                                                                                   part: str) -> None:
    number = new_isbn13()
    book_source.drip(number, part, seconds=30)
    started = time.monotonic()
    with pytest.raises(BookSourceError, match="deadline"):
        fetch_book(number, book_source.url)
    # The deadline is 10 s for the whole request; the drip would last 30 s. A generous bound.
    assert time.monotonic() - started < 20


def test_a_redirect_is_not_followed(book_source: BookSource) -> None:
    number, elsewhere = new_isbn13(), new_isbn13()
    book_source.redirect(number, to_isbn13=elsewhere)
    with pytest.raises(BookSourceError, match="HTTP 302"):
        fetch_book(number, book_source.url)
    assert book_source.requests_for(elsewhere) == 0


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b'{"a":' * 100_000, b"[" * 100_000 + b"]" * 100_000, b'{"ISBN:97', b"\xff\xfe{\x00",
     b"<html>oops</html>"],
    ids=["100k-open-brackets", "100k-nested-objects", "100k-deep-balanced", "truncated", "bad-utf", "html"],
)
def test_deeply_nested_or_malformed_json_is_a_source_error(book_source: BookSource, body: bytes) -> None:
    number = new_isbn13()
    book_source.raw(number, body)
    with pytest.raises(BookSourceError):
        fetch_book(number, book_source.url)


def test_a_script_link_and_a_cover_on_another_host_never_reach_the_card(book_source: BookSource) -> None:
    number = new_isbn13()
    book_source.record(number, url="javascript:alert(document.cookie)",
                       cover={"large": "http://evil.example/cover.jpg", "small": "javascript:alert(1)"})
    [card] = book_card(fetch_book(number, book_source.url), book_source.url)
    assert card["url"] == f"{book_source.url}/isbn/{number}"  # the source's own page for the ISBN
    assert card["picurl"] == ""
    other = new_isbn13()
    book_source.record(other, url="http://evil.example/book",
                       cover={"large": "http://evil.example/c.jpg", "medium": f"{book_source.url}/covers/M.jpg"})
    [card] = book_card(fetch_book(other, book_source.url), book_source.url)
    assert card["url"] == f"{book_source.url}/isbn/{other}"
    assert card["picurl"] == f"{book_source.url}/covers/M.jpg"  # the first cover on the source's host


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://openlibrary.org/books/OL7353617M/Fantastic_Mr._Fox", True),
        ("https://covers.openlibrary.org/b/id/8739161-L.jpg", True),
        ("http://openlibrary.org/books/OL7353617M", False),  # plain http from an https source
        ("http://covers.openlibrary.org/b/id/8739161-L.jpg", False),
        ("https://openlibrary.org.evil.example/books/OL1M", False),
        ("https://evil.example/openlibrary.org/", False),
        ("https://openlibrary.org@evil.example/", False),
        ("https://user@openlibrary.org/books/OL1M", False),
        ("https://openlibrary.org\\@evil.example/", False),
        ("https://openlibrary.org:8443/books/OL1M", False),
        ("//openlibrary.org/books/OL1M", False),
        ("/books/OL1M", False),
        ("javascript:alert(1)", False),
        ("JaVaScRiPt:alert(1)", False),
        ("data:text/html,<script>alert(1)</script>", False),
        (" https://openlibrary.org/books/OL1M", False),
        ("https://openlibrary.org/books/OL1M\n<script>", False),
        ("https://openlibrary.org/" + "a" * 3000, False),
    ],
    ids=lambda value: value[:48] if isinstance(value, str) else str(value),
)
def test_only_https_links_on_the_sources_hosts_are_kept_in_the_card(url: str, kept: bool) -> None:
    book = Book("9780140328721", "Fantastic Mr. Fox", cover=url, url=url)
    [card] = book_card(book, "https://openlibrary.org")
    assert card["url"] == (url if kept else "https://openlibrary.org/isbn/9780140328721")
    assert card["picurl"] == (url if kept else "")


def test_titles_and_names_from_the_source_are_length_capped(book_source: BookSource) -> None:
    number = new_isbn13()
    book_source.record(number, title="长" * 10_000, subtitle="副" * 10_000,
                       authors=[{"name": "名" * 10_000}] + [{"name": f"作者{i}"} for i in range(1000)],
                       publishers=[{"name": f"出版社{i}"} for i in range(1000)])
    book = fetch_book(number, book_source.url)
    [card] = book_card(book, book_source.url)
    assert len(card["title"]) == 128 and card["title"].endswith("…")
    lines = dict(line.split("：", 1) for line in card["description"].splitlines())
    assert len(lines["作者"]) <= 128 and lines["作者"].endswith("…")
    assert lines["出版社"] == "出版社0、出版社1、出版社2等"  # three names at most
    assert len(card["description"]) < 400
    # The shortened book is what the cache keeps, too.
    assert len(book.title) <= 128 and all(len(name) <= 128 for name in book.authors) and len(book.authors) <= 4


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.parametrize("stall", ["handshake", "headers"])
def test_over_tls_a_source_stalling_the_handshake_or_dripping_headers_is_cut_at_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stall: str
) -> None:
    """The deadline shuts the TCP socket under the TLS layer; each byte or wait alone is within a read timeout."""
    cert_path, key_path = _self_signed_certificate(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_path))  # the source is trusted: only time is at stake
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError):
            raw, _ = listener.accept()
            with raw:
                if stall == "headers":
                    connection = context.wrap_socket(raw, server_side=True)
                    connection.recv(4096)
                    connection.sendall(b"HTTP/1.1 200 OK\r\nX-Drip: ")
                    while not stop.wait(0.5):
                        connection.sendall(b"a")
                stop.wait(30)  # "handshake": accepted, never a byte of TLS

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    started = time.monotonic()
    try:
        with pytest.raises(BookSourceError, match="deadline"):
            fetch_book(new_isbn13(), f"https://127.0.0.1:{listener.getsockname()[1]}", deadline_seconds=2)
        assert time.monotonic() - started < 6  # cut at 2 s; the connect timeout alone is 3 s
    finally:
        stop.set()
        listener.close()
        server.join(10)
