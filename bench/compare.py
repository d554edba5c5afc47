"""Requests per second of this server against WeRoBot and a bare WSGI function, in one run.

Each app runs behind the shipped nginx + uWSGI setup (one worker), loaded by wrk with signed messages
that are all distinct (a fresh nonce and MsgId per request, as WeChat sends them). The servers run side
by side and the cases take turns, round after round: this VM's share of the host's CPU drifts by tens of
percent within minutes, and a ratio of two figures measured seconds apart is what survives it. Prints a
table with the ratios to WeRoBot and to the ceiling. bench/run.py runs this and the rest of the suite.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import cpu_time  # noqa: E402
import open_loop  # noqa: E402

from devstack.processes import (  # noqa: E402
    ManagedProcess,
    NginxServer,
    RedisServer,
    UwsgiServer,
    find_program,
    free_port,
    wait_for_unix,
    wait_for_uwsgi_workers,
)
from utils import make_signature  # noqa: E402
from weixin.crypto import aes_key_from_encoding_key, encrypt_message  # noqa: E402

TOKEN = "benchtoken"
APPID = "wxbench0000000001"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
ACCOUNT = "gh_10f6c3c3ac5a"
KEYWORD = "微博"
NEWS_MARKER = "<MsgType><![CDATA[news]]></MsgType>"

WEROBOT_ROW = "WeRoBot 1.13.1: keyword"
CEILING_ROW = "bare WSGI (ceiling)"
OURS_KEYWORD_ROW = "this project: keyword (plaintext)"
OURS_UNIX_ROW = f"{OURS_KEYWORD_ROW}, Redis on a unix socket"
OURS_SAFE_ROW = "this project: keyword (safe mode)"
OURS_WARNING_ROW = f"{OURS_KEYWORD_ROW}, LOG_LEVEL=WARNING"
# Before issue 16: every claim waits on its Redis round trip (DEDUPE_WRITE_BEHIND=0).
OURS_SYNC_ROW = "this project: keyword, synchronous Redis claim (DEDUPE_WRITE_BEHIND=0)"
# The same two apps under the minimal uWSGI command line a new user would type (MINIMAL_UWSGI_OPTIONS).
OURS_MINIMAL_ROW = "this project: keyword, minimal uWSGI flags"
WEROBOT_MINIMAL_ROW = "WeRoBot 1.13.1: keyword, minimal uWSGI flags"
# Not a mode we ship (the issues require Redis): shows what the Redis round trip costs.
NO_REDIS_ROW = "this project: keyword, Redis unreachable (dedupe in uWSGI's cache only)"
CPU_COLUMNS = ("uWSGI", "nginx", "Redis", "wrk")

Pool = list[tuple[str, str]]

# Recycling off for every app alike: the memory measurement needs it (a recycle would hide a leak), and a
# recycled lone worker pauses about a second, which wrk's latency correction turns into a p99 near 1 s.
NO_RECYCLING = ("--max-requests", "0", "--max-requests-delta", "0", "--reload-on-rss", "0")


def text_message(number: int, content: str) -> str:
    # CreateTime: now, as WeChat's first deliveries carry (the app claims a fresh one without waiting on Redis).
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
        f"<FromUserName><![CDATA[oFollower{number % 1000:022d}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{7_000_000_000_000 + number}</MsgId></xml>"
    )


def keyword_message(number: int) -> str:
    return text_message(number, KEYWORD)


def default_message(number: int) -> str:
    return text_message(number, "随便说点什么")


def click_event(number: int) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
        f"<FromUserName><![CDATA[oFollower{number:022d}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[V1002_ABOUT]]></EventKey></xml>"
    )


def signed_path(nonce: str, encrypt: str | None = None) -> str:
    timestamp = str(int(time.time()))
    path = f"/weixin?signature={make_signature(TOKEN, timestamp, nonce)}&timestamp={timestamp}&nonce={nonce}"
    if encrypt is not None:
        path += f"&encrypt_type=aes&msg_signature={make_signature(TOKEN, timestamp, nonce, encrypt)}"
    return path


def plain_pool(size: int, make_body: Callable[[int], str], start: int) -> Pool:
    return [(signed_path(str(start + n)), make_body(start + n)) for n in range(size)]


def safe_pool(size: int, start: int) -> Pool:
    key = aes_key_from_encoding_key(AES_KEY)
    pool = []
    for n in range(start, start + size):
        encrypt = encrypt_message(keyword_message(n), key, APPID)
        envelope = f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        pool.append((signed_path(str(n), encrypt), envelope))
    return pool


@dataclass
class Result:
    name: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    pool_size: int = 0
    round_rates: tuple[float, ...] = ()  # req/s of each round, in order (see measure_rounds)
    cpu_us: dict[str, float] = field(default_factory=dict)  # CPU µs per request, by CPU_COLUMNS
    stolen: float = 0.0  # share of the machine's CPU the hypervisor took meanwhile
    repeated: bool = False

    @property
    def pool_repeated(self) -> bool:
        """More requests than distinct messages: some were retries (dedupe hits), so the row flatters us."""
        return self.repeated or (self.pool_size > 0 and self.requests > self.pool_size)


def ratio(result: Result, peer: Result) -> float:
    """How many times `peer`'s rate: the median of the round-by-round ratios (both rows come from the same
    rounds of measure_rounds, each pair measured seconds apart)."""
    pairs = zip(result.round_rates, peer.round_rates, strict=True)
    return statistics.median(ours / theirs for ours, theirs in pairs)


def combine(name: str, rounds: list[Result]) -> Result:
    """One row from a case's rounds: medians of the rates and latencies, CPU over all its requests."""
    requests = sum(result.requests for result in rounds)
    return Result(
        name=name,
        requests_per_second=statistics.median(result.requests_per_second for result in rounds),
        p50_ms=statistics.median(result.p50_ms for result in rounds),
        p99_ms=statistics.median(result.p99_ms for result in rounds),
        errors=sum(result.errors for result in rounds),
        requests=requests,
        round_rates=tuple(result.requests_per_second for result in rounds),
        cpu_us={
            column: sum(result.cpu_us[column] * result.requests for result in rounds) / max(1, requests)
            for column in CPU_COLUMNS
        },
        stolen=statistics.mean(result.stolen for result in rounds),
        repeated=any(result.pool_repeated for result in rounds),
    )


