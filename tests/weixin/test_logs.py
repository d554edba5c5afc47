"""The batched log handler: every line arrives, in order, in writes small enough for uWSGI's log master."""

from __future__ import annotations

import logging
import os

from weixin.logs import WRITE_BYTES, BatchingHandler, _chunks


def test_lines_are_grouped_into_writes_that_end_on_a_line() -> None:
    lines = [f"line {number:05d} {'x' * 100}\n".encode() for number in range(200)]
    chunks = _chunks(lines, WRITE_BYTES)
    assert b"".join(chunks) == b"".join(lines)
    assert all(len(chunk) <= WRITE_BYTES and chunk.endswith(b"\n") for chunk in chunks)
    assert _chunks([b"y" * 10_000 + b"\n"], WRITE_BYTES) == [b"y" * 10_000 + b"\n"]


def test_every_buffered_line_reaches_the_file_descriptor() -> None:
    read_end, write_end = os.pipe()
    handler = BatchingHandler(fd=write_end, interval=60)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("test-batching")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for number in range(300):
            logger.info("request %d %s", number, "z" * 90)
        logger.warning("urgent")  # written at once, with everything before it
        os.close(write_end)
        received = b""
        while chunk := os.read(read_end, 65536):
            received += chunk
    finally:
        logger.removeHandler(handler)
        os.close(read_end)
    lines = received.decode().splitlines()
    assert lines[:300] == [f"request {number} {'z' * 90}" for number in range(300)]
    assert lines[300:] == ["urgent"]


def test_request_lines_look_like_the_other_log_lines_and_respect_the_level() -> None:
    from weixin.logs import request_lines

    read_end, write_end = os.pipe()
    handler = BatchingHandler(fd=write_end, interval=60)
    logger = logging.getLogger("test-request-lines")
    previous = request_lines.handler
    request_lines.handler = handler
    try:
        logger.setLevel(logging.INFO)
        request_lines.write(logger, "POST mode=plain status=200")
        logger.setLevel(logging.WARNING)
        request_lines.write(logger, "not written")
        handler.flush()
        os.close(write_end)
        received = os.read(read_end, 65536).decode()
    finally:
        request_lines.handler = previous
        os.close(read_end)
    assert received.endswith(" INFO test-request-lines: POST mode=plain status=200\n")
    assert received.count("\n") == 1
    date, clock = received.split(" ")[:2]
    assert len(date) == 10 and len(clock) == 12 and clock[8] == ","
