"""A tiny real HTTP server shaped like Open Library's `/api/books` JSON API, with switches per ISBN:
found (the default), missing, slow (answers after a delay), down (drops the connection unanswered),
and hostile answers: huge, dripping a byte at a time, a redirect, a raw body, a record with other fields."""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from stdnum import ean

_serial = itertools.count(int(time.time()) % 1000 * 1000)

HUGE_BYTES = 10 * 1024 * 1024
DRIP_INTERVAL_SECONDS = 0.5


def new_isbn13() -> str:
    """A valid ISBN-13 not used before in this run (so that the book cache starts empty for it)."""
    first12 = f"978711{next(_serial) % 10**6:06d}"
    return first12 + ean.calc_check_digit(first12)


@dataclass
class BookSource:
    modes: dict[str, tuple[str, float]] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    answered_at: dict[str, float] = field(default_factory=dict)  # time.monotonic() of the last answer
    bytes_sent: dict[str, int] = field(default_factory=dict)  # body bytes written for the last request
    completed: dict[str, bool] = field(default_factory=dict)  # whether the last answer was written whole
    ended: dict[str, bool] = field(default_factory=dict)  # whether the last request's handler has returned
    redirects: dict[str, str] = field(default_factory=dict)
    bodies: dict[str, bytes] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
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

    def huge(self, isbn13: str, declare_length: bool) -> None:
        """A valid record padded to 10 MB, with or without a Content-Length saying so."""
        self.modes[isbn13] = ("huge-declared" if declare_length else "huge-undeclared", 0.0)

    def drip(self, isbn13: str, part: str, seconds: float = 30.0) -> None:
        """A byte every 0.5 s for `seconds` in the headers or the body (`part`), then a valid record."""
        assert part in ("headers", "body")
        self.modes[isbn13] = (f"drip-{part}", seconds)

    def redirect(self, isbn13: str, to_isbn13: str) -> None:
        """302 to this source's own answer for another (found) ISBN."""
        self.modes[isbn13] = ("redirect", 0.0)
        self.redirects[isbn13] = to_isbn13

    def raw(self, isbn13: str, body: bytes) -> None:
        """200 with this body as application/json, whatever it is."""
        self.modes[isbn13] = ("raw", 0.0)
        self.bodies[isbn13] = body

    def record(self, isbn13: str, **fields: Any) -> None:
        """Found, with these fields of the record replaced."""
        self.modes[isbn13] = ("found", 0.0)
        self.overrides[isbn13] = fields

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
            **self.overrides.get(isbn13, {}),
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
                    source.bytes_sent[isbn13] = 0
                    source.completed[isbn13] = False
                    source.ended[isbn13] = False
                mode, delay = source.modes.get(isbn13, ("found", 0.0))
                try:
                    self.answer(isbn13, bibkey, mode, delay)
                except OSError:  # the client went away (as it should from a huge or dripping answer)
                    self.close_connection = True
                else:
                    source.completed[isbn13] = True
                    source.answered_at[isbn13] = time.monotonic()
                finally:
                    source.ended[isbn13] = True

            def answer(self, isbn13: str, bibkey: str, mode: str, delay: float) -> None:
                if mode.startswith("drip-"):
                    self.drip(isbn13, bibkey, mode, delay)
                    return
                time.sleep(delay)
                if mode == "down":
                    self.close_connection = True
                    self.connection.close()
                    return
                if mode == "redirect":
                    target = source.redirects[isbn13]
                    self.send_response(302)
                    self.send_header("Location", f"/api/books?bibkeys=ISBN:{target}&format=json&jscmd=data")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if mode == "raw":
                    self.send_body(isbn13, source.bodies[isbn13])
                    return
                document = {bibkey: source.book_json(isbn13)} if mode in ("found", "huge-declared",
                                                                           "huge-undeclared") else {}
                if mode.startswith("huge-"):
                    document[bibkey]["notes"] = "x" * HUGE_BYTES
                body = json.dumps(document, ensure_ascii=False).encode("utf-8")
                self.send_body(isbn13, body, declare_length=mode != "huge-undeclared")

            def send_body(self, isbn13: str, body: bytes, declare_length: bool = True) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                if declare_length:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.close_connection = True  # the body ends when the connection does
                self.end_headers()
                for start in range(0, len(body), 64 * 1024):
                    chunk = body[start:start + 64 * 1024]
                    self.wfile.write(chunk)
                    with source._lock:
                        source.bytes_sent[isbn13] += len(chunk)

            def drip(self, isbn13: str, bibkey: str, mode: str, seconds: float) -> None:
                """Each byte arrives well inside any per-read timeout; only a deadline on the whole stops it."""
                body = json.dumps({bibkey: {"title": "滴"}}, ensure_ascii=False).encode("utf-8")
                padding = int(seconds / DRIP_INTERVAL_SECONDS)
                if mode == "drip-headers":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
                    dripped, rest = b"a" * padding, b"\r\n"
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(padding + len(body)))
                    self.end_headers()
                    dripped, rest = b" " * padding, b""  # JSON allows leading whitespace
                for byte in dripped:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(DRIP_INTERVAL_SECONDS)
                if mode == "drip-headers":
                    self.wfile.write(rest + f"Content-Length: {len(body)}\r\n\r\n".encode())
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="book-source", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
