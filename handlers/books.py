"""Book lookup by ISBN (the `handlers.books:lookup` handler): check the ISBN, ask the book source, cache in Redis.

The pure parts (parse_isbn, book_from_open_library, book_card, the texts) are apart from the I/O
(BookCache, fetch_book, lookup). The source is Open Library's JSON API unless BOOKS_API_BASE says otherwise.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import logging
import re
import socket
import threading
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import redis
import requests
from requests.adapters import HTTPAdapter
from stdnum import ean, isbn
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.poolmanager import pool_classes_by_scheme as urllib3_pool_classes
from wechatpy.messages import BaseMessage

from weixin import redis_clients
from weixin.config import Settings, load_settings
from weixin.render import HandlerContext

log = logging.getLogger("books")

# The follower never waits for the source: a slow one is answered by the background path (`success` at
# the reply deadline, the card later through custom/send). These bound what a source can cost a worker.
SOURCE_CONNECT_TIMEOUT = 3.05
# For the whole request (connect, TLS, headers, body), not per socket read: a source sending a byte every
# few seconds never trips a per-read timeout. Met by shutting the socket down (see _Deadline).
SOURCE_DEADLINE_SECONDS = 10.0
# Open Library's answer for one ISBN is a few KB; an answer larger than this is not read to the end.
MAX_ANSWER_BYTES = 256 * 1024
READ_CHUNK_BYTES = 16 * 1024
FOUND_TTL_SECONDS = 7 * 86400
NOT_FOUND_TTL_SECONDS = 3600  # a book added to the source later shows up within the hour
CACHE_PREFIX = "wechat:books:isbn:"
NOT_FOUND_MARKER = b"-"

# Digits with optional spaces/hyphens, and the `ISBN` label some people type in front of them.
_ISBN_LABEL = re.compile(r"^\s*isbn(?:-1[03])?\s*[:：]?\s*", re.IGNORECASE)
_YEAR = re.compile(r"(?<!\d)(1[4-9]\d\d|2\d\d\d)(?!\d)")  # "2016年11月", "October 1, 1988"


@dataclass(frozen=True)
class IsbnCheck:
    """What the follower typed, as an ISBN: `isbn13` when valid, else `problem` ("checksum" or "format")."""

    written: str
    isbn13: str | None = None
    problem: str | None = None
    expected_check: str | None = None  # for a checksum problem: the check digit the other digits call for


@dataclass(frozen=True)
class Book:
    isbn13: str
    title: str
    authors: tuple[str, ...] = ()
    publishers: tuple[str, ...] = ()
    year: str = ""
    cover: str = ""
    url: str = ""


# What the source says is shown to followers: lengths are capped (a card has a few lines on a phone) ...
MAX_TITLE_CHARS = 128
MAX_NAMES = 3  # authors or publishers shown, then "等"
MAX_NAMES_CHARS = 128
ELLIPSIS = "…"
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# ... and a link or cover is kept only on the source's own host or its known cover host, over https (http
# only when BOOKS_API_BASE itself is http: the offline sandbox); anything else is replaced (link) or dropped.
KNOWN_COVER_HOSTS = ("covers.openlibrary.org",)
MAX_URL_CHARS = 1024
_URL_CHARACTERS = re.compile(r"[!-\[\]-~]+")  # printable ASCII without space or backslash
_DEFAULT_PORTS = {"http": 80, "https": 443}


class BookSourceError(Exception):
    """The book source could not be asked (down, slow, or an answer that is not its JSON)."""


# --- pure ------------------------------------------------------------------------------------


def _isbn10_check_digit(first_nine: str) -> str:
    total = sum((position + 1) * int(digit) for position, digit in enumerate(first_nine))
    check = total % 11
    return "X" if check == 10 else str(check)


def parse_isbn(text: str) -> IsbnCheck:
    """Check an ISBN-10 or ISBN-13 written with or without hyphens/spaces (and an optional `ISBN` label)."""
    written = _ISBN_LABEL.sub("", text).strip()
    compact = isbn.compact(written)
    if not re.fullmatch(r"\d{9}[\dX]|97[89]\d{10}", compact):
        return IsbnCheck(written, problem="format")
    try:
        isbn.validate(compact)
    except isbn.InvalidChecksum:
        expected = _isbn10_check_digit(compact[:9]) if len(compact) == 10 else ean.calc_check_digit(compact[:12])
        return IsbnCheck(written, problem="checksum", expected_check=expected)
    except isbn.ValidationError:  # e.g. a 13-digit number that is not 978/979
        return IsbnCheck(written, problem="format")
    return IsbnCheck(written, isbn13=isbn.to_isbn13(compact))


def checksum_text(check: IsbnCheck) -> str:
    return (
        f"“{check.written}” 看起来是 ISBN，但校验位不对（按前面的数字算，最后一位应是 {check.expected_check}）。\n"
        "请核对一下是不是抄错了某一位：ISBN 印在书的封底条形码上方或版权页上，10 位或 13 位都可以。"
    )


def format_text(check: IsbnCheck) -> str:
    return (
        f"“{check.written}” 不是有效的 ISBN。ISBN 是 10 位或 13 位（978/979 开头）的数字，"
        "可以带连字符，例如 978-7-111-54742-6。"
    )


def not_found_text(isbn13: str) -> str:
    return f"没有找到 ISBN {isbn.format(isbn13)} 对应的图书。请核对号码，或者换一本试试。"


UNAVAILABLE_TEXT = "书目服务暂时连不上，请过几分钟再把 ISBN 发给我试试。"


def shortened(text: str, limit: int) -> str:
    """`text` on one line (control characters and runs of spaces become one space), at most `limit` characters,
    ending with an ellipsis when it was longer."""
    flat = " ".join(_CONTROL_CHARACTERS.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[:limit - len(ELLIPSIS)] + ELLIPSIS


def names_line(names: tuple[str, ...]) -> str:
    """At most MAX_NAMES names, then "等" when there are more, and at most MAX_NAMES_CHARS characters."""
    shown = "、".join(names[:MAX_NAMES]) + ("等" if len(names) > MAX_NAMES else "")
    return shortened(shown, MAX_NAMES_CHARS)


def source_url(url: str, source_base: str) -> str:
    """`url` if a card may show it, else "": https (http too when `source_base` is http, i.e. the offline
    sandbox) on the host and port of `source_base` or on a known cover host; no user part, nothing but
    printable ASCII, so that the follower's browser and this check cannot read it differently."""
    if len(url) > MAX_URL_CHARS or not _URL_CHARACTERS.fullmatch(url):
        return ""
    try:
        parts, base = urlsplit(url), urlsplit(source_base)
        port, base_port = parts.port, base.port
    except ValueError:  # a port that is not a number
        return ""
    schemes = ("https",) if base.scheme == "https" else ("https", "http")
    if parts.scheme not in schemes or "@" in parts.netloc or not parts.hostname:
        return ""
    allowed = {(base.hostname, base_port or _DEFAULT_PORTS.get(base.scheme))}
    allowed.update((host, 443) for host in KNOWN_COVER_HOSTS)
    return url if (parts.hostname, port or _DEFAULT_PORTS[parts.scheme]) in allowed else ""


