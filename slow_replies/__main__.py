"""`python -m slow_replies worker [--burst]`: run the background-reply worker (needs REDIS_URL, WECHAT_APPID)."""

from __future__ import annotations

import argparse
import sys

from weixin.config import ConfigError, load_settings
from weixin.logs import configure_stream_logging, configured_secrets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slow_replies", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run handlers marked `background: true` and deliver their replies")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(require_token=False)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    if not settings.appid:
        print("configuration error: WECHAT_APPID is required (the worker sends with this account's token)",
              file=sys.stderr)
        return 2
    configure_stream_logging(settings.log_level, configured_secrets(settings))
    from slow_replies.worker import run_worker

    return run_worker(settings, burst=args.burst)


if __name__ == "__main__":
    sys.exit(main())
