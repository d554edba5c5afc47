"""Latency at a constant offered rate (open loop), the way WeChat's traffic arrives: requests are sent on a
fixed schedule whether or not earlier ones were answered, and each latency is counted from the moment the
request was due, not from when a free connection let it go (wrk's closed loop hides a stall: a slow answer
delays the next request instead of making it late, so the stall shows as lower throughput, not latency).

wrk2 (constant-throughput wrk) is not packaged for Debian, and a Python client could not keep a schedule of
thousands of requests a second on the two cores it shares with the servers, so the generator is a small C
program (bench/open_loop.c, epoll, one thread), compiled with cc when the benchmark starts.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

SOURCE = Path(__file__).resolve().parent / "open_loop.c"


@dataclass
class OpenLoopResult:
    name: str
    rate: float  # offered, requests per second
    sent: int
    errors: int
    late_sends: int  # written more than 1 ms after they were due: the generator fell behind
    p50_ms: float
    p99_ms: float
    max_ms: float


def build(directory: Path) -> Path:
    """Compile the generator into `directory`; its path."""
    program = directory / "open_loop"
    subprocess.run(["cc", "-O2", "-Wall", "-o", str(program), str(SOURCE)], check=True)
    return program


def run_open_loop(program: Path, name: str, url: str, requests: list[tuple[str, str]], rate: float) -> OpenLoopResult:
    """Send every (path, body) in `requests` once, at `rate` per second; latencies from their due times."""
    parts = urlsplit(url)
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False, encoding="utf-8") as file:
        file.write("".join(f"{path}\t{body}\n" for path, body in requests))
    try:
        completed = subprocess.run(
            [str(program), parts.hostname or "127.0.0.1", str(parts.port or 80), f"{rate:.3f}", file.name],
            capture_output=True, text=True, timeout=len(requests) / rate + 60,
        )
    finally:
        os.unlink(file.name)
    if completed.returncode != 0:
        raise RuntimeError(f"open_loop failed: {completed.stderr.strip()}")
    figures = {key: int(value) for key, value in (pair.split("=") for pair in completed.stdout.split())}
    return OpenLoopResult(
        name=name, rate=rate, sent=figures["sent"], errors=figures["errors"], late_sends=figures["late"],
        p50_ms=figures["p50_us"] / 1000, p99_ms=figures["p99_us"] / 1000, max_ms=figures["max_us"] / 1000,
    )


def combine(name: str, rounds: list[OpenLoopResult]) -> OpenLoopResult:
    """The median of the rounds' latencies, the largest max; counts summed."""
    return OpenLoopResult(
        name=name, rate=rounds[0].rate, sent=sum(r.sent for r in rounds), errors=sum(r.errors for r in rounds),
        late_sends=sum(r.late_sends for r in rounds), p50_ms=statistics.median(r.p50_ms for r in rounds),
        p99_ms=statistics.median(r.p99_ms for r in rounds), max_ms=max(r.max_ms for r in rounds),
    )
