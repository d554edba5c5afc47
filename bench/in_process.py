"""In-process cost per message: the WSGI callables called directly in a loop, with a profile of ours.

Run by bench/run.py in a subprocess whose environment configures the app (index.py reads it at import:
WECHAT_TOKEN, REDIS_URL on a unix socket, LOG_LEVEL, ...) and whose stderr (the request log) goes to a
file, as under uWSGI. Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import compare  # noqa: E402

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def environ_for(path: str, body: str) -> dict[str, Any]:
    """What uWSGI hands the app for a POST through nginx (the keys WSGI and the apps read)."""
    path_info, _, query = path.partition("?")
    data = body.encode("utf-8")
    return {
        "REQUEST_METHOD": "POST", "PATH_INFO": path_info, "QUERY_STRING": query, "SCRIPT_NAME": "",
        "CONTENT_TYPE": "text/xml", "CONTENT_LENGTH": str(len(data)), "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1",
        "wsgi.input": io.BytesIO(data), "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http", "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }


def _start_response(status: str, headers: list, exc_info: Any = None) -> None:
    _start_response.status = status  # type: ignore[attr-defined]


def call(app: WsgiApp, environ: dict[str, Any]) -> bytes:
    chunks = app(environ, _start_response)
    try:
        return b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def cost_per_message(app: WsgiApp, pool: compare.Pool, marker: str) -> dict[str, float]:
    """Median and mean µs per call over the pool (environs built before the clock starts)."""
    environs = [environ_for(path, body) for path, body in pool]
    reply = call(app, environs.pop()).decode("utf-8", "replace")
    if marker not in reply:
        raise RuntimeError(f"unexpected reply: {reply[:300]}")
    samples = []
    clock = time.perf_counter_ns
    started = clock()
    for environ in environs:
        before = clock()
        call(app, environ)
        samples.append(clock() - before)
    total = clock() - started
    return {"median_us": statistics.median(samples) / 1000, "mean_us": total / len(environs) / 1000}


def profile_text(app: WsgiApp, pool: compare.Pool, entries: int) -> dict[str, str]:
    environs = [environ_for(path, body) for path, body in pool]
    profiler = cProfile.Profile()
    profiler.enable()
    for environ in environs:
        call(app, environ)
    profiler.disable()
    texts = {}
    for order in ("cumulative", "tottime"):
        stream = io.StringIO()
        stats = pstats.Stats(profiler, stream=stream)
        stats.strip_dirs().sort_stats(order).print_stats(entries)
        texts[order] = trim_profile(stream.getvalue())
    return texts


def trim_profile(text: str) -> str:
    """pstats' table without its preamble (the call-count line is kept)."""
    lines = text.strip("\n").splitlines()
    keep = [line for line in lines if "function calls" in line]
    start = next((index for index, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    return "\n".join([*keep, "", *lines[start:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000, help="messages per case")
    parser.add_argument("--profile-messages", type=int, default=5_000)
    parser.add_argument("--profile-entries", type=int, default=15)
    args = parser.parse_args(argv)
    count = args.messages + 1

    import bare_app
    import werobot_app

    import index  # configures itself from the environment

    bench = compare.Bench(seconds=1, connections=1)
    ours = index.application
    root = logging.getLogger()
    level = logging.getLevelName(root.level)
    rows: list[dict[str, Any]] = []

    def row(name: str, app: WsgiApp, pool: compare.Pool, marker: str) -> None:
        rows.append({"case": name, **cost_per_message(app, pool, marker)})

    keyword = compare.NEWS_MARKER
    row(f"this project: keyword (plaintext), {level}", ours, bench.keyword_pool(count), keyword)
    row(f"this project: CLICK event, {level}", ours, compare.plain_pool(count, compare.click_event,
                                                                       bench.numbers(count)), "text")
    row(f"this project: keyword (safe mode), {level}", ours, compare.safe_pool(count, bench.numbers(count)),
        "MsgSignature")
    profile = profile_text(ours, bench.keyword_pool(args.profile_messages), args.profile_entries)
    root.setLevel(logging.WARNING)
    row("this project: keyword (plaintext), WARNING", ours, bench.keyword_pool(count), keyword)
    row("WeRoBot 1.13.1: keyword", werobot_app.application, bench.keyword_pool(count), keyword)
    row("bare WSGI (ceiling)", bare_app.application, bench.keyword_pool(count), "<xml>")
    json.dump({"level": level, "messages": args.messages, "rows": rows, "profile": profile,
               "profile_messages": args.profile_messages}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
