"""A tiny real HTTP server shaped like Open Library's `/api/books` JSON API, with switches per ISBN:
found (the default), missing, slow (answers after a delay), down (drops the connection unanswered)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from stdnum import ean

_serial = itertools.count(int(time.time()) % 1000 * 1000)


def new_isbn13() -> str:
    """A valid ISBN-13 not used before in this run (so that the book cache starts empty for it)."""
    first12 = f"978711{next(_serial) % 10**6:06d}"
    return first12 + ean.calc_check_digit(first12)


@dataclass
class BookSource:
    modes: dict[str, tuple[str, float]] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    answered_at: dict[str, float] = field(default_factory=dict)  # time.monotonic() of the last answer
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def found(self, isbn13: str) -> None:
        self.modes[isbn13] = ("found", 0.0)

    def missing(self, isbn13: str) -> None:
        self.modes[isbn13] = ("missing", 0.0)

    def slow(self, isbn13: str, seconds: float) -> None:
        self.modes[isbn13] = ("found", seconds)

    def down(self, isbn13: str) -> None:
        self.modes[isbn13] = ("down", 0.0)

    def requests_for(self, isbn13: str) -> int:
        with self._lock:
            return self.requests.get(isbn13, 0)

    def book_json(self, isbn13: str) -> dict:
        return {
            "url": f"{self.url}/books/OL{isbn13}M/a_book",
            "key": f"/books/OL{isbn13}M",
            "title": f"测试之书 {isbn13[-4:]}",
            "subtitle": "第二版",
            "authors": [{"url": f"{self.url}/authors/OL1A", "name": "王小波"}, {"name": "Roald Dahl"}],
            "publishers": [{"name": "机械工业出版社"}],
            "publish_date": "2016年11月",
            "cover": {
                "small": f"{self.url}/covers/{isbn13}-S.jpg",
                "medium": f"{self.url}/covers/{isbn13}-M.jpg",
                "large": f"{self.url}/covers/{isbn13}-L.jpg",
            },
            "number_of_pages": 320,
        }

    def start(self) -> BookSource:
        source = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                bibkey = (query.get("bibkeys") or [""])[0]
                if parts.path != "/api/books" or not bibkey.startswith("ISBN:"):
                    self.send_error(404)
                    return
                isbn13 = bibkey[len("ISBN:"):]
                with source._lock:
                    source.requests[isbn13] = source.requests.get(isbn13, 0) + 1
                mode, delay = source.modes.get(isbn13, ("found", 0.0))
                time.sleep(delay)
                if mode == "down":
                    self.close_connection = True
                    self.connection.close()
                    return
                document = {bibkey: source.book_json(isbn13)} if mode == "found" else {}
                body = json.dumps(document, ensure_ascii=False).encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                source.answered_at[isbn13] = time.monotonic()

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="book-source", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