def write_pool(pool: Pool) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False, encoding="utf-8") as file:
        file.write("".join(f"{path}\t{body}\n" for path, body in pool))
    return file.name


WRK_THREADS = 2


def wrk_environment(pool_file: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "BENCH_REQUESTS": pool_file, "BENCH_THREADS": str(WRK_THREADS), **extra}


def wrk_command(base_url: str, seconds: float, connections: int) -> list[str]:
    return [
        find_program("wrk"), "-t", str(WRK_THREADS), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
        "-s", str(ROOT / "bench/wrk_pool.lua"), base_url,
    ]


def parse_wrk(stdout: str, stderr: str) -> dict[str, int]:
    match = re.search(r"RESULT (.*)", stdout)
    if not match:
        raise RuntimeError(f"wrk printed no result:\n{stdout}\n{stderr}")
    return {key: int(value) for key, value in (pair.split("=") for pair in match.group(1).split())}


def run_wrk(base_url: str, pool: Pool, seconds: float, connections: int) -> dict[str, int]:
    """wrk (2 threads) cycling through the prepared requests for `seconds`."""
    pool_file = write_pool(pool)
    try:
        env = wrk_environment(pool_file)
        command = wrk_command(base_url, seconds, connections)
        completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 120)
    finally:
        os.unlink(pool_file)
    return parse_wrk(completed.stdout, completed.stderr)


