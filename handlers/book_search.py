"""Book search by title or author (the doumibook design): `handlers.book_search:search` answers `查书 浪潮之巅`,
`书名 三体` or `作者 吴军` (or, as a book bot's default rule, any text) with the first hit as a news card;
`handlers.book_search:next_hit` answers `下一本` with the next one.

The source is Open Library's search API (BOOKS_API_BASE + /search.json, the base the ISBN path uses) with
the ISBN path's limits (handlers/books.py's fetch_json: a deadline on the whole request, a size cap, no
redirects). Results are cached in Redis a page at a time; the follower's session keeps only the query and
the position (the next hit is read from the cached page, or asked again once that has expired).

Pure parts (parse_query, page_from_open_library, hit_card, the texts) first, then the I/O.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import redis
from wechatpy.messages import BaseMessage

from handlers.books import (
    MAX_NAMES,
    MAX_NAMES_CHARS,
    MAX_TITLE_CHARS,
    BookSourceError,
    fetch_json,
    names_line,
    shortened,
    source_url,
)
from weixin import redis_clients
from weixin.config import Settings, load_settings
from weixin.render import HandlerContext
from weixin.sessions import Session

log = logging.getLogger("books")

# A page of hits is asked for and cached at once: `下一本` through a page costs no request. Open Library's
# search answers with whole work records; 10 of them stay well inside the ISBN path's MAX_ANSWER_BYTES.
PAGE_SIZE = 10
# The record fields a card uses (Open Library returns every field of a work without this).
SEARCH_FIELDS = "key,title,subtitle,author_name,first_publish_year,cover_i,cover_edition_key,isbn"
MAX_QUERY_CHARS = 80  # longer is not a title or a name; Open Library would search for it all the same
FOUND_TTL_SECONDS = 86400  # a catalogue changes slowly; a day keeps a follower's `下一本` answers stable
NOT_FOUND_TTL_SECONDS = 3600
CACHE_PREFIX = "wechat:books:search:"
SESSION_FIELD = "book_search"
OPEN_LIBRARY_HOSTS = ("openlibrary.org", "www.openlibrary.org")
OPEN_LIBRARY_COVERS = "https://covers.openlibrary.org"

# What a follower types in front of the words: 查书 searches everywhere, 书名 titles, 作者 authors.
PREFIXES = {"查书": "q", "搜书": "q", "书名": "title", "作者": "author"}
_PREFIX = re.compile(r"^\s*(" + "|".join(PREFIXES) + r")\s*[:：]?\s*")
_WORK_KEY = re.compile(r"/(?:works|books)/OL\d+[WM]")
_OLID = re.compile(r"OL\d+M")
_ISBN = re.compile(r"\d{9}[\dX]|\d{13}")
_YEAR = re.compile(r"(?<!\d)(1\d\d\d|2\d\d\d)(?!\d)")


@dataclass(frozen=True)
class Query:
    field: str  # Open Library's parameter: q, title or author
    text: str


@dataclass(frozen=True)
class Hit:
    key: str
    title: str
    authors: tuple[str, ...] = ()
    year: str = ""
    cover_id: int = 0
    edition: str = ""  # cover_edition_key: a cover by edition when the work has no cover_i
    isbn: str = ""


@dataclass(frozen=True)
class Page:
    """One page of a search: how many hits there are in all, and this page's (from position page*PAGE_SIZE)."""

    found: int
    hits: tuple[Hit, ...]


# --- pure ------------------------------------------------------------------------------------


def parse_query(text: str) -> Query | None:
    """The search a follower's text asks for: `作者 吴军` -> author, `书名 三体` -> title, `查书 ...` or a text
    without a prefix (the default rule of a book bot) -> everywhere. None when no words are left."""
    field = "q"
    prefix = _PREFIX.match(text)
    if prefix:
        field, text = PREFIXES[prefix.group(1)], text[prefix.end():]
    words = " ".join(text.split())
    return Query(field, words) if words else None


