"""No secret reaches a log, in any process, at any level (issue 13, item 6).

Every process runs for real at LOG_LEVEL=DEBUG against the sandbox as WeChat: the sandbox server, the
token_service daemon (classic token source, so the AppSecret travels in a URL) and its command-line tools,
the slow-replies worker (an ISBN lookup slower than the deadline ends in custom/send), and the app under
uWSGI with web authorization on (a login with its code exchange, a profile view that needs the refresh
token, a safe-mode message, the console's GET check). Then every log file is read and searched for every
secret those processes held or handled.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import secrets
import string
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import redis
import requests

from devstack.processes import (
    PROJECT_ROOT,
    AppServer,
    RedisServer,
    SandboxProcess,
    SlowReplyWorker,
    TokenServiceProcess,
    free_port,
)
from sandbox.control import SandboxControl
from tests.slow_replies.book_source import BookSource, new_isbn13
from tests.waiting import wait_until
from tests.wechat_requests import fixture, post, signed_query, with_fresh_ids
from token_service.consumer import TokenUnavailable, get_access_token, get_jsapi_ticket
from weixin.oauth.sessions import SESSION_KEY_PREFIX

APPID = "wx5ec7e7f0a1b2c3d4"
SLOW_SECONDS = 1.6  # the book source answers after the app's REPLY_DEADLINE (1 s): custom/send it is


def _letters_and_digits(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass
class Deployment:
    """The whole system on loopback, and every secret value it used or handed out."""

    directory: Path
    redis: RedisServer
    redis_url: str
    sandbox: SandboxProcess
    control: SandboxControl
    book_source: BookSource
    env: dict[str, str]
    secrets: dict[str, set[str]] = field(default_factory=dict)
    processes: list = field(default_factory=list)  # started here, stopped in reverse order
    cli_logs: list[Path] = field(default_factory=list)

    def remember(self, kind: str, value: str | None) -> None:
        if value:
            self.secrets.setdefault(kind, set()).add(value)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, socket_timeout=5)

    def run_token_cli(self, *arguments: str) -> subprocess.CompletedProcess:
        """`python -m token_service ...`; its stderr (the log) goes to a file, its stdout is returned."""
        log_path = self.directory / f"token-cli-{len(self.cli_logs)}.log"
        self.cli_logs.append(log_path)
        with open(log_path, "wb") as log:
            return subprocess.run([sys.executable, "-m", "token_service", *arguments], cwd=PROJECT_ROOT,
                                  env={**os.environ, **self.env}, stdout=subprocess.PIPE, stderr=log,
                                  timeout=60, check=False)

    def log_files(self) -> list[Path]:
        return sorted(path for path in self.directory.rglob("*") if path.is_file() and path.suffix in {".log", ".out"})


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    directory = tmp_path_factory.mktemp("no-secrets")
    app_secret = secrets.token_hex(16)  # WeChat's AppSecrets are 32 hex digits
    redis_password = secrets.token_hex(16)
    ai_api_key = "sk-" + secrets.token_urlsafe(36)
    with contextlib.ExitStack() as stack:
        redis_server = RedisServer(directory / "redis").start()
        stack.callback(redis_server.stop)
        with contextlib.closing(redis.Redis(port=redis_server.port)) as client:
            client.config_set("requirepass", redis_password)
        sandbox = SandboxProcess(directory / "sandbox", APPID, app_secret).start()
        stack.callback(sandbox.stop)
        book_source = BookSource().start()
        stack.callback(book_source.stop)
        control = stack.enter_context(contextlib.closing(SandboxControl(sandbox.url)))
        control.configure_chat(api_key=ai_api_key)  # the sandbox's fake chat model takes this key only
        app_port = free_port()
        redis_url = f"redis://:{redis_password}@127.0.0.1:{redis_server.port}/0"
        env = {
            "LOG_LEVEL": "DEBUG",
            "DOTENV_FILE": "/dev/null",
            "WECHAT_TOKEN": _letters_and_digits(24),
            "WECHAT_APPID": APPID,
            "WECHAT_APPSECRET": app_secret,
            "WECHAT_ENCODING_AES_KEY": _letters_and_digits(43),
            "SESSION_SECRET": secrets.token_urlsafe(24),
            "REDIS_URL": redis_url,
            "WECHAT_API_BASE": sandbox.url,
            "WECHAT_OPEN_BASE": sandbox.url,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{app_port}",
            "BOOKS_API_BASE": book_source.url,
            "REPLY_DEADLINE": "1.0",
            "AI_BASE_URL": f"{sandbox.url}/v1",
            "AI_API_KEY": ai_api_key,
            # The classic endpoint takes the AppSecret in its query string: the worst case for a URL logger.
            "TOKEN_SOURCE": "classic",
            "TOKEN_FORCE_SPACING_SECONDS": "0",
        }
        deployment = Deployment(directory, redis_server, redis_url, sandbox, control, book_source, env)
        for name, variable in (("AppSecret", "WECHAT_APPSECRET"), ("WeChat Token", "WECHAT_TOKEN"),
                               ("EncodingAESKey", "WECHAT_ENCODING_AES_KEY"), ("SESSION_SECRET", "SESSION_SECRET"),
                               ("AI_API_KEY", "AI_API_KEY")):
            deployment.remember(name, env[variable])
        deployment.remember("Redis password", redis_password)
        stack.callback(stop_everything, deployment)

        daemon = TokenServiceProcess(directory / "token_service", env).start()
        deployment.processes.append(daemon)
        deployment.remember("access_token", daemon.wait_for_token())
        worker = SlowReplyWorker(directory / "worker", env).start()
        deployment.processes.append(worker)
        wait_until(lambda: "Listening on" in worker.process.log_text() or not worker.process.alive(), timeout=30)
        assert worker.process.alive(), worker.process.log_text()[-3000:]
        deployment.processes.append(AppServer(directory / "app", env, port=app_port).start())
        yield deployment


def app_of(deployment: Deployment) -> AppServer:
    return next(process for process in deployment.processes if isinstance(process, AppServer))


def collect_token_service_credentials(deployment: Deployment) -> None:
    client = deployment.client()
    try:
        deployment.remember("access_token", _readable(get_access_token, client))
        deployment.remember("jsapi_ticket", _readable(get_jsapi_ticket, client))
    finally:
        client.close()
    deployment.remember("access_token", deployment.control.current_classic_token())
    deployment.remember("access_token", deployment.control.current_stable_token())


def collect_oauth_tokens(deployment: Deployment) -> None:
    client = deployment.client()
    try:
        for key in client.scan_iter(SESSION_KEY_PREFIX + "*"):
            session = json.loads(client.get(key))
            deployment.remember("OAuth access_token", session["access_token"])
            deployment.remember("OAuth refresh_token", session["refresh_token"])
    finally:
        client.close()


def exercise_token_service(deployment: Deployment) -> None:
    """The daemon's token and jsapi_ticket fetches, and every CLI command, one of them a forced refresh."""
    client = deployment.client()
    try:
        def jsapi_ticket_stored() -> str | None:
            return _readable(get_jsapi_ticket, client)

        wait_until(jsapi_ticket_stored, timeout=20)
    finally:
        client.close()
    collect_token_service_credentials(deployment)
    for arguments in (["status"], ["get"], ["get", "--jsapi-ticket"]):
        result = deployment.run_token_cli(*arguments)
        assert result.returncode == 0, arguments
        if arguments[0] == "get":
            kind = "jsapi_ticket" if "--jsapi-ticket" in arguments else "access_token"
            deployment.remember(kind, result.stdout.decode().strip())
        else:
            (deployment.directory / "token-cli-status.out").write_bytes(result.stdout)
    before = deployment.secrets["access_token"].copy()
    result = deployment.run_token_cli("refresh", "--wait", "20")
    assert result.returncode == 0, deployment.cli_logs[-1].read_text()
    (deployment.directory / "token-cli-refresh.out").write_bytes(result.stdout)
    collect_token_service_credentials(deployment)
    assert deployment.secrets["access_token"] - before, "the forced refresh brought no new access_token"


