"""The whole background-reply path as real processes: the app under uWSGI, the rq worker, token_service, the
sandbox as WeChat's API, a local book source, and the session's Redis."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from devstack.processes import PROJECT_ROOT, AppServer, ManagedProcess, RedisServer, TokenServiceProcess
from sandbox.platform import DEFAULT_SECRET, FakeWeChat
from sandbox.server import SandboxServer
from tests.conftest import TEST_AES_KEY, TEST_APPID, TEST_TOKEN
from tests.slow_replies.book_source import BookSource
from tests.waiting import wait_until
from tests.wechat_requests import fixture, parsed_message, post, with_fresh_ids
from weixin.messages import retry_key

DEADLINE = 1.0  # REPLY_DEADLINE for these tests; a "slow" source answers a little after it
SLOW = 1.6


@pytest.fixture(scope="module")
def book_source() -> Iterator[BookSource]:
    source = BookSource().start()
    yield source
    source.stop()


@pytest.fixture(scope="module")
def wechat() -> Iterator[SandboxServer]:
    """The sandbox as api.weixin.qq.com; forced token refreshes are not spaced, so 40001 can refresh at once."""
    server = SandboxServer(FakeWeChat(appid=TEST_APPID, stable_force_spacing=0)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token_daemon(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer,
                 wechat: SandboxServer) -> Iterator[TokenServiceProcess]:
    env = {
        "WECHAT_APPID": TEST_APPID,
        "WECHAT_APPSECRET": DEFAULT_SECRET,
        "REDIS_URL": redis_server.url,
        "WECHAT_API_BASE": wechat.url,
        "TOKEN_FORCE_SPACING_SECONDS": "0",
        "TOKEN_JSAPI_TICKET": "0",
        "DOTENV_FILE": "/dev/null",
    }
    daemon = TokenServiceProcess(tmp_path_factory.mktemp("token"), env).start()
    daemon.wait_for_token()
    yield daemon
    daemon.stop()


@dataclass
class Worker:
    """`python -m slow_replies worker` as a real process, restartable."""

    directory: Path
    env: dict[str, str]
    process: ManagedProcess | None = None
    starts: int = 0

    def start(self) -> Worker:
        self.starts += 1
        argv = [sys.executable, "-m", "slow_replies", "worker"]
        log_path = self.directory / f"worker-{self.starts}.log"
        self.process = ManagedProcess("worker", argv, log_path, env=self.env, cwd=PROJECT_ROOT).start()
        wait_until(lambda: "Listening on" in self.process.log_text() or not self.process.alive(), 20,
                   describe=self.log_text)
        assert self.process.alive(), self.log_text()
        return self

    def stop_gracefully(self) -> None:
        """SIGTERM to the worker alone (as systemd's KillMode=mixed does): rq finishes the running job first."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float = 20) -> None:
        assert self.process is not None and self.process.process is not None
        self.process.process.wait(timeout)

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def log_text(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.directory.glob("worker-*.log")))


def worker_environment(redis_server: RedisServer, wechat: SandboxServer, **settings: str) -> dict[str, str]:
    """A test worker's environment: this test's Redis, sandbox and AppID, then `settings`; nothing inherited
    that configures the app."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("WECHAT_", "TOKEN_", "BOOKS_", "AI_", "REPLIES_"))}
    env.update({"WECHAT_APPID": TEST_APPID, "REDIS_URL": redis_server.url, "WECHAT_API_BASE": wechat.url,
                "DOTENV_FILE": "/dev/null", **settings})
    return env


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, wechat: SandboxServer,
           book_source: BookSource, token_daemon: TokenServiceProcess) -> Iterator[Worker]:
    env = worker_environment(redis_server, wechat, BOOKS_API_BASE=book_source.url, LOG_LEVEL="INFO")
    process = Worker(tmp_path_factory.mktemp("worker"), env).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def app(start_app, wechat: SandboxServer, book_source: BookSource, worker: Worker) -> AppServer:
    """The message server with the shipped replies.yaml (its ISBN rule is `background: true`)."""
    return start_app(WECHAT_API_BASE=wechat.url, BOOKS_API_BASE=book_source.url, REPLY_DEADLINE=str(DEADLINE))


@pytest.fixture()
def own_app(fresh_app, wechat: SandboxServer, book_source: BookSource, worker: Worker) -> AppServer:
    """The same server as `app`, but the test's own: for a test that stops and restarts it."""
    return fresh_app(WECHAT_API_BASE=wechat.url, BOOKS_API_BASE=book_source.url, REPLY_DEADLINE=str(DEADLINE))


_openids = iter(range(10**6))


def new_follower(wechat: SandboxServer, interacted: bool = True) -> str:
    """A follower of our own (so that one test's messages and quotas never meet another's)."""
    openid = f"oBookReader{os.getpid():06d}{next(_openids):011d}"
    if interacted:
        wechat.platform.follower_interacted(openid)  # WeChat opens the 48-hour window when they write
    return openid


def text_message(openid: str, content: str) -> bytes:
    xml = fixture("messages/text.xml").replace("微博".encode(), content.encode())
    return with_fresh_ids(xml.replace(b"oFollower0000000000000000001", openid.encode()))


def send(app: AppServer, xml: bytes, mode: str = "plain", timeout: float = 10):
    return post(app.url + "/weixin", xml, TEST_TOKEN, mode, TEST_AES_KEY, TEST_APPID, timeout=timeout)


def delivered_to(wechat: SandboxServer, openid: str) -> list[dict]:
    return [body for body in wechat.platform.delivered() if body.get("touser") == openid]


def job_id_of(xml: bytes) -> str:
    """The background job's id for a message (the same for every delivery of it)."""
    from slow_replies.jobs import job_id_for

    return job_id_for(retry_key(TEST_APPID, parsed_message(xml)))


def wait_until_settled(redis_server: RedisServer, *job_ids: str, timeout: float = 20) -> None:
    """Wait past the last moment a (wrong) second delivery of these jobs could come: each job's hand-off record
    is finished (passive, sent, failed, nothing: slow_replies/handoff.py) and rq holds no further run of it
    (not queued, running, scheduled for a crash retry). A count of deliveries after this is final, where a
    sleep before the count would only miss a duplicate that comes later."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus
    from rq.serializers import JSONSerializer

    from slow_replies.handoff import FINISHED, job_key

    client = redis.Redis.from_url(redis_server.url)

    def settled() -> bool:
        for job_id in job_ids:
            state = client.hget(job_key(job_id), "state")
            if state is None or state.decode() not in FINISHED:
                return False
            try:
                status = Job.fetch(job_id, connection=client, serializer=JSONSerializer).get_status()
            except NoSuchJobError:
                continue  # never queued (answered in time) or its record has expired
            if status not in (JobStatus.FINISHED, JobStatus.FAILED):
                return False
        return True

    try:
        wait_until(settled, timeout)
    finally:
        client.close()
