"""`make run`: the whole service on this machine with one command; Ctrl-C stops all of it.

Starts a private Redis (unless REDIS_URL is set), the app under uWSGI with the shipped uwsgi.xml, and
nginx with the shipped site config on http://127.0.0.1:8080 (PORT to change it). Without a WECHAT_TOKEN
it runs with sandbox credentials, so that the simulator can talk to it at once.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from dotenv import dotenv_values

from config import ConfigError, load_settings
from processes import NginxServer, RedisServer, UwsgiServer

ROOT = Path(__file__).resolve().parent
RUN_DIRECTORY = ROOT / "run"
SANDBOX_DEFAULTS = {
    "WECHAT_TOKEN": "sandboxtoken",
    "WECHAT_APPID": "wxsandbox00000001",
    "WECHAT_APPSECRET": "sandbox-app-secret",
    "WECHAT_ENCODING_AES_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
}


def environment() -> tuple[dict[str, str], bool]:
    """The app's environment, and whether it runs on sandbox credentials (no WECHAT_TOKEN configured)."""
    env = dict(os.environ)
    try:
        load_settings(env)
        return env, False
    except ConfigError as error:
        if "WECHAT_TOKEN is required" not in str(error):
            raise
    return {**env, **SANDBOX_DEFAULTS}, True


def redis_configured(env: dict[str, str]) -> bool:
    if env.get("REDIS_URL"):
        return True
    dotenv = Path(env.get("DOTENV_FILE") or ROOT / ".env")
    return dotenv.is_file() and "REDIS_URL" in dotenv_values(dotenv)


def stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    try:
        env, sandbox_credentials = environment()
        settings = load_settings(env)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    port = int(os.environ.get("PORT", "8080"))
    RUN_DIRECTORY.mkdir(exist_ok=True)
    with ExitStack() as stack:
        if not redis_configured(env):
            redis = RedisServer(RUN_DIRECTORY / "redis").start()
            stack.callback(redis.stop)
            env["REDIS_URL"] = redis.url
            print(f"redis:   private server on {redis.url} (data is not kept)")
        else:
            print(f"redis:   {env.get('REDIS_URL', settings.redis_url)}")
        app = UwsgiServer(RUN_DIRECTORY / "uwsgi", env).start()
        stack.callback(app.stop)
        nginx = NginxServer(RUN_DIRECTORY / "nginx", app.socket_path, http_port=port).start()
        stack.callback(nginx.stop)

        url = f"{nginx.url}/weixin"
        print(f"app:     uWSGI (shipped uwsgi.xml), log in {app.process.log_path}")
        print(f"nginx:   {nginx.url} and {nginx.https_url} (self-signed), log in {nginx.directory}")
        print(f"\nWeChat endpoint: {url}")
        if sandbox_credentials:
            print("No WECHAT_TOKEN configured: running with the sandbox's credentials (token 'sandboxtoken').")
        credentials = ""
        if sandbox_credentials:
            credentials = " ".join(
                f"--{flag} {SANDBOX_DEFAULTS[name]}"
                for flag, name in (
                    ("token", "WECHAT_TOKEN"), ("appid", "WECHAT_APPID"), ("aes-key", "WECHAT_ENCODING_AES_KEY")
                )
            )
            credentials = " " + credentials
        print("Try it:")
        print(f"  .venv/bin/python -m sandbox verify {url}{credentials}")
        print(f"  .venv/bin/python -m sandbox send {url}{credentials} --content 微博")
        print(f"  .venv/bin/python -m sandbox send {url}{credentials} --content 微博 --mode safe")
        print(f"  .venv/bin/python -m sandbox chat sandbox/conversations/demo.yaml --url {url}{credentials}")
        print("Press Ctrl-C to stop everything.\n")
        signal.signal(signal.SIGTERM, stop_on_sigterm)
        try:
            while all(server.process.alive() for server in (app, nginx)):
                time.sleep(0.5)
            print("a server stopped unexpectedly; see the logs above", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\nstopping...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
