"""Logging set-up for every process: credentials masked in every record, and the app's request lines batched.

Secrets: every process's set-up (configure_logging for the app, configure_stream_logging for token_service,
the slow-replies worker and the CLIs) puts one SecretRedactor on its handler. It masks the values of
query parameters and JSON/dict fields named like a credential (access_token, secret, code, ticket, ...)
and the configured secrets themselves (AppSecret, Token, EncodingAESKey, SESSION_SECRET, AI_API_KEY, the
Redis password) wherever they appear, in messages, tracebacks and stacks. urllib3, which logs every URL with
its query at DEBUG, is kept at INFO. The per-request line (request_lines) bypasses the filter: it is
built from the router's own fields and never holds a credential.

Batching: the one line per request is written in batches, not one write per line.

Measured behind nginx + uWSGI, one write(2) per request line (a pipe to uWSGI's log master, or journald)
cost about a third of the server's throughput. Lines are collected and written at most every half
second; a WARNING or worse, or a full buffer, is written at once. Each write is at most WRITE_BYTES and
ends on a line: uWSGI's log master reads one datagram into an 8 KB buffer and drops the rest of a
bigger one.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

FLUSH_INTERVAL_SECONDS = 0.5
MAX_BUFFERED_BYTES = 32 * 1024
WRITE_BYTES = 4096  # below uWSGI's log-master buffer (8 KB) and atomic on a pipe (PIPE_BUF)

MASK = "***"
# Query parameters and JSON fields of WeChat's APIs (and of Redis URLs) whose values are credentials.
# `code` is the one-time OAuth code; `signature`s are replayable within the timestamp window.
CREDENTIAL_NAMES = (
    "access_token", "refresh_token", "jsapi_ticket", "ticket", "appsecret", "secret", "code", "password",
    "token", "msg_signature", "signature", "encoding_aes_key", "session_secret", "api_key", "authorization",
)
_NAMES = "|".join(CREDENTIAL_NAMES)
# name=value in a query string or form body (also URL-encoded once: name%3Dvalue); a longer name that
# ends in one of these (errcode=, passcode=) is not a match. Names are matched as WeChat spells them,
# in lower case (a case-insensitive pattern costs several times as much per record).
_PARAMETER = re.compile(rf"(?<![A-Za-z0-9_])((?:{_NAMES})(?:=|%3[Dd]))[^&\s\"'<>#;,)]+")
# "name": "value" in JSON, 'name': 'value' in a Python repr (rq logs job arguments that way).
_FIELD = re.compile(rf"""(["'])((?:{_NAMES})\1\s*:\s*)(["'])(?:\\.|(?!\3).)*\3""")
# user:password@ in any URL (REDIS_URL).
_URL_CREDENTIALS = re.compile(r"://[^/\s@]+@")
# A configured secret shorter than this is not masked by value (it would mask ordinary words); the
# name patterns above still apply. Every secret WeChat issues is longer.
MIN_KNOWN_SECRET_LENGTH = 8


class RateLimit:
    """True at most once per `interval` seconds, for a warning that could repeat on every request (one per
    App: weixin/app.py)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next = float("-inf")
        self._lock = threading.Lock()

    def allow(self, now: float | None = None) -> bool:
        if now is None:
            now = time.monotonic()
        if now < self._next:  # the common case, without the lock
            return False
        with self._lock:
            if now < self._next:
                return False
            self._next = now + self.interval
            return True


def configured_secrets(settings: object) -> list[str]:
    """The secrets a settings object (config.Settings, token_service's TokenSettings) holds."""
    values = [str(getattr(settings, name, "") or "") for name in
              ("token", "appsecret", "encoding_aes_key", "session_secret", "ai_api_key")]
    try:
        password = urlsplit(str(getattr(settings, "redis_url", "") or "")).password
    except ValueError:
        password = None
    return [value for value in [*values, password or ""] if value]


class SecretRedactor(logging.Filter):
    """Masks credentials in a record before any handler formats it (see the module docstring). Installed on
    handlers, not loggers: a logger's filters never see the records its children propagate."""

    def __init__(self, known_secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so that a secret containing another is masked whole.
        self._known = sorted({value for value in known_secrets if len(value) >= MIN_KNOWN_SECRET_LENGTH},
                             key=len, reverse=True)

    def redact(self, text: str) -> str:
        """`text` with every credential replaced by MASK. Each pattern runs only on text that has the
        character it needs: most lines have none, and this runs for every record a handler gets."""
        for value in self._known:
            if value in text:
                text = text.replace(value, MASK)
        if "=" in text or "%3" in text:
            text = _PARAMETER.sub(rf"\1{MASK}", text)
        if ":" in text and ('"' in text or "'" in text):
            text = _FIELD.sub(rf"\1\2\3{MASK}\3", text)
        if "@" in text:
            text = _URL_CREDENTIALS.sub(f"://{MASK}@", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken log call: logging's error report would print the raw arguments
            message = f"{record.msg} {record.args!r} (log arguments did not match the format)"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class BatchingHandler(logging.Handler):
    """Writes formatted records to a file descriptor in batches; thread- and fork-safe."""

    def __init__(self, fd: int = 2, interval: float = FLUSH_INTERVAL_SECONDS) -> None:
        super().__init__()
        self.fd = fd
        self.interval = interval
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._buffer_lock = threading.Lock()
        self._flusher_pid = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode("utf-8", "replace")
        except Exception:
            self.handleError(record)
            return
        self.append(line, urgent=record.levelno >= logging.WARNING)

    def append(self, line: bytes, urgent: bool = False) -> None:
        """Buffer one formatted line (with its newline); written now when urgent or the buffer is full."""
        with self._buffer_lock:
            self._buffer.append(line)
            self._buffered += len(line)
            urgent = urgent or self._buffered >= MAX_BUFFERED_BYTES
            if urgent:
                self._write_locked()
        if not urgent:
            self._ensure_flusher()

    def flush(self) -> None:
        with self._buffer_lock:
            self._write_locked()

    def close(self) -> None:
        self.flush()
        super().close()

    def _write_locked(self) -> None:
        if not self._buffer:
            return
        lines = self._buffer
        self._buffer = []
        self._buffered = 0
        try:
            for chunk in _chunks(lines, WRITE_BYTES):
                while chunk:
                    written = os.write(self.fd, chunk)
                    chunk = chunk[written:]
        except OSError:
            pass  # nowhere to log to: dropping lines must never fail a request

    def _ensure_flusher(self) -> None:
        # uWSGI forks its workers after the app is loaded, and threads do not survive a fork: each
        # process starts its own flusher the first time it logs.
        if self._flusher_pid == os.getpid():
            return
        self._flusher_pid = os.getpid()
        threading.Thread(target=self._flush_forever, name="log-flusher", daemon=True).start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.interval)
            self.flush()


def _chunks(lines: list[bytes], limit: int) -> list[bytes]:
    """Lines joined into writes of at most `limit` bytes (a longer line is a write of its own)."""
    chunks: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for line in lines:
        if current and size + len(line) > limit:
            chunks.append(b"".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        chunks.append(b"".join(current))
    return chunks


class _RequestLines:
    """The line every request writes, formatted like the others but straight into the batching handler:
    the logging module's record, formatter and strftime would be a visible share of every message's
    cost, for a line whose format never changes."""

    def __init__(self) -> None:
        self.handler: BatchingHandler | None = None
        self._second = -1
        self._stamp = ""

    def write(self, logger: logging.Logger, message: str) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return
        if self.handler is None:  # logging not set up by configure_logging (a test, a script)
            logger.info("%s", message)
            return
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        self.handler.append(f"{self._stamp},{int((now - second) * 1000):03d} INFO {logger.name}: {message}\n".encode())


request_lines = _RequestLines()


def configure_logging(level: str, secrets: Iterable[str] = ()) -> None:
    """The app's root logging: timestamped lines on stderr, batched, credentials and `secrets` masked."""
    handler = BatchingHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _install_root_handler(handler, level, secrets)
    request_lines.handler = handler
    atexit.register(handler.flush)
    # The logging HOWTO's "Optimization": the format uses none of these, and finding the caller's file
    # and line walks the stack for every request line.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def configure_stream_logging(
    level: str, secrets: Iterable[str] = (), fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s"
) -> None:
    """Root logging for the daemons and command-line tools: a line on stderr per record, credentials and
    `secrets` masked."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    _install_root_handler(handler, level, secrets)


def _install_root_handler(handler: logging.Handler, level: str, secrets: Iterable[str]) -> None:
    handler.addFilter(SecretRedactor(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # urllib3 logs each request's full URL, query included, at DEBUG; WeChat's APIs take tokens there. The
    # chat model's client (openai, on httpx2/httpcore2) logs each request's body at DEBUG: a follower's words.
    for name in ("urllib3", "openai", "httpx2", "httpcore2"):
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
