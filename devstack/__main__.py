"""`make run`: the whole service on this machine with one command; Ctrl-C stops all of it.

Starts a private Redis (unless REDIS_URL is set), the sandbox WeChat platform (unless a real AppID and
AppSecret are set), token_service, the app under uWSGI with the shipped uwsgi.xml, and nginx with the
shipped site config on http://127.0.0.1:8080 (PORT to change it; RUN_DIRECTORY for the logs, ./run).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from dotenv import dotenv_values

from devstack.processes import (
    NginxServer,
    RedisServer,
    SandboxProcess,
    SlowReplyWorker,
    TokenServiceProcess,
    UwsgiServer,
)
from sandbox.chat_model import DEFAULT_AI_KEY, SANDBOX_MODEL
from sandbox.platform import DEFAULT_APPID, DEFAULT_SECRET
from weixin.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent
# Used only where nothing is configured; all of them are public, made-up values.
SANDBOX_TOKEN = "sandboxtoken"
SANDBOX_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def configured(env: dict[str, str]) -> dict[str, str]:
    """What the operator configured: the environment over the .env file (as weixin/config.py reads them)."""
    dotenv = Path(env.get("DOTENV_FILE") or ROOT / ".env")
    from_file = {k: v for k, v in dotenv_values(dotenv).items() if v is not None} if dotenv.is_file() else {}
    return {key: value for key, value in {**from_file, **env}.items() if value.strip()}


def environment(env: dict[str, str]) -> tuple[dict[str, str], bool]:
    """The environment for every child, and whether it runs against the sandbox platform (no real
    AppID and AppSecret configured: then the sandbox's are used, and a made-up Token and AES key if unset)."""
    settled = configured(env)
    use_sandbox = not (settled.get("WECHAT_APPID") and settled.get("WECHAT_APPSECRET"))
    env = dict(env)
    if use_sandbox:
        env.update(WECHAT_APPID=DEFAULT_APPID, WECHAT_APPSECRET=DEFAULT_SECRET)
        for name, value in (("WECHAT_TOKEN", SANDBOX_TOKEN), ("WECHAT_ENCODING_AES_KEY", SANDBOX_AES_KEY)):
            if name not in settled:
                env[name] = value
    return env, use_sandbox


def simulator_lines(url: str, env: dict[str, str]) -> list[str]:
    """The simulator's command lines for this stack; made-up sandbox values are spelled out, real ones
    are left to the environment (the simulator reads WECHAT_TOKEN, WECHAT_APPID, WECHAT_ENCODING_AES_KEY)."""
    flags = ""
    if env.get("WECHAT_TOKEN") == SANDBOX_TOKEN and env.get("WECHAT_ENCODING_AES_KEY") == SANDBOX_AES_KEY:
        flags = f" --token {SANDBOX_TOKEN} --appid {env['WECHAT_APPID']} --aes-key {SANDBOX_AES_KEY}"
    python = ".venv/bin/python"
    return [
        f"{python} -m sandbox verify {url}{flags}",
        f"{python} -m sandbox send {url}{flags} --content 微博",
        f"{python} -m sandbox send {url}{flags} --content 你好 --mode safe",
        f"{python} -m sandbox send {url}{flags} --content '查书 浪潮之巅'",
        f"{python} -m sandbox send {url}{flags} --content '问 今天适合做什么？'",
        f"{python} -m sandbox chat sandbox/conversations/demo.yaml --url {url}{flags}",
    ]


def stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # Ctrl-C stops everything even when this was started with SIGINT ignored (a shell's background job
    # inherits that, and Python then keeps it instead of raising KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    env, use_sandbox = environment(dict(os.environ))
    try:
        settings = load_settings(env)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    port = int(os.environ.get("PORT", "8080"))
    run_directory = Path(os.environ.get("RUN_DIRECTORY") or ROOT / "run")
    run_directory.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    servers = []
    with ExitStack() as stack:
        try:
            if "REDIS_URL" not in configured(env):
                redis = RedisServer(run_directory / "redis").start()
                stack.callback(redis.stop)
                servers.append(redis)
                env["REDIS_URL"] = redis.url
                print(f"redis:         private server on {redis.url} (data is not kept)")
            else:
                print("redis:         REDIS_URL as configured")
            if use_sandbox:
                sandbox = SandboxProcess(run_directory / "sandbox", DEFAULT_APPID, DEFAULT_SECRET).start()
                stack.callback(sandbox.stop)
                servers.append(sandbox)
                env["WECHAT_API_BASE"] = sandbox.url
                env.setdefault("WECHAT_OPEN_BASE", sandbox.url)  # its authorize page stands in for WeChat's
                if "BOOKS_API_BASE" not in configured(env):  # its catalogue stands in for Open Library
                    env["BOOKS_API_BASE"] = sandbox.url
                print(f"sandbox:       fake api.weixin.qq.com on {sandbox.url} (no real AppID/AppSecret set)")
                if "AI_BASE_URL" not in configured(env):  # the AI chat rule answers offline too
                    env.update(AI_BASE_URL=f"{sandbox.url}/v1", AI_API_KEY=DEFAULT_AI_KEY, AI_MODEL=SANDBOX_MODEL)
                    print(f"ai chat:       the sandbox's fake chat model on {sandbox.url}/v1 (AI_BASE_URL not set)")
            if "PUBLIC_BASE_URL" not in configured(env):
                env["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"  # where the web pages are reached locally
            tokens = TokenServiceProcess(run_directory / "token_service", env).start()
            stack.callback(tokens.stop)
            servers.append(tokens)
            worker = SlowReplyWorker(run_directory / "slow_replies", env).start()
            stack.callback(worker.stop)
            servers.append(worker)
            app = UwsgiServer(run_directory / "uwsgi", env).start()
            stack.callback(app.stop)
            servers.append(app)
            nginx = NginxServer(run_directory / "nginx", app.socket_path, http_port=port).start()
            stack.callback(nginx.stop)
            servers.append(nginx)
        except (RuntimeError, OSError) as error:
            print(f"could not start: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
            print("\nstopping...")
            return 0

        try:
            tokens.wait_for_token(timeout=10)
            token_state = "access_token in Redis"
        except RuntimeError:
            token_state = "no access_token yet (see its log; `python -m token_service status`)"
        api = "the sandbox" if use_sandbox else settings.api_base
        print(f"token_service: against {api}; {token_state}; log {tokens.process.log_path}")
        print(f"app:           uWSGI (shipped uwsgi.xml), log {app.process.log_path}")
        print(f"slow replies:  python -m slow_replies worker, log {worker.process.log_path}")
        print(f"nginx:         {nginx.url} and {nginx.https_url} (self-signed), logs in {nginx.directory}")
        url = f"{nginx.url}/weixin"
        print(f"\nWeChat endpoint (send messages here): {url}")
        print(f"Health:  curl {nginx.url}/health")
        print(f"Web authorization (open in a browser): {env['PUBLIC_BASE_URL']}/oauth/login")
        if use_sandbox:
            print(f"Offline: the sandbox's AppID {DEFAULT_APPID}; Token and EncodingAESKey as below unless set.")
        print("Try it:")
        lines = simulator_lines(url, env)
        if "--token" not in lines[0]:
            print("  (the simulator reads WECHAT_TOKEN, WECHAT_APPID, WECHAT_ENCODING_AES_KEY from the environment;")
            print("   with a .env file: set -a; . ./.env; set +a)")
        for line in lines:
            print("  " + line)
        print("Press Ctrl-C to stop everything.\n", flush=True)
        try:
            while all(server.process.alive() for server in servers):
                time.sleep(0.5)
            stopped = [server.process.name for server in servers if not server.process.alive()]
            print(f"stopped unexpectedly: {', '.join(stopped)}; see the logs in {run_directory}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            print("\nstopping...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
