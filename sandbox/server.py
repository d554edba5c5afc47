"""The fake WeChat platform over real HTTP on loopback, and the `python -m sandbox serve` command.

Threaded, HTTP/1.1 keep-alive, no request logging (so no secret or token can reach a log).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import socketserver
import sys
import threading
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qsl

from sandbox.chat_model import DEFAULT_AI_KEY, FakeChatModel
from sandbox.platform import DEFAULT_APPID, DEFAULT_SECRET, FakeWeChat, mask

logger = logging.getLogger(__name__)

# WeChat's own Content-Type; it names no charset, which clients have to cope with.
JSON_CONTENT_TYPE = "application/json; encoding=utf-8"
MAX_BODY_BYTES = 1 << 20
MAX_LINE_BYTES = 65536
MAX_HEADERS = 100


class _PlatformHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], platform: FakeWeChat) -> None:
        self.platform = platform
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _PlatformRequestHandler)

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        """A client that hangs up mid-request (wrk does at the end of a run) is not an error."""
        logger.debug("connection from %s ended abruptly", client_address, exc_info=True)

    def close_open_connections(self) -> None:
        """Keep-alive connections would otherwise keep their threads (and the port) busy after stop."""
        with self.connections_lock:
            connections = list(self.open_connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _PlatformRequestHandler(socketserver.StreamRequestHandler):
    """A minimal HTTP/1.1 keep-alive loop: the stdlib's email-based header parsing would cap the
    sandbox at ~3k requests/s, below the message server it has to keep up with in a load test."""

    # The response goes out in one write; no Nagle delay on small answers either.
    disable_nagle_algorithm = True
    timeout = 120  # an idle keep-alive connection is closed after this many seconds
    server: _PlatformHTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.open_connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.open_connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def handle(self) -> None:
        # Request lines carry tokens and secrets in their query strings: nothing here is logged.
        with contextlib.suppress(OSError):
            while self._serve_one():
                pass

    def _serve_one(self) -> bool:
        """Answer one request; False when the connection is to be closed."""
        request_line = self.rfile.readline(MAX_LINE_BYTES + 1)
        if not request_line:
            return False
        try:
            method, target, version, headers = self._parse_head(request_line)
            keep_alive = _keeps_alive(version, headers.get("connection", ""))
            body = self._read_body(headers)
        except _BadRequest as bad:
            self._write(bad.status, {"errcode": 47001, "errmsg": str(bad)}, {}, keep_alive=False)
            return False
        path, _, raw_query = target.partition("?")
        query: dict[str, str] = {}
        for name, value in parse_qsl(raw_query, keep_blank_values=True):
            query.setdefault(name, value)  # the first occurrence wins
        try:
            status, payload, extra = self.server.platform.handle(
                method, path, query, body, client_ip=self.client_address[0], host=headers.get("host", ""),
                headers=headers,
            )
        except Exception:
            logger.exception("sandbox failed on %s %s", method, path)
            status, payload, extra = 500, {"errcode": -1, "errmsg": "system error"}, {}
        self._write(status, payload, extra, keep_alive=keep_alive)
        return keep_alive

    def _parse_head(self, request_line: bytes) -> tuple[str, str, str, dict[str, str]]:
        if len(request_line) > MAX_LINE_BYTES:
            raise _BadRequest(414, "request line too long")
        parts = request_line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequest(400, "bad request line")
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            line = self.rfile.readline(MAX_LINE_BYTES + 1)
            if line in (b"\r\n", b"\n", b""):
                return parts[0], parts[1], parts[2], headers
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon or len(line) > MAX_LINE_BYTES:
                raise _BadRequest(400, "bad header line")
            headers[name.strip().lower()] = value.strip()
        raise _BadRequest(431, "too many headers")

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise _BadRequest(411, "the sandbox needs a Content-Length, not chunked encoding")
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            raise _BadRequest(400, "bad Content-Length") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise _BadRequest(413, "body too large")
        if length and headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            raise _BadRequest(400, "body shorter than its Content-Length")
        return body

    def _write(self, status: int, payload: dict | str, extra: dict, *, keep_alive: bool) -> None:
        extra = dict(extra)
        if isinstance(payload, dict):
            data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            content_type = JSON_CONTENT_TYPE
        else:
            data = payload.encode("utf-8")
            content_type = "text/plain; charset=utf-8"
        content_type = extra.pop("Content-Type", content_type)
        lines = [
            f"HTTP/1.1 {status} {_reason(status)}",
            "Server: wechat-sandbox",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(data)}",
            "Connection: keep-alive" if keep_alive else "Connection: close",
            *(f"{name}: {value}" for name, value in extra.items()),
            "",
            "",
        ]
        self.wfile.write("\r\n".join(lines).encode("latin-1", "replace") + data)


def _keeps_alive(version: str, connection: str) -> bool:
    connection = connection.lower()
    if version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class SandboxServer:
    """A FakeWeChat served on loopback by a background thread; `url` is its base URL."""

    def __init__(self, platform: FakeWeChat | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.platform = platform or FakeWeChat()
        self.host = host
        self.port = port
        self._http: _PlatformHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        if self._http is not None:
            raise RuntimeError("the sandbox server is already running")
        self._http = _PlatformHTTPServer((self.host, self.port), self.platform)
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.02}, name="sandbox-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._http is None:
            return
        self._http.shutdown()
        self._http.server_close()
        self._http.close_open_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._http = self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `serve`: run the fake WeChat API platform until interrupted."""
    parser = subparsers.add_parser(
        "serve",
        help="run the fake WeChat API platform (api.weixin.qq.com stand-in) on loopback",
        description="Run the fake WeChat API platform. Point WECHAT_API_BASE at the printed URL.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    parser.add_argument("--port", type=int, default=8081, help="port (0 = any free port; default 8081)")
    parser.add_argument("--appid", default=DEFAULT_APPID, help="the account's AppID")
    parser.add_argument("--secret", default=DEFAULT_SECRET, help="the account's AppSecret (sandbox default)")
    parser.add_argument("--token-lifetime", type=float, default=7200, help="access_token life in seconds")
    parser.add_argument("--overlap", type=float, default=300,
                        help="seconds an old token stays valid after a new one (default 300)")
    parser.add_argument("--token-daily-quota", type=int, default=2000, help="/cgi-bin/token calls a day")
    parser.add_argument("--ai-key", default=DEFAULT_AI_KEY,
                        help="the API key the fake chat model (/v1/) accepts (sandbox default)")
    parser.add_argument("--unverified", action="store_true",
                        default=os.environ.get("SANDBOX_UNVERIFIED", "") in ("1", "true", "yes"),
                        help="an unverified account: custom/send and custom/typing answer 48001 "
                             "(default: $SANDBOX_UNVERIFIED)")
    parser.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    try:
        platform = FakeWeChat(
            args.appid,
            args.secret,
            token_lifetime=args.token_lifetime,
            overlap=args.overlap,
            token_daily_quota=args.token_daily_quota,
            chat_model=FakeChatModel(args.ai_key),
            unverified=args.unverified,
        )
    except ValueError as error:
        print(f"sandbox: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server = SandboxServer(platform, args.host, args.port).start()
    print(
        f"sandbox WeChat API on {server.url} (appid {platform.appid}, secret {mask(args.secret)}"
        f"{', unverified: custom/send answers 48001' if args.unverified else ''}); "
        f"control endpoints under {server.url}/sandbox/ ; Ctrl-C stops",
        flush=True,
    )
    while not stop.wait(0.5):
        pass
    server.stop()
    print("sandbox stopped", flush=True)
    return 0
