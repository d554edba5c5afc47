"""Requests per second of this server against WeRoBot and a bare WSGI function, in one run.

Each app runs in turn behind the shipped nginx + uWSGI setup (one worker), loaded by wrk with a signed
message and a fresh MsgId per request. Prints a table with the ratios. `make bench` runs it.
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
from collections.abc import Iterator
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
HEADER = (
    "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>"
    "<FromUserName><![CDATA[oFollower0000000000000000001]]></FromUserName>"
    "<CreateTime>1409735668</CreateTime>"
)
KEYWORD_BODY = (
    HEADER + "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[微博]]></Content><MsgId>%MSGID%</MsgId></xml>"
)
DEFAULT_BODY = (
    HEADER
    + "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[随便说点什么]]></Content><MsgId>%MSGID%</MsgId></xml>"
)
EVENT_BODY = (
    "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>"
    "<FromUserName><![CDATA[oFollower%MSGID%]]></FromUserName><CreateTime>1409735668</CreateTime>"
    "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event>"
    "<EventKey><![CDATA[V1002_ABOUT]]></EventKey></xml>"
)


@dataclass
class Result:
    name: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


def signed_path(encrypt: str | None = None) -> str:
    timestamp, nonce = str(int(time.time())), "20261122"
    path = f"/weixin?signature={make_signature(TOKEN, timestamp, nonce)}&timestamp={timestamp}&nonce={nonce}"
    path += "&openid=oFollower0000000000000000001"
    if encrypt is not None:
        path += f"&encrypt_type=aes&msg_signature={make_signature(TOKEN, timestamp, nonce, encrypt)}"
    return path


def run_wrk(base_url: str, path: str, body: str, seconds: int, connections: int, repeat: bool = False) -> dict:
    """wrk with a fresh MsgId in `body` on every request (or the same one, for the retry case)."""
    with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False, encoding="utf-8") as file:
        file.write(body)
    try:
        env = {"BENCH_BODY": file.name, "BENCH_PATH": path, "BENCH_REPEAT": "1" if repeat else "0"}
        return wrk(base_url, "wrk_message.lua", env, seconds, connections)
    finally:
        os.unlink(file.name)


def run_wrk_pool(base_url: str, requests_: list[tuple[str, str]], seconds: int, connections: int) -> dict:
    """wrk cycling through prepared (path, body) pairs."""
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False, encoding="utf-8") as file:
        file.write("".join(f"{path}\t{body}\n" for path, body in requests_))
    try:
        return wrk(base_url, "wrk_pool.lua", {"BENCH_REQUESTS": file.name}, seconds, connections)
    finally:
        os.unlink(file.name)


def wrk(base_url: str, script: str, env: dict[str, str], seconds: int, connections: int) -> dict:
    command = [
        find_program("wrk"),
        "-t",
        "2",
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "-s",
        str(ROOT / "bench" / script),
        base_url,
    ]
    completed = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=seconds + 60)
    match = re.search(r"RESULT (.*)", completed.stdout)
    if not match:
        raise RuntimeError(f"wrk printed no result:\n{completed.stdout}\n{completed.stderr}")
    return {key: int(value) for key, value in (pair.split("=") for pair in match.group(1).split())}


def to_result(name: str, raw: dict) -> Result:
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["status"] + raw["timeout"]
    return Result(
        name=name,
        requests_per_second=raw["requests"] / (raw["duration_us"] / 1e6),
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        errors=errors,
        requests=raw["requests"],
    )


@contextlib.contextmanager
def serving(directory: Path, wsgi_file: Path | None, env: dict[str, str], workers: int = 1) -> Iterator[str]:
    """nginx + uWSGI (shipped configs) serving `wsgi_file` (None: this project's index.py)."""
    uwsgi = UwsgiServer(directory / "uwsgi", env, workers=workers, wsgi_file=wsgi_file).start()
    nginx = NginxServer(directory / "nginx", uwsgi.socket_path).start()
    try:
        yield nginx.url
    finally:
        nginx.stop()
        uwsgi.stop()


def check_reply(base_url: str, body: str, expect: str, encrypt: str | None = None) -> None:
    """One request before the load: the app must answer what we think it answers."""
    response = requests.post(
        base_url + signed_path(encrypt), data=body.replace("%MSGID%", str(time.time_ns())).encode(), timeout=5
    )
    if response.status_code != 200 or expect not in response.text:
        raise RuntimeError(f"unexpected reply ({response.status_code}): {response.text[:300]}")


def app_env(redis: RedisServer, **extra: str) -> dict[str, str]:
    return {
        "WECHAT_TOKEN": TOKEN,
        "WECHAT_APPID": APPID,
        "WECHAT_ENCODING_AES_KEY": AES_KEY,
        "REDIS_URL": redis.unix_url,
        "LOG_LEVEL": "WARNING",
        "DOTENV_FILE": "/dev/null",
        **extra,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8, help="wrk duration per case")
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as temp:
        directory = Path(temp)
        redis = RedisServer(directory / "redis").start()
        try:
            load = (args.seconds, args.connections)
            with serving(directory / "ours", None, app_env(redis)) as url:
                check_reply(url, KEYWORD_BODY, "<MsgType><![CDATA[news]]>")
                run_wrk(url, signed_path(), KEYWORD_BODY, 2, args.connections)  # warm-up
                results.append(
                    to_result("this project: keyword (plaintext)", run_wrk(url, signed_path(), KEYWORD_BODY, *load))
                )
                results.append(
                    to_result("this project: default reply", run_wrk(url, signed_path(), DEFAULT_BODY, *load))
                )
                results.append(to_result("this project: CLICK event", run_wrk(url, signed_path(), EVENT_BODY, *load)))
                results.append(safe_mode_case(url, *load))
                results.append(
                    to_result(
                        "this project: retry of answered msg",
                        run_wrk(url, signed_path(), KEYWORD_BODY, *load, repeat=True),
                    )
                )
            with serving(directory / "werobot", ROOT / "bench/werobot_app.py", app_env(redis)) as url:
                check_reply(url, KEYWORD_BODY, "<MsgType><![CDATA[news]]>")
                run_wrk(url, signed_path(), KEYWORD_BODY, 2, args.connections)
                results.append(to_result("WeRoBot 1.13.1: keyword", run_wrk(url, signed_path(), KEYWORD_BODY, *load)))
            with serving(directory / "bare", ROOT / "bench/bare_app.py", app_env(redis)) as url:
                run_wrk(url, signed_path(), KEYWORD_BODY, 2, args.connections)
                results.append(to_result("bare WSGI (ceiling)", run_wrk(url, signed_path(), KEYWORD_BODY, *load)))
        finally:
            redis.stop()
    print_table(results, args)
    return 0


def safe_mode_case(url: str, seconds: int, connections: int) -> Result:
    """Safe mode, encrypted both ways: each request is a distinct pre-encrypted message (wrk has no AES)."""
    key = aes_key_from_encoding_key(AES_KEY)
    base_id = time.time_ns() // 1000
    pool = []
    for index in range(5000):
        encrypt = encrypt_message(KEYWORD_BODY.replace("%MSGID%", str(base_id + index)), key, APPID)
        body = (
            f"<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        )
        pool.append((signed_path(encrypt), body))
    check_path, check_body = pool.pop()
    response = requests.post(url + check_path, data=check_body.encode(), timeout=5)
    if "<MsgSignature>" not in response.text:
        raise RuntimeError(f"safe mode check failed: {response.status_code} {response.text[:300]}")
    return to_result("this project: keyword (safe mode)", run_wrk_pool(url, pool, seconds, connections))


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    by_name = {result.name: result for result in results}
    werobot = by_name["WeRoBot 1.13.1: keyword"].requests_per_second
    ceiling = by_name["bare WSGI (ceiling)"].requests_per_second
    machine = f"{platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()}"
    print(f"\n{datetime.date.today()} · {machine}")
    print(
        f"nginx + uWSGI (shipped configs, 1 worker), wrk 2 threads, {args.connections} connections, "
        f"{args.seconds} s per case\n"
    )
    widths = (38, 8, 7, 7, 6, 9, 9)
    header = ("case", "req/s", "p50 ms", "p99 ms", "errors", "× WeRoBot", "× ceiling")
    print(table_row(header, widths))
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
