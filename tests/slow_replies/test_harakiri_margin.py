"""uWSGI's harakiri must never cut a slow reply. uWSGI counts harakiri in whole seconds (its master looks once
a second), so it can fire up to a second before its nominal time: under the shipped uwsgi.xml and the default
REPLY_DEADLINE, a message slower than the deadline is answered `success` every time, and a deadline that harakiri
could cut is refused at start-up."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devstack.processes import ManagedProcess, RedisServer, UwsgiServer, find_program, free_port, render_uwsgi_config
from sandbox.server import SandboxServer
from tests.conftest import TEST_AES_KEY, TEST_APPID, TEST_TOKEN
from tests.slow_replies.book_source import BookSource, new_isbn13
from tests.slow_replies.conftest import Worker, new_follower, text_message, wait_until
from tests.wechat_requests import post
from weixin.config import ConfigError, check_deadline_under_harakiri

SLOW_MESSAGES = 8
SHIPPED_DEADLINE = 3.5  # REPLY_DEADLINE's default (config.VARIABLES): the tests below run with it
SOURCE_DELAY = SHIPPED_DEADLINE + 0.5  # the book source answers after the web process has given up


def app_env(redis_server: RedisServer, **extra: str) -> dict[str, str]:
    return {
        "WECHAT_TOKEN": TEST_TOKEN,
        "WECHAT_APPID": TEST_APPID,
        "WECHAT_ENCODING_AES_KEY": TEST_AES_KEY,
        "REDIS_URL": redis_server.url,
        "LOG_LEVEL": "INFO",
        "DOTENV_FILE": "/dev/null",
        **extra,
    }


@pytest.fixture(scope="module")
def shipped_app(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, wechat: SandboxServer,
                book_source: BookSource, worker: Worker) -> Iterator[UwsgiServer]:
    """The message server under the shipped uwsgi.xml (2 workers), default REPLY_DEADLINE, plus a loopback HTTP
    socket so that the test can play WeChat without nginx."""
    env = app_env(redis_server, WECHAT_API_BASE=wechat.url, BOOKS_API_BASE=book_source.url)
    env.pop("REPLY_DEADLINE", None)
    assert "REPLY_DEADLINE" not in os.environ
    server = UwsgiServer(tmp_path_factory.mktemp("shipped-uwsgi"), env, workers=2, http_port=free_port()).start()
    yield server
    server.stop()


def test_slow_messages_under_the_shipped_uwsgi_xml_always_get_success_and_no_harakiri(
    shipped_app: UwsgiServer, wechat: SandboxServer, book_source: BookSource
) -> None:
    answers: list[str] = []
    for _ in range(SLOW_MESSAGES):
        openid, number = new_follower(wechat), new_isbn13()
        book_source.slow(number, SOURCE_DELAY)
        try:
            response = post(shipped_app.url + "/weixin", text_message(openid, number), TEST_TOKEN, timeout=15)
        except requests.ConnectionError as error:  # what WeChat sees when harakiri kills the worker
            answers.append(f"connection closed: {type(error).__name__}")
            continue
        answers.append(f"{response.status_code} {response.text[:80]}")
    log = shipped_app.process.log_text()
    kills = [line for line in log.splitlines() if "HARAKIRI ON WORKER" in line]
    assert answers == ["200 success"] * SLOW_MESSAGES, (answers, kills)
    assert "HARAKIRI" not in log


def test_the_shipped_uwsgi_xml_leaves_room_for_the_longest_allowed_deadline() -> None:
    text = (Path(__file__).resolve().parents[2] / "uwsgi.xml").read_text()
    harakiri = int(text.split("<harakiri>", 1)[1].split("</harakiri>", 1)[0])
    check_deadline_under_harakiri(3.9, harakiri)  # REPLY_DEADLINE's upper bound (weixin/config.py)


@pytest.mark.parametrize(("deadline", "harakiri"), [(3.5, 4), (3.5, 5), (3.9, 5), (2.0, 3), (0.5, 2)])
def test_a_deadline_within_two_seconds_of_harakiri_is_refused(deadline: float, harakiri: int) -> None:
    with pytest.raises(ConfigError, match=r"REPLY_DEADLINE .* harakiri"):
        check_deadline_under_harakiri(deadline, harakiri)


@pytest.mark.parametrize(("deadline", "harakiri"), [(3.5, 6), (3.9, 6), (4.0, 6), (1.0, 3), (3.9, 0)])
def test_a_deadline_with_room_under_harakiri_or_no_harakiri_is_accepted(deadline: float, harakiri: int) -> None:
    check_deadline_under_harakiri(deadline, harakiri)


def test_uwsgi_with_a_harakiri_that_can_cut_the_deadline_refuses_to_start(tmp_path: Path,
                                                                         redis_server: RedisServer) -> None:
    config = render_uwsgi_config(tmp_path, tmp_path / "uwsgi.sock")
    argv = [find_program("uwsgi"), "--xml", str(config), "--processes", "1", "--harakiri", "4"]
    env = {**os.environ, **app_env(redis_server, REPLY_DEADLINE="3.5", SLOW_REPLY_DELIVERY="custom")}
    process = ManagedProcess("uwsgi", argv, tmp_path / "uwsgi.log", env=env).start()
    try:
        assert wait_until(lambda: not process.alive() or "spawned uWSGI worker" in process.log_text(), 60)
        log = process.log_text()
        assert not process.alive(), "uWSGI started a worker with REPLY_DEADLINE 3.5 under harakiri 4:\n" + log[-2000:]
    finally:
        process.stop()
    errors = [line for line in log.splitlines() if line.startswith("configuration error:")]
    assert errors == [
        "configuration error: REPLY_DEADLINE 3.5 s can be cut by uWSGI's harakiri 4 s (it can fire up to 1 s "
        "early): set harakiri to at least 6 or REPLY_DEADLINE to at most 2"
    ], log[-2000:]
    assert "Traceback" not in log
