"""Requests per second of this server against WeRoBot and a bare WSGI function, in one run.

Each app runs in turn behind the shipped nginx + uWSGI setup (one worker), loaded by wrk with signed
messages that are all distinct (a fresh nonce and MsgId per request, as WeChat sends them). Prints a
table with the ratios to WeRoBot and to the ceiling. `make bench` runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from processes import NginxServer, RedisServer, UwsgiServer, find_program  # noqa: E402
from utils import make_signature  # noqa: E402
from wechat_crypto import aes_key_from_encoding_key, encrypt_message  # noqa: E402

TOKEN = "benchtoken"
APPID = "wxbench0000000001"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
ACCOUNT = "gh_10f6c3c3ac5a"


def text_message(number: int, content: str) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
        f"<FromUserName><![CDATA[oFollower{number % 1000:022d}]]></FromUserName>"
        f"<CreateTime>{1700000000 + number}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{7_000_000_000_000 + number}</MsgId></xml>"
    )


def click_event(number: int) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
        f"<FromUserName><![CDATA[oFollower{number:022d}]]></FromUserName>"
        f"<CreateTime>{1700000000 + number}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[V1002_ABOUT]]></EventKey></xml>"
    )


def signed_path(nonce: str, encrypt: str | None = None) -> str:
    timestamp = str(int(time.time()))
    path = f"/weixin?signature={make_signature(TOKEN, timestamp, nonce)}&timestamp={timestamp}&nonce={nonce}"
    if encrypt is not None:
        path += f"&encrypt_type=aes&msg_signature={make_signature(TOKEN, timestamp, nonce, encrypt)}"
    return path


def plain_pool(size: int, make_body: Callable[[int], str], start: int) -> list[tuple[str, str]]:
    return [(signed_path(str(start + n)), make_body(start + n)) for n in range(size)]


def safe_pool(size: int, start: int) -> list[tuple[str, str]]:
    key = aes_key_from_encoding_key(AES_KEY)
    pool = []
    for n in range(start, start + size):
        encrypt = encrypt_message(text_message(n, "微博"), key, APPID)
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


def run_wrk(base_url: str, pool: list[tuple[str, str]], seconds: int, connections: int) -> dict[str, int]:
    """wrk (2 threads) cycling through the prepared requests."""
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False, encoding="utf-8") as file:
        file.write("".join(f"{path}\t{body}\n" for path, body in pool))
    try:
        command = [
            find_program("wrk"), "-t", "2", "-c", str(connections), "-d", f"{seconds}s",
            "-s", str(ROOT / "bench/wrk_pool.lua"), base_url,
        ]
        env = {**os.environ, "BENCH_REQUESTS": file.name}
        completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 120)
    finally:
        os.unlink(file.name)
    match = re.search(r"RESULT (.*)", completed.stdout)
    if not match:
        raise RuntimeError(f"wrk printed no result:\n{completed.stdout}\n{completed.stderr}")
    return {key: int(value) for key, value in (pair.split("=") for pair in match.group(1).split())}


def to_result(name: str, raw: dict[str, int]) -> Result:
    return Result(
        name=name,
        requests_per_second=raw["requests"] / (raw["duration_us"] / 1e6),
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        errors=raw["connect"] + raw["read"] + raw["write"] + raw["status"] + raw["timeout"],
    )


@contextlib.contextmanager
def serving(directory: Path, wsgi_file: Path | None, env: dict[str, str], workers: int = 1) -> Iterator[str]:
    """nginx + uWSGI with the shipped configs serving `wsgi_file` (None: this project's index.py)."""
    uwsgi = UwsgiServer(directory / "uwsgi", env, workers=workers, wsgi_file=wsgi_file).start()
    nginx = NginxServer(directory / "nginx", uwsgi.socket_path).start()
    try:
        yield nginx.url
    finally:
        nginx.stop()
        uwsgi.stop()


def expect_reply(base_url: str, request: tuple[str, str], marker: str) -> None:
    """One request before the load: the app must answer what the case claims it answers."""
    path, body = request
    response = requests.post(base_url + path, data=body.encode(), timeout=5)
    if response.status_code != 200 or marker not in response.text:
        raise RuntimeError(f"unexpected reply ({response.status_code}): {response.text[:300]}")


def app_env(redis: RedisServer) -> dict[str, str]:
    return {
        "WECHAT_TOKEN": TOKEN, "WECHAT_APPID": APPID, "WECHAT_ENCODING_AES_KEY": AES_KEY,
        "REDIS_URL": redis.unix_url, "LOG_LEVEL": "WARNING", "DOTENV_FILE": "/dev/null",
    }


class Bench:
    def __init__(self, seconds: int, connections: int) -> None:
        self.seconds = seconds
        self.connections = connections
        # Enough distinct requests that none repeats within a case (a repeat would be a dedupe hit).
        self.pool_size = max(20_000, seconds * 6_000)
        self.next_number = time.time_ns() // 1000
        self.results: list[Result] = []

    def numbers(self) -> int:
        start = self.next_number
        self.next_number += self.pool_size
        return start

    def measure(self, name: str, url: str, pool: list[tuple[str, str]], marker: str) -> None:
        expect_reply(url, pool[-1], marker)
        self.results.append(to_result(name, run_wrk(url, pool[:-1], self.seconds, self.connections)))

    def warm_up(self, url: str) -> None:
        run_wrk(url, plain_pool(2_000, lambda n: text_message(n, "微博"), self.numbers()), 2, self.connections)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8, help="wrk duration per case")
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    bench = Bench(args.seconds, args.connections)
    news = "<MsgType><![CDATA[news]]></MsgType>"
    with tempfile.TemporaryDirectory(prefix="bench-") as temp:
        directory = Path(temp)
        redis = RedisServer(directory / "redis").start()
        try:
            size = bench.pool_size
            with serving(directory / "ours", None, app_env(redis)) as url:
                bench.warm_up(url)
                keyword = plain_pool(size, lambda n: text_message(n, "微博"), bench.numbers())
                bench.measure("this project: keyword (plaintext)", url, keyword, news)
                default = plain_pool(size, lambda n: text_message(n, "随便说点什么"), bench.numbers())
                bench.measure("this project: default reply (echo)", url, default, "随便说点什么")
                clicks = plain_pool(size, click_event, bench.numbers())
                bench.measure("this project: CLICK event", url, clicks, "text")
                safe = safe_pool(size, bench.numbers())
                bench.measure("this project: keyword (safe mode)", url, safe, "MsgSignature")
                retry = plain_pool(1, lambda n: text_message(n, "微博"), bench.numbers())
                bench.measure("this project: retry of answered msg", url, retry * 2, news)
            with serving(directory / "werobot", ROOT / "bench/werobot_app.py", app_env(redis)) as url:
                bench.warm_up(url)
                keyword = plain_pool(size, lambda n: text_message(n, "微博"), bench.numbers())
                bench.measure("WeRoBot 1.13.1: keyword", url, keyword, news)
            with serving(directory / "bare", ROOT / "bench/bare_app.py", app_env(redis)) as url:
                bench.warm_up(url)
                keyword = plain_pool(size, lambda n: text_message(n, "微博"), bench.numbers())
                bench.measure("bare WSGI (ceiling)", url, keyword, "<xml>")
        finally:
            redis.stop()
    print_table(bench.results, args)
    return 0


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    by_name = {result.name: result for result in results}
    werobot = by_name["WeRoBot 1.13.1: keyword"].requests_per_second
    ceiling = by_name["bare WSGI (ceiling)"].requests_per_second
    machine = f"{platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()}"
    print(f"\n{datetime.date.today()} · {machine}")
    print(
        f"nginx + uWSGI (shipped configs, 1 worker), wrk 2 threads, {args.connections} connections, "
        f"{args.seconds} s per case, every request a distinct signed message\n"
    )
    widths = (38, 8, 7, 7, 6, 9, 9)
    print(table_row(("case", "req/s", "p50 ms", "p99 ms", "errors", "× WeRoBot", "× ceiling"), widths))
    print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    for result in results:
        cells = (
            result.name, f"{result.requests_per_second:.0f}", f"{result.p50_ms:.2f}", f"{result.p99_ms:.2f}",
            str(result.errors), f"{result.requests_per_second / werobot:.2f}",
            f"{result.requests_per_second / ceiling:.2f}",
        )
        print(table_row(cells, widths))


def table_row(cells: tuple[str, ...], widths: tuple[int, ...]) -> str:
    first, *rest = zip(cells, widths, strict=True)
    return f"| {first[0]:<{first[1]}} | " + " | ".join(f"{cell:>{width}}" for cell, width in rest) + " |"


if __name__ == "__main__":
    sys.exit(main())
