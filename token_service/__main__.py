"""`python -m token_service run|get|status|refresh`: the daemon and its command-line tools."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType

import redis

from token_service.consumer import TokenUnavailable, get_access_token, get_jsapi_ticket, request_refresh
from token_service.settings import TokenSettings, load_token_settings, require_secret
from token_service.store import ACCESS_TOKEN, JSAPI_TICKET, TokenStore, masked
from weixin import redis_clients
from weixin.config import ConfigError, redact_url
from weixin.logs import configure_stream_logging, configured_secrets


def _client(settings: TokenSettings) -> redis.Redis:
    return redis_clients.daemon(settings.redis_url)


def command_run(settings: TokenSettings, args: argparse.Namespace) -> int:
    from token_service.daemon import TokenDaemon

    require_secret(settings)
    daemon = TokenDaemon(settings, _client(settings))

    def on_signal(signum: int, frame: FrameType | None) -> None:
        daemon.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return daemon.run()


def command_get(settings: TokenSettings, args: argparse.Namespace) -> int:
    reader = get_jsapi_ticket if args.jsapi_ticket else get_access_token
    try:
        print(reader(_client(settings), settings.appid))
    except TokenUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _describe(store: TokenStore, kind: str, now: float) -> tuple[list[str], bool]:
    credential = store.read(kind)
    meta = store.meta(kind)
    lines = [f"{kind}: key {store.key(kind)}"]
    if credential is None:
        lines.append("  value: none")
    else:
        lines.append(f"  value: {masked(credential.value)} (source {credential.source})")
        age, remaining = now - credential.fetched_at, credential.remaining(now)
        lines.append(f"  age: {age:.0f}s, remaining life: {remaining:.0f}s")
        ttl = store.client.pttl(store.key(kind))
        lines.append(f"  Redis TTL: {max(ttl, 0) / 1000:.0f}s")
    if meta.get("last_error"):
        since = now - float(meta.get("last_error_at") or now)
        lines.append(f"  last error ({since:.0f}s ago): {meta['last_error']}")
    else:
        lines.append("  last error: none")
    return lines, credential is not None


def command_status(settings: TokenSettings, args: argparse.Namespace) -> int:
    store = TokenStore(_client(settings), settings.appid)
    now = time.time()
    try:
        holder = store.lock_holder()
        print(f"appid: {settings.appid}")
        print(f"leader: {holder or 'none (no daemon holds the lock)'}")
        healthy = True
        for kind in (ACCESS_TOKEN, JSAPI_TICKET):
            lines, present = _describe(store, kind, now)
            print("\n".join(lines))
            if kind == ACCESS_TOKEN:
                healthy = present
    except redis.RedisError as error:
        print(f"error: cannot read Redis ({type(error).__name__})", file=sys.stderr)
        return 2
    return 0 if healthy else 1


def command_refresh(settings: TokenSettings, args: argparse.Namespace) -> int:
    client = _client(settings)
    bad = args.token
    if bad is None:
        try:
            bad = get_access_token(client, settings.appid)
        except TokenUnavailable as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    try:
        fresh = request_refresh(bad, wait=args.wait, redis_client=client, appid=settings.appid)
    except TokenUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"refreshed: {masked(bad)} -> {masked(fresh)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m token_service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the refresh daemon (several may run; one leads)")
    get = commands.add_parser("get", help="print the current access_token (exit 1 if none)")
    get.add_argument("--jsapi-ticket", action="store_true", help="print the jsapi_ticket instead")
    commands.add_parser("status", help="age, remaining life, leader, last error")
    refresh = commands.add_parser("refresh", help="ask the daemon to replace the current (or given) token")
    refresh.add_argument("--token", help="the token WeChat rejected (default: the stored one)")
    refresh.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the new token")
    args = parser.parse_args(argv)
    try:
        settings = load_token_settings()
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    # The daemon and the tools alike: what they log (Redis, HTTP) passes the redaction filter.
    configure_stream_logging(settings.log_level, configured_secrets(settings),
                             "%(asctime)s %(levelname)s token_service[%(process)d] %(message)s")
    handler = {"run": command_run, "get": command_get, "status": command_status, "refresh": command_refresh}
    try:
        return handler[args.command](settings, args)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    except redis.ConnectionError as error:
        where = redact_url(settings.redis_url)
        print(f"error: cannot reach Redis at {where} ({type(error).__name__})", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