def page_from_open_library(document: Any) -> Page:
    """The hits of Open Library's `/search.json` answer; BookSourceError when it is not that shape."""
    if not isinstance(document, dict) or not isinstance(document.get("docs"), list):
        raise BookSourceError("the source's search answer has no docs")
    found = document.get("numFound", document.get("num_found"))
    hits = []
    for doc in document["docs"][:PAGE_SIZE]:
        if not isinstance(doc, dict) or not str(doc.get("title") or "").strip():
            continue
        title, subtitle = str(doc["title"]).strip(), str(doc.get("subtitle") or "").strip()
        names = doc.get("author_name") if isinstance(doc.get("author_name"), list) else []
        authors = tuple(shortened(name, MAX_NAMES_CHARS) for name in names if isinstance(name, str) and name.strip())
        cover = doc.get("cover_i")
        edition = str(doc.get("cover_edition_key") or "")
        isbns = doc.get("isbn") if isinstance(doc.get("isbn"), list) else []
        year = _YEAR.search(str(doc.get("first_publish_year") or ""))
        hits.append(Hit(
            key=str(doc.get("key") or "")[:100],
            title=shortened(f"{title}：{subtitle}" if subtitle else title, MAX_TITLE_CHARS),
            authors=authors[:MAX_NAMES + 1],  # one more than shown: the card then says "等"
            year=year.group(1) if year else "",
            cover_id=cover if isinstance(cover, int) and not isinstance(cover, bool) and cover > 0 else 0,
            edition=edition if _OLID.fullmatch(edition) else "",
            isbn=next((str(value) for value in isbns if _ISBN.fullmatch(str(value))), ""),
        ))
    if not isinstance(found, int) or isinstance(found, bool) or found < len(hits):
        found = len(hits)
    return Page(found, tuple(hits))


def covers_base(source_base: str) -> str:
    """Where the covers are: covers.openlibrary.org for Open Library itself, else the source's own /covers
    (the offline sandbox serves them there, in the same paths)."""
    return OPEN_LIBRARY_COVERS if urlsplit(source_base).hostname in OPEN_LIBRARY_HOSTS else f"{source_base}/covers"


def cover_url(hit: Hit, source_base: str) -> str:
    """The large cover by cover id, else by edition, else by ISBN; "" when none (or not on an allowed host)."""
    base = covers_base(source_base)
    if hit.cover_id:
        url = f"{base}/b/id/{hit.cover_id}-L.jpg"
    elif hit.edition:
        url = f"{base}/b/olid/{hit.edition}-L.jpg"
    elif hit.isbn:
        url = f"{base}/b/isbn/{hit.isbn}-L.jpg"
    else:
        return ""
    return source_url(url, source_base)


def hit_link(hit: Hit, query: Query, source_base: str) -> str:
    """The work's page on the source, or the source's search page for the query when the key is odd."""
    if _WORK_KEY.fullmatch(hit.key):
        return f"{source_base}{hit.key}"
    return f"{source_base}/search?{query.field}={quote(query.text, safe='')}"


def more_line(position: int, found: int) -> str:
    """What the card says about the other hits (position counts from 0)."""
    left = found - position - 1
    if left > 0:
        return f"第 {position + 1} 本，还有 {left} 本 · 回复「下一本」看下一本"
    return "只找到这一本。" if found == 1 else f"第 {position + 1} 本，这是最后一本了。"


def hit_card(hit: Hit, position: int, found: int, query: Query, source_base: str) -> list[dict[str, str]]:
    """One news article (a reply to a follower's message shows only one)."""
    lines = []
    if hit.authors:
        lines.append("作者：" + names_line(hit.authors))
    if hit.year:
        lines.append(f"首次出版：{hit.year}")
    lines.append(more_line(position, found))
    return [{
        "title": shortened(hit.title, MAX_TITLE_CHARS),
        "description": "\n".join(lines),
        "picurl": cover_url(hit, source_base),
        "url": hit_link(hit, query, source_base),
    }]


WHAT_TEXT = "请在「查书」后面写上书名或作者，例如「查书 浪潮之巅」「作者 吴军」。"
TOO_LONG_TEXT = f"书名或作者最多 {MAX_QUERY_CHARS} 个字，请短一点再试。"
UNAVAILABLE_TEXT = "书目服务暂时连不上，请过几分钟再试。"
NO_SEARCH_TEXT = "还没有在找书。发送「查书 书名」或「作者 名字」开始，例如「查书 浪潮之巅」。"
NO_MORE_TEXT = "没有更多了。换个书名或作者再找找吧。"


def not_found_text(query: Query) -> str:
    what = {"author": "作者", "title": "书名"}.get(query.field, "")
    return f"没有找到{what}“{query.text}”的书。换个写法，或者只写书名里的几个字试试。"


