"""Latency at a constant offered rate (open loop), the way WeChat's traffic arrives: requests are sent on a
fixed schedule whether or not earlier ones were answered, and each latency is counted from the moment the
request was due, not from when a free connection let it go (wrk's closed loop hides a stall: a slow answer
delays the next request instead of making it late, so the stall shows as lower throughput, not latency).

wrk2 (constant-throughput wrk) is not packaged for Debian, so this is a small asyncio client on loopback:
one scheduler sends request i at start + i / rate on an idle keep-alive connection (a new one when all are
busy, up to MAX_CONNECTIONS), reads the response (Content-Length or chunked) and records due-to-done.
It runs in one Python process on the same cores as the server, which is why the rate asked of it is
modest (half WeRoBot's saturated rate); `late_sends` counts requests it could not even start on time.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_CONNECTIONS = 64
RESPONSE_TIMEOUT_SECONDS = 10.0
LATE_SEND_SECONDS = 0.001  # a send more than this after its due time counts as late (the generator lagged)


@dataclass
class OpenLoopResult:
    name: str
    rate: float  # offered, requests per second
    sent: int
    errors: int
    late_sends: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


def raw_request(host: str, path: str, body: str) -> bytes:
    payload = body.encode("utf-8")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/xml\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode("ascii") + payload


async def read_response(reader: asyncio.StreamReader) -> int:
    """The status code, after reading the whole response (Content-Length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def _run(url: str, requests: list[tuple[str, str]], rate: float) -> tuple[list[float], int, int]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    prepared = [raw_request(f"{host}:{port}", path, body) for path, body in requests]
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    opened = 0
    freed = asyncio.Condition()
    latencies: list[float] = []
    errors = late = 0

    async def connection() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        nonlocal opened
        async with freed:
            while not idle and opened >= MAX_CONNECTIONS:
                await freed.wait()
            if idle:
                return idle.pop()
            opened += 1
        return await asyncio.open_connection(host, port)

    async def one(request: bytes, due: float) -> None:
        nonlocal errors, opened
        reader, writer = await connection()
        try:
            writer.write(request)
            status = await asyncio.wait_for(read_response(reader), RESPONSE_TIMEOUT_SECONDS)
            latencies.append(time.perf_counter() - due)
            if status != 200:
                errors += 1
            async with freed:
                idle.append((reader, writer))
                freed.notify()
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            writer.close()
            async with freed:
                opened -= 1
                freed.notify()

    tasks = []
    start = time.perf_counter() + 0.05
    for number, request in enumerate(prepared):
        due = start + number / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif -delay > LATE_SEND_SECONDS:
            late += 1
        tasks.append(asyncio.create_task(one(request, due)))
    await asyncio.gather(*tasks)
    for _, writer in idle:
        writer.close()
    return latencies, errors, late


def run_open_loop(name: str, url: str, requests: list[tuple[str, str]], rate: float) -> OpenLoopResult:
    """Send every request in `requests` (path, body) at `rate` per second; latencies from their due times."""
    latencies, errors, late = asyncio.run(_run(url, requests, rate))
    ordered = sorted(latencies)
    return OpenLoopResult(
        name=name, rate=rate, sent=len(requests), errors=errors, late_sends=late,
        p50_ms=percentile(ordered, 0.50) * 1000, p99_ms=percentile(ordered, 0.99) * 1000,
        max_ms=(ordered[-1] if ordered else float("nan")) * 1000,
    )


def combine(name: str, rounds: list[OpenLoopResult]) -> OpenLoopResult:
    """The median round's latencies; counts summed."""
    return OpenLoopResult(
        name=name, rate=rounds[0].rate, sent=sum(r.sent for r in rounds), errors=sum(r.errors for r in rounds),
        late_sends=sum(r.late_sends for r in rounds), p50_ms=statistics.median(r.p50_ms for r in rounds),
        p99_ms=statistics.median(r.p99_ms for r in rounds), max_ms=max(r.max_ms for r in rounds),
    )
