"""The fake WeChat platform over real HTTP on loopback, and the `python -m sandbox serve` command.

Threaded, HTTP/1.1 keep-alive, no request logging (so no secret or token can reach a log).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qsl

from sandbox.platform import DEFAULT_APPID, DEFAULT_SECRET, FakeWeChat, mask

logger = logging.getLogger(__name__)

# WeChat's own Content-Type; it names no charset, which clients have to cope with.
JSON_CONTENT_TYPE = "application/json; encoding=utf-8"
MAX_BODY_BYTES = 1 << 20


class _PlatformHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], platform: FakeWeChat) -> None:
        self.platform = platform
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _PlatformRequestHandler)

    def close_open_connections(self) -> None:
        """Keep-alive connections would otherwise keep their threads (and the port) busy after stop."""
        with self.connections_lock:
            connections = list(self.open_connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _PlatformRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this Nagle + delayed ACK adds 40 ms per request.
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
        super().finish()

    def log_message(self, format: str, *args: object) -> None:
        """Request lines carry tokens and secrets in their query strings: never logged."""

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._send(411, {"errcode": 44002, "errmsg": "the sandbox needs a Content-Length"}, {})
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self._send(400, {"errcode": 47001, "errmsg": "bad Content-Length"}, {})
            return None
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        path, _, raw_query = self.path.partition("?")
        query: dict[str, str] = {}
        for name, value in parse_qsl(raw_query, keep_blank_values=True):
            query.setdefault(name, value)  # the first occurrence wins
        body = self._read_body()
        if body is None:
            self.close_connection = True
            return
        try:
            status, payload, headers = self.server.platform.handle(
                self.command, path, query, body, client_ip=self.client_address[0]
            )
        except Exception:
            logger.exception("sandbox failed on %s %s", self.command, path)
            status, payload, headers = 500, {"errcode": -1, "errmsg": "system error"}, {}
        self._send(status, payload, headers)

    def _send(self, status: int, payload: dict | str, headers: dict) -> None:
        headers = dict(headers)
        if isinstance(payload, dict):
            data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            content_type = JSON_CONTENT_TYPE
        else:
            data = payload.encode("utf-8")
            content_type = "text/plain; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", headers.pop("Content-Type", content_type))
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve


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
            target=self._http.serve_forever, kwargs={"poll_interval": 0.1}, name="sandbox-http", daemon=True
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
    parser.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    platform = FakeWeChat(
        args.appid,
        args.secret,
        token_lifetime=args.token_lifetime,
        overlap=args.overlap,
        token_daily_quota=args.token_daily_quota,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server = SandboxServer(platform, args.host, args.port).start()
    print(
        f"sandbox WeChat API on {server.url} (appid {platform.appid}, secret {mask(args.secret)}); "
        f"control endpoints under {server.url}/sandbox/ ; Ctrl-C stops",
        flush=True,
    )
    while not stop.wait(0.5):
        pass
    server.stop()
    print("sandbox stopped", flush=True)
    return 0
