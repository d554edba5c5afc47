"""The sandbox's book source: a small catalogue served in Open Library's shapes, so that the ISBN lookup and
the title/author search work offline (`make run` points BOOKS_API_BASE at the sandbox).

The catalogue is a fixture file (sandbox/catalogue/books.json): titles and authors of real books, Chinese
and English; the ids, cover numbers and most ISBNs are the sandbox's own (valid check digits), so a card
from here is a demo, not a reference. Served (FakeWeChat.handle mounts it; no state, no locks):

  GET /search.json?q=|title=|author=  [&limit=&page=|offset=]   Open Library's search API
  GET /api/books?bibkeys=ISBN:...&format=json&jscmd=data        Open Library's books API (the ISBN path)
  GET /covers/b/id|isbn|olid/<value>-S|M|L.jpg                  a generated cover (SVG; the path is
                                                                covers.openlibrary.org's shape)
  GET /works/<id>, /books/<id>, /isbn/<isbn>                    a small page for the book

Absolute URLs in answers use the request's Host (the sandbox listens on loopback over http).
"""

from __future__ import annotations

import html
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import quote

CATALOGUE_DIRECTORY = Path(__file__).resolve().parent / "catalogue"
DEFAULT_LIMIT = 100  # Open Library's default page size for search.json
MAX_LIMIT = 1000
COVER_SIZES = {"S": (60, 90), "M": (180, 270), "L": (360, 540)}
COVER_COLORS = ("#8e3b46", "#3b6e8e", "#4d7c3a", "#7a5c2e", "#5b3f86", "#2e7a72", "#9a4f1f", "#36454f")
SVG_HEADERS = {"Content-Type": "image/svg+xml", "Cache-Control": "max-age=86400"}
HTML_HEADERS = {"Content-Type": "text/html; charset=utf-8"}
_COVER_PATH = re.compile(r"/covers/b/(id|isbn|olid)/([0-9A-Za-z]+)-([SML])\.jpg")
_PAGE_PATH = re.compile(r"/(works|books|isbn)/([0-9A-Za-z]+)(?:/[^/]*)?")

Response = tuple[int, dict | str, dict]


@dataclass(frozen=True)
class CatalogueBook:
    work: str  # OL...W
    edition: str  # OL...M
    cover: int
    title: str
    subtitle: str
    authors: tuple[str, ...]
    year: int
    publisher: str
    isbn13: str

    @property
    def isbn10(self) -> str:
        if not self.isbn13.startswith("978"):
            return ""
        body = self.isbn13[3:12]
        check = sum((10 - position) * int(digit) for position, digit in enumerate(body)) % 11
        return body + ("X" if (11 - check) % 11 == 10 else str((11 - check) % 11))

    def words(self) -> str:
        return " ".join((self.title, self.subtitle, *self.authors)).casefold()


def load_catalogue(path: Path = CATALOGUE_DIRECTORY / "books.json") -> tuple[CatalogueBook, ...]:
    records = json.loads(path.read_text(encoding="utf-8"))
    return tuple(CatalogueBook(**{**record, "authors": tuple(record["authors"])}) for record in records)


def _matches(needle: str, haystack: str) -> bool:
    """Every word of `needle` is in `haystack` (both folded): `吴军 浪潮` finds 浪潮之巅 by 吴军."""
    words = needle.casefold().split()
    return bool(words) and all(word in haystack for word in words)


def _number(query: dict[str, str], name: str, default: int) -> int:
    try:
        return max(0, int(query.get(name, "")))
    except ValueError:
        return default


