"""Property tests of POST /weixin: whatever arrives (mutated pushes of every type, random bytes, random
query strings, every mode), no 5xx, no internals in a body, and every 200 is `success`, empty, or a
reply that WeChat accepts (sandbox.checks). RELIABILITY_EXAMPLES scales the example counts."""

from __future__ import annotations

import http.client
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from hypothesis import HealthCheck, given, settings

import handle
from tests.conftest import TEST_AES_KEY, TEST_APPID, TEST_TOKEN
from tests.reliability.judge import violations
from tests.reliability.strategies import Push, pushes, random_encrypt_pushes
from weixin.app import App
from weixin.config import load_settings

EXAMPLES = int(os.environ.get("RELIABILITY_EXAMPLES", "80"))
IN_PROCESS_EXAMPLES = EXAMPLES * 5


def examples(count: int) -> settings:
    return settings(
        max_examples=count,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )


def send_over_http(url: str, push: Push) -> tuple[int, str, list[tuple[str, str]], bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("POST", "/weixin?" + push.query_string, body=push.body, headers={"Content-Type": "text/xml"})
        response = connection.getresponse()
        return response.status, response.reason, response.getheaders(), response.read()
    finally:
        connection.close()


# --- over real HTTP, the app under uWSGI --------------------------------------------------------


@pytest.fixture(scope="module")
def app_url(start_app) -> str:
    return start_app().url


@pytest.fixture(scope="module")
def retry_cache(redis_server) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def check_over_http(app_url: str, retry_cache: redis.Redis, push: Push) -> None:
    # Each example starts with an empty retry cache: a mutated MsgId may repeat one an earlier example used.
    retry_cache.flushdb()
    status, reason, headers, body = send_over_http(app_url, push)
    problems = violations(push.body, push.inner_xml, push.query_string, status, reason, headers, body)
    assert not problems, (status, body[:500], problems)


@examples(EXAMPLES)
@given(push=pushes())
def test_any_push_over_http_is_answered_without_5xx_and_with_a_reply_wechat_accepts(
    app_url: str, retry_cache: redis.Redis, push: Push
) -> None:
    check_over_http(app_url, retry_cache, push)


@examples(max(EXAMPLES // 3, 20))
@given(push=random_encrypt_pushes())
def test_a_random_encrypt_over_http_is_refused_cleanly(app_url: str, retry_cache: redis.Redis, push: Push) -> None:
    check_over_http(app_url, retry_cache, push)


# --- in process, for volume: the WSGI code path with a real Redis ----------------------------------


class ExceptionRecorder(logging.Handler):
    """Collects log records that carry an exception: the server's catch-alls hide bugs from the answer."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@pytest.fixture(scope="module")
def in_process(redis_server) -> Iterator[tuple[App, redis.Redis, ExceptionRecorder]]:
    """An App of this test's own, and a recorder of logged exceptions."""
    environment = {
        "WECHAT_TOKEN": TEST_TOKEN, "WECHAT_APPID": TEST_APPID, "WECHAT_ENCODING_AES_KEY": TEST_AES_KEY,
        "REDIS_URL": redis_server.url,
    }
    app = App.build(load_settings(environment, dotenv_path=Path("/dev/null")))
    recorder = ExceptionRecorder()
    logger = logging.getLogger("weixin")
    logger.addHandler(recorder)
    client = redis.Redis.from_url(redis_server.url)
    yield app, client, recorder
    client.close()
    logger.removeHandler(recorder)


def respond_in_process(push: Push, app: App) -> handle.Response:
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/weixin", "QUERY_STRING": push.query_string,
        "CONTENT_LENGTH": str(len(push.body)), "wsgi.input": io.BytesIO(push.body),
    }
    return handle.respond_to_message(environ, app)


@examples(IN_PROCESS_EXAMPLES)
@given(push=pushes())
def test_any_push_in_process_is_answered_without_an_unexpected_exception(
    in_process: tuple[App, redis.Redis, ExceptionRecorder], push: Push
) -> None:
    app, client, recorder = in_process
    client.flushdb()
    recorder.records.clear()
    response = respond_in_process(push, app)
    status = int(response.status.split()[0])
    body = response.body.encode("utf-8")
    headers = [("Content-Type", response.content_type)]
    problems = violations(push.body, push.inner_xml, push.query_string, status, response.status[4:], headers, body)
    problems += [f"logged exception: {record.getMessage()} {record.exc_info[1]!r}" for record in recorder.records]
    assert not problems, (response.status, response.body[:500], problems)