def send_pool_once(base_url: str, pool: Pool, connections: int, timeout: float = 600) -> dict[str, int]:
    """wrk sending each prepared request once (give or take the few in flight when a thread finishes its
    slice): each thread notes in a file when its slice is done, and wrk is then interrupted."""
    pool_file = write_pool(pool)
    done_file = pool_file + ".done"
    try:
        env = wrk_environment(pool_file, BENCH_DONE_FILE=done_file)
        process = subprocess.Popen(
            wrk_command(base_url, timeout, connections), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError), open(done_file) as file:
                if len(file.read().split()) >= WRK_THREADS:
                    break
            time.sleep(0.02)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # wrk prints its summary on SIGINT
        stdout, stderr = process.communicate(timeout=30)
    finally:
        os.unlink(pool_file)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(done_file)
    return parse_wrk(stdout, stderr)


def to_result(name: str, raw: dict[str, int], pool_size: int = 0) -> Result:
    return Result(
        name=name,
        requests_per_second=raw["requests"] / (raw["duration_us"] / 1e6),
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        errors=raw["connect"] + raw["read"] + raw["write"] + raw["status"] + raw["timeout"],
        requests=raw["requests"],
        pool_size=pool_size,
    )


@dataclass
class Served:
    url: str
    uwsgi: UwsgiServer | MinimalUwsgi
    nginx: NginxServer

    def process_groups(self, redis: RedisServer) -> dict[str, list[int]]:
        """The pids behind each CPU column but wrk's."""
        assert self.uwsgi.process is not None and self.nginx.process is not None and redis.process is not None
        return {
            "uWSGI": cpu_time.process_tree(self.uwsgi.process.pid),
            "nginx": cpu_time.process_tree(self.nginx.process.pid),
            "Redis": [redis.process.pid],
        }


@dataclass
class Case:
    """One row of a table: a server and the requests it is loaded with (a fresh pool every round)."""

    name: str
    served: Served
    make_pool: Callable[[], Pool]
    marker: str = NEWS_MARKER
    distinct: bool = True


# What a user trying the apps without our uwsgi.xml types: no cache, no threads option, no tuning.
MINIMAL_UWSGI_OPTIONS = ("--master", "--processes", "1", "--chmod-socket=666", *NO_RECYCLING)


@dataclass
class MinimalUwsgi:
    """uWSGI with the minimal command line instead of the shipped uwsgi.xml (the same shape as UwsgiServer)."""

    directory: Path
    env: dict[str, str]
    wsgi_file: Path
    process: ManagedProcess | None = None

    @property
    def socket_path(self) -> Path:
        return self.directory / "uwsgi.sock"

    def start(self) -> MinimalUwsgi:
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [find_program("uwsgi"), "--socket", str(self.socket_path), "--chdir", str(ROOT),
                "--wsgi-file", str(self.wsgi_file), *MINIMAL_UWSGI_OPTIONS]
        self.process = ManagedProcess("uwsgi", argv, self.directory / "uwsgi.log", env={**os.environ, **self.env})
        self.process.start()
        wait_for_unix(self.socket_path)
        wait_for_uwsgi_workers(self.process)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop(timeout=15)


@contextlib.contextmanager
def serving(
    directory: Path, wsgi_file: Path | None, env: dict[str, str], workers: int = 1,
    extra_options: Sequence[str] = NO_RECYCLING, minimal: bool = False,
) -> Iterator[Served]:
    """nginx + uWSGI with the shipped configs serving `wsgi_file` (None: this project's index.py); with
    `minimal`, uWSGI from MINIMAL_UWSGI_OPTIONS instead of uwsgi.xml (nginx stays the shipped site)."""
    if minimal:
        uwsgi = MinimalUwsgi(directory / "uwsgi", env, wsgi_file or ROOT / "index.py").start()
    else:
        uwsgi = UwsgiServer(
            directory / "uwsgi", env, workers=workers, wsgi_file=wsgi_file, extra_options=tuple(extra_options)
        ).start()
    try:
        nginx = NginxServer(directory / "nginx", uwsgi.socket_path).start()
        try:
            yield Served(nginx.url, uwsgi, nginx)
        finally:
            nginx.stop()
    finally:
        uwsgi.stop()