class BookCatalogue:
    """Answers the book paths from the catalogue; `handle` returns None for any other path."""

    def __init__(self, books: tuple[CatalogueBook, ...] | None = None) -> None:
        self.books = books if books is not None else load_catalogue()
        self._cover = Template((CATALOGUE_DIRECTORY / "cover.svg").read_text(encoding="utf-8"))
        self._page = Template((CATALOGUE_DIRECTORY / "book.html").read_text(encoding="utf-8"))

    def handle(self, path: str, query: dict[str, str], host: str) -> Response | None:
        base = f"http://{host or '127.0.0.1'}"
        if path == "/search.json":
            return self._search(query, base)
        if path == "/api/books":
            return self._api_books(query, base)
        cover = _COVER_PATH.fullmatch(path)
        if cover:
            return self._cover_image(*cover.groups())
        page = _PAGE_PATH.fullmatch(path)
        if page:
            return self._book_page(*page.groups(), base)
        return None

    def find(self, kind: str, value: str) -> CatalogueBook | None:
        for book in self.books:
            if (kind == "id" and str(book.cover) == value) or (kind == "olid" and book.edition == value) or (
                kind in ("isbn", "bibkey") and value.upper() in (book.isbn13, book.isbn10)) or (
                kind == "works" and book.work == value) or (kind == "books" and book.edition == value):
                return book
        return None

    def _search(self, query: dict[str, str], base: str) -> Response:
        q, title, author = (query.get(name, "").strip() for name in ("q", "title", "author"))
        if not (q or title or author):
            return 400, {"error": "The search needs q, title or author"}, {}
        hits = [
            book for book in self.books
            if (not q or _matches(q, book.words()))
            and (not title or _matches(title, f"{book.title} {book.subtitle}".casefold()))
            and (not author or _matches(author, " ".join(book.authors).casefold()))
        ]
        limit = min(_number(query, "limit", DEFAULT_LIMIT) or DEFAULT_LIMIT, MAX_LIMIT)
        page = max(1, _number(query, "page", 1))
        start = _number(query, "offset", 0) if "offset" in query else (page - 1) * limit
        docs = [self._doc(book) for book in hits[start:start + limit]]
        return 200, {"numFound": len(hits), "start": start, "numFoundExact": True, "docs": docs,
                     "q": q, "offset": query.get("offset")}, {}

    @staticmethod
    def _doc(book: CatalogueBook) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "key": f"/works/{book.work}",
            "type": "work",
            "title": book.title,
            "author_name": list(book.authors),
            "first_publish_year": book.year,
            "publisher": [book.publisher],
            "isbn": [isbn for isbn in (book.isbn13, book.isbn10) if isbn],
            "edition_count": 1,
            "cover_i": book.cover,
            "cover_edition_key": book.edition,
        }
        if book.subtitle:
            doc["subtitle"] = book.subtitle
        return doc

    def _api_books(self, query: dict[str, str], base: str) -> Response:
        answer: dict[str, Any] = {}
        for bibkey in query.get("bibkeys", "").split(","):
            kind, _, value = bibkey.strip().partition(":")
            book = self.find("bibkey", value) if kind.upper() == "ISBN" else None
            if book is None:
                continue
            record: dict[str, Any] = {
                "url": f"{base}/books/{book.edition}",
                "key": f"/books/{book.edition}",
                "title": book.title,
                "authors": [{"url": f"{base}/search.json?author={quote(name)}", "name": name}
                            for name in book.authors],
                "publishers": [{"name": book.publisher}],
                "publish_date": str(book.year),
                "identifiers": {"isbn_13": [book.isbn13], **({"isbn_10": [book.isbn10]} if book.isbn10 else {})},
                "cover": {size: f"{base}/covers/b/id/{book.cover}-{letter}.jpg"
                          for size, letter in (("small", "S"), ("medium", "M"), ("large", "L"))},
            }
            if book.subtitle:
                record["subtitle"] = book.subtitle
            answer[bibkey.strip()] = record
        return 200, answer, {}

    def _cover_image(self, kind: str, value: str, size: str) -> Response:
        book = self.find(kind, value)
        if book is None:
            return 404, "no such cover", {}
        width, height = COVER_SIZES[size]
        title = book.title
        svg = self._cover.substitute(
            width=width, height=height,
            color=COVER_COLORS[zlib.crc32(book.work.encode()) % len(COVER_COLORS)],
            title=html.escape(title), title_size=max(12, min(28, 300 // max(len(title), 1))),
            subtitle=html.escape(book.subtitle[:24]), author=html.escape("、".join(book.authors)[:24]),
        )
        return 200, svg, dict(SVG_HEADERS)

    def _book_page(self, kind: str, value: str, base: str) -> Response:
        book = self.find(kind, value)
        if book is None:
            return 404, "no such book in the sandbox catalogue", {}
        page = self._page.substitute(
            title=html.escape(book.title), subtitle=html.escape(book.subtitle),
            authors=html.escape("、".join(book.authors)), publisher=html.escape(book.publisher),
            year=book.year, isbn=book.isbn13, cover=html.escape(f"{base}/covers/b/id/{book.cover}-M.jpg", quote=True),
        )
        return 200, page, dict(HTML_HEADERS)