def _readable(read: Callable[[redis.Redis, str], str], client: redis.Redis) -> str | None:
    try:
        return read(client, APPID)
    except TokenUnavailable:
        return None


def exercise_messages(deployment: Deployment) -> None:
    """The console's GET check, a plain and a safe-mode message, and an ISBN lookup answered by custom/send."""
    app, env = app_of(deployment), deployment.env
    token, aes_key = env["WECHAT_TOKEN"], env["WECHAT_ENCODING_AES_KEY"]
    echo = requests.get(app.url + "/weixin", params=signed_query(token, echostr="1234567890"), timeout=10)
    assert echo.status_code == 200 and echo.text == "1234567890"
    text = fixture("messages/text.xml")
    assert post(app.url + "/weixin", with_fresh_ids(text), token).status_code == 200
    assert post(app.url + "/weixin", with_fresh_ids(text), token, "safe", aes_key, APPID).status_code == 200

    openid = f"oNoSecrets{os.getpid():08d}{int(time.time()):010d}"
    deployment.control.follower_interacted(openid)  # the 48-hour window custom/send needs
    number = new_isbn13()
    deployment.book_source.slow(number, SLOW_SECONDS)
    message = text.replace("微博".encode(), number.encode()).replace(b"oFollower0000000000000000001", openid.encode())
    response = post(app.url + "/weixin", with_fresh_ids(message), token, "safe", aes_key, APPID)
    assert response.status_code == 200
    def slow_reply_sent_with_custom_send() -> list[dict]:
        return [m for m in deployment.control.delivered() if m.get("touser") == openid]

    wait_until(slow_reply_sent_with_custom_send, timeout=20)

    # The AI chat rule: an answer from the sandbox's chat model, and its 401 (the key refused: logged as an ERROR).
    for question in ("问 你好", "问 #401"):
        message = text.replace("微博".encode(), question.encode())
        assert post(app.url + "/weixin", with_fresh_ids(message), token, "safe", aes_key, APPID).status_code == 200
    worker = next(process for process in deployment.processes if isinstance(process, SlowReplyWorker))
    wait_until(lambda: "the key was refused" in worker.process.log_text(), timeout=20)