def expect_reply(base_url: str, request: tuple[str, str], marker: str) -> None:
    """One request before the load: the app must answer what the case claims it answers."""
    path, body = request
    response = requests.post(base_url + path, data=body.encode(), timeout=5)
    if response.status_code != 200 or marker not in response.text:
        raise RuntimeError(f"unexpected reply ({response.status_code}): {response.text[:300]}")


def app_env(
    redis: RedisServer, log_level: str = "INFO", replies_file: Path | None = None, unix: bool = False
) -> dict[str, str]:
    """Redis at its default address over TCP (a new user's REDIS_URL) unless `unix`."""
    env = {
        "WECHAT_TOKEN": TOKEN, "WECHAT_APPID": APPID, "WECHAT_ENCODING_AES_KEY": AES_KEY,
        "REDIS_URL": redis.unix_url if unix else redis.url, "LOG_LEVEL": log_level, "DOTENV_FILE": "/dev/null",
    }
    if replies_file is not None:
        env["REPLIES_FILE"] = str(replies_file)
    return env


class Bench:
    """wrk settings of one run, and a supply of message numbers that never repeats within it."""

    def __init__(self, seconds: float, connections: int, warm_up_seconds: float = 2, rate_bound: int = 12_000) -> None:
        self.seconds = seconds
        self.connections = connections
        self.warm_up_seconds = warm_up_seconds
        # Enough distinct requests that none repeats within a case (a repeat would be a dedupe hit):
        # `rate_bound` is above what one worker of ours answers per second on a small machine.
        self.pool_size = max(2_000, int(seconds * rate_bound))
        self.next_number = time.time_ns() // 1000

    def numbers(self, count: int | None = None) -> int:
        start = self.next_number
        self.next_number += count or self.pool_size
        return start

    def keyword_pool(self, size: int | None = None) -> Pool:
        size = size or self.pool_size
        return plain_pool(size, keyword_message, self.numbers(size))

    def measure(self, name: str, url: str, pool: Pool, marker: str, distinct: bool = True) -> Result:
        """`distinct`: the pool's messages are all different (a repeat would be a dedupe hit)."""
        expect_reply(url, pool[-1], marker)
        raw = run_wrk(url, pool[:-1], self.seconds, self.connections)
        result = to_result(name, raw, len(pool) - 1 if distinct else 0)
        print(f"  {name}: {result.requests_per_second:.0f} req/s", file=sys.stderr, flush=True)
        return result

    def measure_case(self, case: Case, redis: RedisServer) -> Result:
        """One round of a case, with the CPU each process spent on it."""
        pool = case.make_pool()
        groups = case.served.process_groups(redis)
        before = {column: cpu_time.cpu_seconds(pids) for column, pids in groups.items()}
        wrk_before = cpu_time.children_cpu_seconds()
        counters = cpu_time.cpu_counters()
        result = self.measure(case.name, case.served.url, pool, case.marker, case.distinct)
        stolen = cpu_time.stolen_fraction(counters, cpu_time.cpu_counters())
        spent = {column: cpu_time.cpu_seconds(pids) - before[column] for column, pids in groups.items()}
        spent["wrk"] = cpu_time.children_cpu_seconds() - wrk_before
        requests = max(1, result.requests)
        result.cpu_us = {column: spent[column] / requests * 1e6 for column in CPU_COLUMNS}
        result.stolen = stolen
        return result

    def measure_rounds(self, cases: list[Case], rounds: int, redis: RedisServer) -> list[Result]:
        """Every case once per round, in the same order each round; one combined row per case."""
        collected: dict[str, list[Result]] = {case.name: [] for case in cases}
        for _ in range(rounds):
            for case in cases:
                collected[case.name].append(self.measure_case(case, redis))
        return [combine(case.name, collected[case.name]) for case in cases]

    def warm_up(self, url: str) -> None:
        if self.warm_up_seconds > 0:
            run_wrk(url, self.keyword_pool(2_000), self.warm_up_seconds, self.connections)


