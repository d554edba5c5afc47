"""Logging set-up for the app: the one line per request is written in batches, not one write per line.

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
import threading
import time

FLUSH_INTERVAL_SECONDS = 0.5
MAX_BUFFERED_BYTES = 32 * 1024
WRITE_BYTES = 4096  # below uWSGI's log-master buffer (8 KB) and atomic on a pipe (PIPE_BUF)


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
    the logging module's record, formatter and strftime cost about 20 µs a line, a tenth of what a
    message costs in all."""

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


def configure_logging(level: str) -> None:
    """Root logging: timestamped lines on stderr, batched (see the module docstring)."""
    handler = BatchingHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    request_lines.handler = handler
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    atexit.register(handler.flush)
    # The logging HOWTO's "Optimization": the format uses none of these, and finding the caller's file
    # and line alone cost several microseconds per request line.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