def book_from_open_library(document: Any, isbn13: str, source_base: str | None = None) -> Book | None:
    """The book in Open Library's `/api/books?bibkeys=ISBN:...&format=json&jscmd=data` answer (None: not found).

    Texts are shortened here, so that the cache keeps no more than a card shows. With `source_base`, the
    cover is the largest one that source_url accepts (the card checks the link and cover again either way).
    """
    if not isinstance(document, dict):
        raise BookSourceError("the source answered something that is not a JSON object")
    record = document.get(f"ISBN:{isbn13}")
    if record is None and len(document) == 1:
        record = next(iter(document.values()))  # keyed by another form of the ISBN
    if not isinstance(record, dict) or not str(record.get("title") or "").strip():
        return None

    def names(items: Any) -> tuple[str, ...]:
        if not isinstance(items, list):
            return ()
        found = (item.get("name") if isinstance(item, dict) else item for item in items)
        kept = (shortened(name, MAX_NAMES_CHARS) for name in found if isinstance(name, str) and name.strip())
        return tuple(itertools.islice(kept, MAX_NAMES + 1))  # one more than shown: the card then says "等"

    title = str(record["title"]).strip()
    subtitle = str(record.get("subtitle") or "").strip()
    cover = record.get("cover") if isinstance(record.get("cover"), dict) else {}
    covers = (str(cover.get(size) or "") for size in ("large", "medium", "small"))
    year = _YEAR.search(str(record.get("publish_date") or ""))
    return Book(
        isbn13=isbn13,
        title=shortened(f"{title}：{subtitle}" if subtitle else title, MAX_TITLE_CHARS),
        authors=names(record.get("authors")),
        publishers=names(record.get("publishers")),
        year=year.group(1) if year else "",
        cover=next((url for url in covers if url and (source_base is None or source_url(url, source_base))), ""),
        url=str(record.get("url") or "")[:MAX_URL_CHARS + 1],  # one more: too long for source_url
    )