def exercise_oauth(deployment: Deployment) -> None:
    """A follower signs in (code exchange, userinfo), then two hours later views the profile (refresh)."""
    app = app_of(deployment)
    browser = requests.Session()
    try:
        page = browser.get(app.url + "/oauth/login", timeout=10)
        assert "/connect/oauth2/authorize" in page.url, page.url
        href = re.search(r'id="approve" href="([^"]+)"', page.text).group(1)
        answer = browser.get(urljoin(page.url, html.unescape(href)), allow_redirects=False, timeout=10)
        callback = answer.headers["Location"]
        deployment.remember("OAuth code", parse_qs(urlsplit(callback).query)["code"][0])
        profile = browser.get(callback, timeout=10)
        assert profile.status_code == 200 and urlsplit(profile.url).path == "/me", profile.text[:500]
        collect_oauth_tokens(deployment)
        deployment.control.advance(2 * 3600 + 60)  # the user token lapses: /me refreshes it
        assert browser.get(app.url + "/me", timeout=10).status_code == 200
        collect_oauth_tokens(deployment)
    finally:
        browser.close()
    assert len(deployment.secrets["OAuth access_token"]) == 2, "the profile view did not refresh the user token"


def stop_everything(deployment: Deployment) -> None:
    """Stopped before the logs are read, so that every buffered line is written."""
    for process in reversed(deployment.processes):
        process.stop()
    deployment.processes.clear()
    deployment.sandbox.stop()  # stopping twice is harmless (the fixture stops it again)


def test_no_secret_appears_in_any_log_of_any_process_at_debug(deployment: Deployment) -> None:
    exercise_token_service(deployment)
    exercise_messages(deployment)
    exercise_oauth(deployment)
    app = app_of(deployment)
    app_log = app.process.log_path

    def oauth_lines_written() -> bool:
        # The app writes its log lines in batches (weixin/logs.py): wait for the last flow's lines before
        # stopping it, since a worker stopped with SIGINT does not flush what it still holds.
        text = app.process.log_text()
        return "signed in openid=" in text and "user access token refreshed" in text

    wait_until(oauth_lines_written, timeout=10)
    stop_everything(deployment)

    logs = {path: path.read_text(errors="replace") for path in deployment.log_files()}
    # The test means something only if the processes did log at DEBUG and did the work.
    assert " DEBUG " in logs[deployment.directory / "token_service" / "token_service.log"]
    assert " DEBUG " in logs[deployment.directory / "worker" / "worker.log"]
    assert "signed in openid=" in logs[app_log] and "user access token refreshed" in logs[app_log]
    worker_log = logs[deployment.directory / "worker" / "worker.log"]
    assert "chat model gpt-4o-mini answered" in worker_log and "the key was refused" in worker_log
    expected = {"AppSecret", "WeChat Token", "EncodingAESKey", "SESSION_SECRET", "AI_API_KEY", "Redis password",
                "access_token",
                "jsapi_ticket", "OAuth code", "OAuth access_token", "OAuth refresh_token"}
    assert expected <= set(deployment.secrets)
    leaks = []
    for path, text in logs.items():
        for kind, values in deployment.secrets.items():
            for value in values:
                for line in text.splitlines():
                    if value in line:
                        leaks.append(f"{path.relative_to(deployment.directory)}: {kind}: {line[:300]}")
    assert not leaks, "secrets in the logs:\n" + "\n".join(leaks[:40])
