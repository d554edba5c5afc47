"""Redis as deploy/install.sh sets it up: the shipped deploy/redis/weixin.conf, the ACL users rendered from
deploy/redis/users.acl.template by install-lib.sh's render_acl, the default user off. The real app (uWSGI),
token_service and the slow-replies worker run against it, each with its own user and only its unit's env file
(deploy/env/); each does its whole job without one refusal, is refused outside its keys and for the dangerous
commands, and no log line holds a password."""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests

from devstack import processes
from devstack.processes import PROJECT_ROOT, AppServer, RedisServer, SlowReplyWorker, TokenServiceProcess
from sandbox.platform import DEFAULT_SECRET, FakeWeChat
from sandbox.server import SandboxServer
from tests.conftest import TEST_AES_KEY, TEST_APPID, TEST_TOKEN
from tests.slow_replies.book_source import BookSource, new_isbn13
from tests.waiting import wait_until
from tests.wechat_requests import deliver, fixture, open_encrypted_reply, prepare, with_fresh_ids
from token_service.consumer import get_access_token, request_refresh
from weixin import config
from weixin.oauth.sessions import SessionStore

USERS = ("weixin-web", "weixin-token", "weixin-worker")
ADMIN_PASSWORD = secrets.token_hex(16)  # a test-only user, to read ACL LOG; not in the template
DANGEROUS = [
    ("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "*"), ("CONFIG", "SET", "maxmemory", "0"), ("KEYS", "*"),
    ("DEBUG", "SLEEP", "0"), ("SHUTDOWN", "NOSAVE"), ("MODULE", "LIST"), ("ACL", "LIST"), ("ACL", "WHOAMI"),
    ("ACL", "SETUSER", "intruder", "on", ">x", "~*", "+@all"), ("MONITOR",), ("SCRIPT", "FLUSH"), ("SAVE",),
    ("CLIENT", "KILL", "TYPE", "normal"), ("REPLICAOF", "127.0.0.1", "1"), ("SWAPDB", "0", "1"),
]


def unit_env(name: str) -> dict[str, str]:
    """KEY=value lines of deploy/env/<name>.env.example as systemd's EnvironmentFile= reads them."""
    values = {}
    for line in (PROJECT_ROOT / f"deploy/env/{name}.env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def render_acl(out: Path, passwords: dict[str, str]) -> None:
    """install.sh's own render_acl; the passwords reach bash in its environment, never in argv."""
    script = '. deploy/install-lib.sh && render_acl deploy/redis/users.acl.template "$1" "$WEB" "$TOKEN" "$WORKER"'
    env = {"PATH": os.environ["PATH"], "WEB": passwords["weixin-web"], "TOKEN": passwords["weixin-token"],
           "WORKER": passwords["weixin-worker"]}
    subprocess.run(["bash", "-c", script, "render", str(out)], check=True, cwd=PROJECT_ROOT, env=env, timeout=30)


@dataclass
class AclStack:
    redis: RedisServer
    passwords: dict[str, str]
    urls: dict[str, str]
    wechat: SandboxServer
    books: BookSource
    tokens: TokenServiceProcess
    worker: SlowReplyWorker
    app: AppServer

    def client(self, user: str) -> redis.Redis:
        return redis.Redis.from_url(self.urls[user], socket_timeout=5)

    def admin(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url_for("test-admin", ADMIN_PASSWORD), socket_timeout=5)

    def logs(self) -> dict[str, str]:
        paths = [self.redis.directory / "redis.log", self.tokens.directory / "token_service.log",
                 self.worker.directory / "worker.log", self.app.directory / "uwsgi.log"]
        return {path.name: path.read_text(errors="replace") for path in paths}


# Runs a program as systemd's MemoryDenyWriteExecute=yes does (the units set it): the kernel's PR_SET_MDWE
# (Linux 6.3+) refuses memory that is or becomes writable and executable, in the program and its children.
MDWE_EXEC = """import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(f"PR_SET_MDWE: errno {ctypes.get_errno()}")
os.execv(sys.argv[1], sys.argv[1:])
"""


@contextlib.contextmanager
def without_writable_executable_memory(directory: Path) -> Iterator[None]:
    """devstack/processes.py starts Python (sys.executable) and uWSGI (find_program): both through the MDWE wrapper."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "mdwe_exec.py").write_text(MDWE_EXEC)
    real_python, real_find_program = sys.executable, processes.find_program

    def wrapper(program: str) -> str:
        path = directory / f"mdwe-{Path(program).name}"
        path.write_text(f'#!/bin/sh\nexec "{real_python}" "{directory / "mdwe_exec.py"}" "{program}" "$@"\n')
        path.chmod(0o755)
        return str(path)

    python_wrapper = wrapper(real_python)
    try:
        sys.executable = python_wrapper
        processes.find_program = lambda name: wrapper(real_find_program(name)) if name == "uwsgi" else \
            real_find_program(name)
        yield
    finally:
        sys.executable, processes.find_program = real_python, real_find_program


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclStack]:
    directory = tmp_path_factory.mktemp("redis-acl")
    passwords = {user: secrets.token_hex(32) for user in USERS}
    acl_file = directory / "users.acl"
    render_acl(acl_file, passwords)
    with acl_file.open("a") as acl:
        acl.write(f"user test-admin on >{ADMIN_PASSWORD} ~* &* +@all\n")
    started: list = []
    try:
        server = RedisServer(directory / "redis", config_file=PROJECT_ROOT / "deploy/redis/weixin.conf",
                             acl_file=acl_file).start()
        started.append(server)
        # Both forms REDIS_URL takes: the unix socket (what install.sh writes) and TCP.
        urls = {
            "weixin-web": server.url_for("weixin-web", passwords["weixin-web"]),
            "weixin-token": server.url_for("weixin-token", passwords["weixin-token"], unix=True),
            "weixin-worker": server.url_for("weixin-worker", passwords["weixin-worker"], unix=True),
        }
        mdwe = contextlib.ExitStack()
        started.append(mdwe)  # closed (the originals back) once every process is stopped
        if mdwe_supported():
            mdwe.enter_context(without_writable_executable_memory(directory / "mdwe"))
            refused = subprocess.run([sys.executable, "-c", "import mmap; mmap.mmap(-1, 4096, prot=7)"],
                                     capture_output=True, timeout=30)
            assert refused.returncode != 0 and b"PermissionError" in refused.stderr  # the wrapper works
        wechat = SandboxServer(FakeWeChat(appid=TEST_APPID, stable_force_spacing=0)).start()
        started.append(wechat)
        books = BookSource().start()
        started.append(books)
        common = {**unit_env("common"), "WECHAT_APPID": TEST_APPID, "LOG_LEVEL": "DEBUG", "DOTENV_FILE": "/dev/null",
                  "WECHAT_API_BASE": wechat.url, "BOOKS_API_BASE": books.url, "REPLY_DEADLINE": "2.0",
                  "TOKEN_FORCE_SPACING_SECONDS": "0"}
        clean = {key: value for key, value in os.environ.items() if not key.startswith(("WECHAT_", "TOKEN_", "REDIS"))}
        token_env = {**common, **unit_env("token"), "WECHAT_APPSECRET": DEFAULT_SECRET,
                     "REDIS_URL": urls["weixin-token"]}
        tokens = TokenServiceProcess(directory / "token", {**clean, **token_env}).start()
        started.append(tokens)
        tokens.wait_for_token()
        worker_env = {**common, **unit_env("worker"), "REDIS_URL": urls["weixin-worker"]}
        worker = SlowReplyWorker(directory / "worker", {**clean, **worker_env}).start()
        started.append(worker)
        web_env = {**common, **unit_env("web"), "WECHAT_TOKEN": TEST_TOKEN, "WECHAT_ENCODING_AES_KEY": TEST_AES_KEY,
                   "REDIS_URL": urls["weixin-web"]}
        app = AppServer(directory / "app", {**clean, **web_env}).start()
        started.append(app)
        def worker_listening() -> bool:
            return "Listening on" in worker.process.log_text()

        wait_until(worker_listening, timeout=20, describe=worker.process.log_text)
        yield AclStack(server, passwords, urls, wechat, books, tokens, worker, app)
    finally:
        for process in reversed(started):
            process.close() if isinstance(process, contextlib.ExitStack) else process.stop()


def children_of(pid: int) -> list[int]:
    try:
        children = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return children + [grandchild for child in children for grandchild in children_of(child)]


def mdwe_supported() -> bool:
    """PR_GET_MDWE answers (>= 0) on Linux 6.3 and later."""
    return ctypes.CDLL(None, use_errno=True).prctl(66, 0, 0, 0, 0) >= 0


def send_text(stack: AclStack, openid: str, content: str) -> tuple[dict, bytes, dict]:
    xml = fixture("messages/text.xml").replace("微博".encode(), content.encode())
    xml = with_fresh_ids(xml.replace(b"oFollower0000000000000000001", openid.encode()))
    query, body = prepare(xml, TEST_TOKEN, "safe", TEST_AES_KEY, TEST_APPID)
    response = deliver(stack.app.url + "/weixin", query, body)
    assert response.status_code == 200, stack.app.process.log_text()[-3000:]
    return query, body, open_encrypted_reply(response.text, TEST_TOKEN, TEST_AES_KEY, TEST_APPID)


def test_the_shipped_redis_settings_are_loaded_no_eviction_and_the_default_user_is_off(stack: AclStack) -> None:
    admin = stack.admin()
    assert admin.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    assert int(admin.config_get("maxmemory")["maxmemory"]) == 256 * 1024 * 1024
    assert admin.config_get("unixsocketperm")["unixsocketperm"] == "660"
    default = next(line for line in admin.acl_list() if line.startswith("user default "))
    assert default.split()[2] == "off" and default.endswith(" -@all") and "~" not in default, default
    with pytest.raises(redis.AuthenticationError):  # no credentials: nothing, not even PING
        redis.Redis(unix_socket_path=str(stack.redis.socket_path)).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(stack.redis.url_for("weixin-web", "not-the-password")).ping()


def test_every_component_does_its_job_under_its_own_user_without_one_refusal(stack: AclStack) -> None:
    if mdwe_supported():  # as MemoryDenyWriteExecute=yes in the units
        assert all(Path(process.process.argv[0]).name.startswith("mdwe-")
                   for process in (stack.app, stack.tokens, stack.worker)), stack.app.process.argv
    admin = stack.admin()
    admin.acl_log_reset()
    # The web app: the claim script and the stored reply for a retry (dedupe), replay fingerprints.
    query, body, first = send_text(stack, "oAclFollower000000000000001", "帮助")
    assert first["MsgType"] == "text"
    retry = deliver(stack.app.url + "/weixin", query, body)
    assert retry.status_code == 200
    assert open_encrypted_reply(retry.text, TEST_TOKEN, TEST_AES_KEY, TEST_APPID)["Content"] == first["Content"]
    # A background rule: the web process queues an rq job, the worker takes it, reads the book cache and
    # hands the card back through wechat:slow:*.
    number = new_isbn13()
    stack.wechat.platform.follower_interacted("oAclFollower000000000000002")
    query, body, card = send_text(stack, "oAclFollower000000000000002", number)
    assert card["MsgType"] == "news", stack.worker.process.log_text()[-3000:]
    assert deliver(stack.app.url + "/weixin", query, body).status_code == 200  # WeChat's retry of it
    # Follower sessions (wechat:session:*): the web process for an inline rule (猜数字), the worker for a
    # background one (查书: this stack's book source has no search, so it answers a text, but the session's
    # script still runs on the follower's key).
    stack.wechat.platform.follower_interacted("oAclFollower000000000000003")
    assert "我想好了" in send_text(stack, "oAclFollower000000000000003", "猜数字")[2]["Content"]
    assert send_text(stack, "oAclFollower000000000000003", "查书 浪潮之巅")[2]["MsgType"] == "text"
    # /health reads the token's metadata with the web user.
    health = requests.get(stack.app.url + "/health", timeout=10).json()
    assert health["redis"]["reachable"] and health["token"]["present"], health
    # Consumers (web and worker) read the token and ask token_service for a refresh; token_service answers.
    web, worker = stack.client("weixin-web"), stack.client("weixin-worker")
    token = get_access_token(web, TEST_APPID)
    assert get_access_token(worker, TEST_APPID) == token
    assert request_refresh(token, wait=15, redis_client=worker, appid=TEST_APPID) != token
    # OAuth sessions with the web user.
    sessions = SessionStore(web)
    assert sessions.use_state("acl-test-state") and not sessions.use_state("acl-test-state")
    sessions.delete("no-such-session")
    assert sessions.load("no-such-session") is None
    entries = [entry for entry in admin.acl_log(count=100)
               # rq asks CLIENT LIST for the worker's address and carries on without it (logged once).
               if not (entry["username"] == "weixin-worker" and entry["object"] == "client|list")]
    assert entries == [], [(e["username"], e["reason"], e["object"], e["context"]) for e in entries]


@pytest.mark.parametrize("user", USERS)
def test_every_user_is_refused_the_dangerous_commands(stack: AclStack, user: str) -> None:
    admin = stack.admin()
    for command in DANGEROUS:  # ACL DRYRUN: what Redis would answer this user, without running it
        answer = admin.execute_command("ACL", "DRYRUN", user, *command)
        assert b"no permissions" in answer, (user, command, answer)
    client = stack.client(user)
    for command in [("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("ACL", "WHOAMI")]:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
    assert client.ping()


def test_every_user_is_refused_outside_its_key_patterns(stack: AclStack) -> None:
    web, token, worker = (stack.client(user) for user in USERS)
    credential = f"wechat:access_token:{TEST_APPID}"
    outside = {
        # Only token_service writes credentials and holds the leader lease; the others may only read them.
        web: [("SET", credential, "forged"), ("HSET", credential + ":meta", "source", "x"),
              ("LPUSH", "rq:queue:default", "x"), ("SADD", "rq:workers", "x"),
              ("SET", f"wechat:lock:token:{TEST_APPID}", "me"), ("GET", "other:key"), ("PUBLISH", "rq:pubsub:w", "x")],
        worker: [("SET", credential, "forged"), ("GET", "wechat:msg:a:id:1"), ("GET", "wechat:replay:a:b"),
                 ("GET", "wechat:oauth:session:x"), ("SET", f"wechat:lock:token:{TEST_APPID}", "me")],
        token: [("GET", "wechat:msg:a:id:1"), ("GET", "wechat:oauth:session:x"), ("LLEN", "rq:queue:x"),
                ("HGETALL", "wechat:slow:reply-x"), ("GET", "wechat:books:isbn:1")],
    }
    for client, commands in outside.items():
        for command in commands:
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)
    assert web.get(credential) == token.get(credential) != b"forged"
    # A script is checked command by command too: no way around the patterns through EVAL.
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker.eval("return redis.call('GET', KEYS[1])", 1, "wechat:oauth:session:x")


def test_no_log_line_holds_a_redis_password(stack: AclStack) -> None:
    send_text(stack, "oAclFollower000000000000003", "帮助")
    logs = stack.logs()
    assert all(logs.values()), {name: len(text) for name, text in logs.items()}
    for name, text in logs.items():
        for user, password in stack.passwords.items():
            assert password not in text, f"{user}'s password in {name}"
    # Nor any process's command line (every local user can read those).
    for process in (stack.redis.process, stack.tokens.process, stack.worker.process, stack.app.process):
        for pid in [process.pid, *children_of(process.pid)]:
            with contextlib.suppress(FileNotFoundError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                assert not any(password in cmdline for password in stack.passwords.values()), cmdline
    for url in stack.urls.values():
        settings = config.load_settings({"WECHAT_TOKEN": TEST_TOKEN, "REDIS_URL": url}, Path("/dev/null"))
        assert settings.redis_url == url
        shown = repr(settings) + config.redact_url(url)
        assert all(password not in shown for password in stack.passwords.values()), shown


def test_a_full_redis_refuses_writes_and_keeps_the_access_token(stack: AclStack, tmp_path: Path) -> None:
    """noeviction: past maxmemory nothing is evicted, writes fail (the app logs them), the token stays."""
    server = RedisServer(tmp_path / "full", config_file=PROJECT_ROOT / "deploy/redis/weixin.conf",
                         acl_file=stack.redis.acl_file).start()
    try:
        admin = redis.Redis.from_url(server.url_for("test-admin", ADMIN_PASSWORD))
        token = redis.Redis.from_url(server.url_for("weixin-token", stack.passwords["weixin-token"]))
        web = redis.Redis.from_url(server.url_for("weixin-web", stack.passwords["weixin-web"]))
        token.set(f"wechat:access_token:{TEST_APPID}", "the-token", ex=7200)
        admin.config_set("maxmemory", str(admin.info("memory")["used_memory"] + 2 * 1024 * 1024))
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            for number in range(100_000):  # dedupe-like keys with short TTLs, until Redis is full
                web.set(f"wechat:msg:{TEST_APPID}:id:{number}", "x" * 1000, ex=300)
        assert token.get(f"wechat:access_token:{TEST_APPID}") == b"the-token"
        assert admin.info("stats")["evicted_keys"] == 0
    finally:
        server.stop()


@pytest.mark.parametrize("url", [
    "unix://weixin-web:s3cret-pass@/run/redis/redis-server.sock?db=0",
    "redis://weixin-web:s3cret-pass@127.0.0.1:6379/0",
    "rediss://:s3cret-pass@redis.example:6380/0",
    "redis://weixin-web:s3cret/pass@127.0.0.1:6379/0",  # unencoded: what an operator may paste
    "unix:///run/redis/redis-server.sock?db=0&username=weixin-web&password=s3cret-pass",  # redis-py reads these too
])
def test_redact_url_hides_the_password_in_every_form_redis_py_reads(url: str) -> None:
    settings = config.load_settings({"WECHAT_TOKEN": TEST_TOKEN, "REDIS_URL": url}, Path("/dev/null"))
    assert settings.redis_url == url
    assert "s3cret" not in config.redact_url(url) and "s3cret" not in repr(settings)