def book_card(book: Book, source_base: str) -> list[dict[str, str]]:
    """One news article (a reply to a follower's message shows only one): title, who, publisher, year, cover.

    The source decides the texts but not where the card leads: a link it gives that source_url refuses is
    replaced by the source's own page for the ISBN, such a cover is left out (a card without a picture).
    """
    lines = []
    if book.authors:
        lines.append("作者：" + names_line(book.authors))
    if book.publishers:
        lines.append("出版社：" + names_line(book.publishers))
    if book.year:
        lines.append(f"出版年份：{book.year}")
    lines.append(f"ISBN：{isbn.format(book.isbn13)}")
    return [{
        "title": shortened(book.title, MAX_TITLE_CHARS),
        "description": "\n".join(lines),
        "picurl": source_url(book.cover, source_base),
        "url": source_url(book.url, source_base) or f"{source_base}/isbn/{book.isbn13}",
    }]


def _book_to_json(book: Book | None) -> bytes:
    return NOT_FOUND_MARKER if book is None else json.dumps(asdict(book), ensure_ascii=False).encode("utf-8")


def _book_from_json(raw: bytes) -> Book | None:
    if raw == NOT_FOUND_MARKER:
        return None
    data = json.loads(raw)
    return Book(**{**data, "authors": tuple(data["authors"]), "publishers": tuple(data["publishers"])})


# --- I/O -------------------------------------------------------------------------------------


class BookCache:
    """Found books for a week, "not found" for an hour, under wechat:books:isbn:<ISBN-13>."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def get(self, isbn13: str) -> tuple[bool, Book | None]:
        """(True, book or None for "not found") on a hit; (False, None) when the source must be asked."""
        try:
            raw = self.client.get(CACHE_PREFIX + isbn13)
        except redis.RedisError as error:
            log.warning("book cache unreadable (%s); asking the source", type(error).__name__)
            return False, None
        if raw is None:
            return False, None
        try:
            return True, _book_from_json(raw)
        except (ValueError, TypeError, KeyError):
            return False, None

    def put(self, isbn13: str, book: Book | None) -> None:
        ttl = NOT_FOUND_TTL_SECONDS if book is None else FOUND_TTL_SECONDS
        try:
            self.client.set(CACHE_PREFIX + isbn13, _book_to_json(book), ex=ttl)
        except redis.RedisError as error:
            log.warning("book cache unwritable (%s)", type(error).__name__)


class _Deadline:
    """Shuts the source's sockets down when the time for the whole request is up, whatever the request is
    blocked on (TLS handshake, headers or body): the blocked read then ends at once with an error or EOF.
    One per fetch; a timer thread (uWSGI runs with enable-threads) that close() cancels."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        # A duplicate descriptor of the same TCP socket: shutting it down also ends reads on the TLS socket
        # that will be wrapped around the original (which takes over, and later closes, the original).
        watched = sock.dup()
        with self._lock:
            self._sockets.append(watched)
            if self.expired:
                self._shut(watched)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed by the peer
            sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


class _WatchedConnection:
    """Mixed into urllib3's connection classes: every socket they open (to the source or to a proxy) is
    handed to the fetch's deadline as soon as it is connected, before TLS or any byte of HTTP."""

    deadline: _Deadline

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        self.deadline.watch(sock)
        return sock


class _WatchedAdapter(HTTPAdapter):
    """No retries, and connection pools (direct or through an HTTP proxy from the environment) whose sockets
    `deadline` watches."""

    def __init__(self, deadline: _Deadline) -> None:
        watched_http = type("WatchedHTTPConnection", (_WatchedConnection, HTTPConnection), {"deadline": deadline})
        watched_https = type("WatchedHTTPSConnection", (_WatchedConnection, HTTPSConnection), {"deadline": deadline})
        self.pool_classes = {
            "http": type("WatchedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": watched_http}),
            "https": type("WatchedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": watched_https}),
        }
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self.pool_classes

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if manager.pool_classes_by_scheme is urllib3_pool_classes:  # not SOCKS's own
            manager.pool_classes_by_scheme = self.pool_classes
        return manager