@dataclass
class PeerResults:
    closed: list[Result]  # wrk, closed loop: the main table
    open: list[open_loop.OpenLoopResult]  # a constant rate of half WeRoBot's saturated rate



def measure_peers(bench: Bench, directory: Path, redis: RedisServer, rounds: int) -> PeerResults:
    """The main table: ours (every case, INFO as in production), ours at WARNING, WeRoBot, the ceiling, ours
    without Redis (for the CPU table only) and both apps under minimal uWSGI flags, all running side by
    side, measured in rounds; then latency at a constant rate of half WeRoBot's, in rounds too."""
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    with contextlib.ExitStack() as stack:

        def start(name: str, wsgi_file: Path | None, env: dict[str, str], minimal: bool = False) -> Served:
            served = stack.enter_context(serving(directory / name, wsgi_file, env, minimal=minimal))
            bench.warm_up(served.url)
            return served

        ours = start("ours", None, app_env(redis))
        ours_unix = start("ours-unix", None, app_env(redis, unix=True))
        ours_sync = start("ours-sync", None, {**app_env(redis), "DEDUPE_WRITE_BEHIND": "0"})
        ours_minimal = start("ours-minimal", None, app_env(redis), minimal=True)
        werobot_minimal = start("werobot-minimal", ROOT / "bench/werobot_app.py", app_env(redis), minimal=True)
        warning = start("ours-warning", None, app_env(redis, "WARNING"))
        no_redis = start("ours-no-redis", None, {**app_env(redis), "REDIS_URL": unreachable})
        werobot = start("werobot", ROOT / "bench/werobot_app.py", app_env(redis))
        bare = start("bare", ROOT / "bench/bare_app.py", app_env(redis))

        def safe() -> Pool:
            size = bench.pool_size // 2  # encryption makes this case slower; the pool still outlasts it
            return safe_pool(size, bench.numbers(size))

        cases = [
            Case(OURS_KEYWORD_ROW, ours, bench.keyword_pool),
            Case(OURS_UNIX_ROW, ours_unix, bench.keyword_pool),
            Case(OURS_WARNING_ROW, warning, bench.keyword_pool),
            Case("this project: default reply (echo)", ours,
                 lambda: plain_pool(bench.pool_size, default_message, bench.numbers()), "随便说点什么"),
            Case("this project: CLICK event", ours,
                 lambda: plain_pool(bench.pool_size, click_event, bench.numbers()), "text"),
            Case(OURS_SAFE_ROW, ours, safe, "MsgSignature"),
            # One message: the check answers it first, then each wrk thread re-sends it (a thread with an
            # empty slice of the pool would send nothing valid and count errors).
            Case("this project: retry of answered msg", ours, lambda: bench.keyword_pool(1) * 3, distinct=False),
            Case(WEROBOT_ROW, werobot, bench.keyword_pool),
            Case(CEILING_ROW, bare, bench.keyword_pool, "<xml>"),
            Case(NO_REDIS_ROW, no_redis, bench.keyword_pool),
            Case(OURS_SYNC_ROW, ours_sync, bench.keyword_pool),
            Case(OURS_MINIMAL_ROW, ours_minimal, bench.keyword_pool),
            Case(WEROBOT_MINIMAL_ROW, werobot_minimal, bench.keyword_pool),
        ]
        closed = bench.measure_rounds(cases, rounds, redis)
        rate = by_name(closed)[WEROBOT_ROW].requests_per_second / 2
        program = open_loop.build(directory)
        constant = [(OURS_KEYWORD_ROW, ours), (OURS_UNIX_ROW, ours_unix), (WEROBOT_ROW, werobot)]
        collected: dict[str, list[open_loop.OpenLoopResult]] = {name: [] for name, _ in constant}
        for _ in range(rounds):
            for name, served in constant:
                pool = bench.keyword_pool(max(100, int(rate * bench.seconds)))
                result = open_loop.run_open_loop(program, name, served.url, pool, rate)
                print(f"  {name} at {rate:.0f}/s: p99 {result.p99_ms:.2f} ms", file=sys.stderr, flush=True)
                collected[name].append(result)
        return PeerResults(closed, [open_loop.combine(name, collected[name]) for name, _ in constant])