def cache_key(query: Query, page: int) -> str:
    """The page's cache key: a digest of the folded query, so that the key holds no follower's text."""
    digest = hashlib.sha1(f"{query.field}\x1f{query.text.casefold()}\x1f{page}".encode()).hexdigest()
    return f"{CACHE_PREFIX}{digest}"


def _page_to_json(page: Page) -> str:
    return json.dumps({"found": page.found, "hits": [asdict(hit) for hit in page.hits]}, ensure_ascii=False)


def _page_from_json(raw: bytes) -> Page:
    data = json.loads(raw)
    return Page(int(data["found"]), tuple(Hit(**{**hit, "authors": tuple(hit["authors"])}) for hit in data["hits"]))


# --- I/O -------------------------------------------------------------------------------------


def fetch_page(query: Query, page: int, base: str) -> Page:
    """Page `page` (from 0) of the source's hits; BookSourceError as for the ISBN path."""
    params = {query.field: query.text, "fields": SEARCH_FIELDS, "limit": str(PAGE_SIZE), "page": str(page + 1)}
    document = fetch_json(f"{base}/search.json", params)
    if document is None:
        raise BookSourceError("the source has no search API (404)")
    return page_from_open_library(document)


def find_page(query: Query, page: int, settings: Settings, client: redis.Redis) -> Page:
    """The page from the cache in `client`'s Redis or from the source (then cached)."""
    key = cache_key(query, page)
    try:
        raw = client.get(key)
    except redis.RedisError as error:
        log.warning("search cache unreadable (%s); asking the source", type(error).__name__)
        raw = None
    if raw is not None:
        with contextlib.suppress(ValueError, TypeError, KeyError):
            return _page_from_json(raw)
    result = fetch_page(query, page, settings.books_api_base)
    try:
        client.set(key, _page_to_json(result), ex=FOUND_TTL_SECONDS if result.found else NOT_FOUND_TTL_SECONDS)
    except redis.RedisError as error:
        log.warning("search cache unwritable (%s)", type(error).__name__)
    return result


def _context_or_own(context: HandlerContext | None) -> tuple[HandlerContext, Any]:
    """The process's context, or (a script calling the handler) one of its own and what closes it."""
    if context is not None:
        return context, contextlib.nullcontext()
    settings = load_settings(require_token=False)
    client = redis_clients.cache(settings.redis_url)
    return HandlerContext(settings, client), contextlib.closing(client)


def _show(query: Query, position: int, context: HandlerContext, session: Session | None) -> str | list[dict[str, str]]:
    """The card of hit `position` (from 0), remembered in the session; a text when there is none."""
    settings = context.settings
    try:
        page = find_page(query, position // PAGE_SIZE, settings, context.redis)
    except BookSourceError as error:
        log.warning("book source failed for a search: %s", error)
        return UNAVAILABLE_TEXT
    index = position % PAGE_SIZE
    if index >= len(page.hits):
        if session is not None:
            session.delete(SESSION_FIELD)
        return not_found_text(query) if position == 0 else NO_MORE_TEXT
    if session is not None:
        session.set(SESSION_FIELD, {"field": query.field, "text": query.text, "position": position,
                                    "found": page.found})
    return hit_card(page.hits[index], position, max(page.found, position + 1), query, settings.books_api_base)


def search(message: BaseMessage, context: HandlerContext | None = None,
           session: Session | None = None) -> str | list[dict[str, str]]:
    """The handler for `查书 ...`, `书名 ...`, `作者 ...` (or any text, as a book bot's default rule): the first
    hit's card; the session remembers the search for `下一本`."""
    query = parse_query(str(getattr(message, "content", "") or ""))
    if query is None:
        return WHAT_TEXT
    if len(query.text) > MAX_QUERY_CHARS:
        return TOO_LONG_TEXT
    context, closing = _context_or_own(context)
    with closing:
        return _show(query, 0, context, session)


def next_hit(message: BaseMessage, context: HandlerContext | None = None,
             session: Session | None = None) -> str | list[dict[str, str]]:
    """The handler for `下一本`: the hit after the one the session remembers."""
    state = session.get(SESSION_FIELD) if session is not None else None
    if not isinstance(state, dict) or state.get("field") not in PREFIXES.values() or not state.get("text"):
        return NO_SEARCH_TEXT
    position = int(state.get("position") or 0) + 1
    if position >= int(state.get("found") or 0):
        return NO_MORE_TEXT
    context, closing = _context_or_own(context)
    with closing:
        return _show(Query(str(state["field"]), str(state["text"])), position, context, session)