def _read_capped(response: requests.Response) -> bytes:
    """The body, refused (BookSourceError) as soon as it is known to exceed MAX_ANSWER_BYTES (after decoding)."""
    declared = response.headers.get("Content-Length", "").strip()
    if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
        raise BookSourceError(f"the book source's answer is larger than {MAX_ANSWER_BYTES} bytes (Content-Length)")
    body = bytearray()
    for chunk in response.iter_content(READ_CHUNK_BYTES):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise BookSourceError(f"the book source's answer is larger than {MAX_ANSWER_BYTES} bytes")
    return bytes(body)


def _ask_source(url: str, params: dict[str, str], deadline: _Deadline) -> bytes | None:
    """The body of the source's 200 answer; None for 404. Redirects are not followed: a source we configured
    answers itself, and a redirect could lead anywhere."""
    with requests.Session() as session:
        adapter = _WatchedAdapter(deadline)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        try:
            with session.get(url, params=params, headers={"Accept": "application/json"}, stream=True,
                             allow_redirects=False, timeout=(SOURCE_CONNECT_TIMEOUT, deadline.seconds)) as response:
                if response.status_code == 404:
                    return None
                if response.status_code != 200:
                    raise BookSourceError(f"the book source answered HTTP {response.status_code}")
                body = _read_capped(response)
        except (requests.RequestException, Urllib3Error, http.client.HTTPException,
                OSError) as error:
            if deadline.expired:
                raise BookSourceError(f"the book source did not answer within the {deadline.seconds:g} s "
                                      "deadline") from None
            raise BookSourceError(f"{type(error).__name__} from the book source") from None
    if deadline.expired:  # a body that ends with the connection ended when the deadline shut it: cut short
        raise BookSourceError(f"the book source did not answer within the {deadline.seconds:g} s deadline")
    return body


def parse_source_json(body: bytes) -> Any:
    """The JSON document in `body`; BookSourceError for anything else, including nesting deeper than Python's
    recursion limit (json raises RecursionError then, which is not a ValueError)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise BookSourceError("the book source answered something that is not JSON") from None


def fetch_json(url: str, params: dict[str, str], deadline_seconds: float = SOURCE_DEADLINE_SECONDS) -> Any:
    """The source's JSON answer at `url` (None for 404), within the limits every book request has: the whole
    request within `deadline_seconds`, at most MAX_ANSWER_BYTES, no redirects. Raises BookSourceError."""
    deadline = _Deadline(deadline_seconds)
    try:
        body = _ask_source(url, params, deadline)
    finally:
        deadline.close()
    return None if body is None else parse_source_json(body)


def fetch_book(isbn13: str, base: str, deadline_seconds: float = SOURCE_DEADLINE_SECONDS) -> Book | None:
    """Ask the source; None when it does not know the ISBN. Raises BookSourceError when it cannot answer
    within `deadline_seconds` and MAX_ANSWER_BYTES, or answers something that is not its JSON."""
    params = {"bibkeys": f"ISBN:{isbn13}", "format": "json", "jscmd": "data"}
    document = fetch_json(f"{base}/api/books", params, deadline_seconds)
    if document is None:
        return None
    return book_from_open_library(document, isbn13, base)


def find_book(isbn13: str, settings: Settings, client: redis.Redis) -> Book | None:
    """The book for a valid ISBN-13, from the cache in `client`'s Redis or the source (caching what the
    source said)."""
    cache = BookCache(client)
    hit, book = cache.get(isbn13)
    if hit:
        return book
    book = fetch_book(isbn13, settings.books_api_base)
    cache.put(isbn13, book)
    return book


def lookup(message: BaseMessage, context: HandlerContext | None = None) -> str | list[dict[str, str]]:
    """The handler for ISBN messages: a news card, or a text saying what is wrong. The web process and the
    worker pass their HandlerContext; a call without one (a script) builds its own for this one lookup."""
    check = parse_isbn(str(getattr(message, "content", "") or ""))
    if check.problem == "checksum":
        return checksum_text(check)
    if check.isbn13 is None:
        return format_text(check)
    if context is None:
        settings = load_settings(require_token=False)
        with contextlib.closing(redis_clients.cache(settings.redis_url)) as client:
            return lookup(message, HandlerContext(settings, client))
    settings = context.settings
    try:
        book = find_book(check.isbn13, settings, context.redis)
    except BookSourceError as error:
        log.warning("book source failed for an ISBN lookup: %s", error)
        return UNAVAILABLE_TEXT
    if book is None:
        return not_found_text(check.isbn13)
    return book_card(book, settings.books_api_base)