def format_table(results: list[Result], peers: Sequence[tuple[str, Result]]) -> str:
    """req/s, latency and errors of each row, and its ratio to each peer (a column per peer)."""
    names = [result.name + (" (pool repeated!)" if result.pool_repeated else "") for result in results]
    widths = (max(44, *map(len, names)), 7, 7, 7, 6, *(max(9, len(label)) for label, _ in peers))
    header = ("case", "req/s", "p50 ms", "p99 ms", "errors", *(label for label, _ in peers))
    lines = [table_row(header, widths), "|" + "|".join("-" * (width + 2) for width in widths) + "|"]
    for name, result in zip(names, results, strict=True):
        cells = (
            name, f"{result.requests_per_second:.0f}", f"{result.p50_ms:.2f}", f"{result.p99_ms:.2f}",
            str(result.errors), *(f"{ratio(result, peer):.2f}" for _, peer in peers),
        )
        lines.append(table_row(cells, widths))
    return "\n".join(lines)


def main_table(results: list[Result]) -> str:
    """The shipped cases, WeRoBot and the ceiling, with their ratios to WeRoBot and to the ceiling."""
    named = by_name(results)
    shown = [result for result in results if result.name not in (NO_REDIS_ROW, OURS_MINIMAL_ROW, WEROBOT_MINIMAL_ROW)]
    return format_table(shown, [("× WeRoBot", named[WEROBOT_ROW]), ("× ceiling", named[CEILING_ROW])])


def open_loop_table(results: list[open_loop.OpenLoopResult]) -> str:
    widths = (max(44, *(len(result.name) for result in results)), 8, 7, 7, 7, 7, 6, 10)
    header = ("case", "offered/s", "sent", "p50 ms", "p99 ms", "max ms", "errors", "late sends")
    lines = [table_row(header, widths), "|" + "|".join("-" * (width + 2) for width in widths) + "|"]
    for result in results:
        lines.append(table_row((
            result.name, f"{result.rate:.0f}", str(result.sent), f"{result.p50_ms:.2f}", f"{result.p99_ms:.2f}",
            f"{result.max_ms:.1f}", str(result.errors), str(result.late_sends),
        ), widths))
    return "\n".join(lines)


def table_row(cells: Sequence[str], widths: Sequence[int]) -> str:
    first, *rest = zip(cells, widths, strict=True)
    return f"| {first[0]:<{first[1]}} | " + " | ".join(f"{cell:>{width}}" for cell, width in rest) + " |"


def by_name(results: list[Result]) -> dict[str, Result]:
    return {result.name: result for result in results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3, help="wrk duration per case and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    bench = Bench(args.seconds, args.connections)
    with tempfile.TemporaryDirectory(prefix="bench-") as temp:
        directory = Path(temp)
        redis = RedisServer(directory / "redis").start()
        try:
            results = measure_peers(bench, directory, redis, args.rounds)
        finally:
            redis.stop()
    print(main_table(results.closed))
    print(open_loop_table(results.open))
    return 0


if __name__ == "__main__":
    sys.exit(main())
