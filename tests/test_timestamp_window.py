"""The timestamp window: a signed request at most WECHAT_TIMESTAMP_WINDOW seconds from now, in either
direction, is accepted; one second more is refused. Pure at the edges, and end to end under uWSGI."""

from __future__ import annotations

import time

import pytest

from tests.conftest import TEST_TOKEN
from tests.wechat_requests import deliver, fixture, signed_query, with_fresh_ids
from utils import timestamp_is_fresh


@pytest.mark.parametrize(
    ("now", "fresh"),
    [(1300.0, True), (700.0, True), (1300.5, False), (699.5, False), (1301.0, False), (699.0, False)],
)
def test_the_window_includes_exactly_its_edges(now: float, fresh: bool) -> None:
    assert timestamp_is_fresh("1000", 300, now=now) is fresh


def test_the_window_is_measured_in_whole_seconds_of_the_query() -> None:
    assert not timestamp_is_fresh("1000.5", 300, now=1000)  # WeChat's timestamps are integers
    assert not timestamp_is_fresh("", 300, now=1000)


def test_the_endpoint_refuses_a_timestamp_beyond_its_window_in_the_future_and_accepts_one_inside(start_app) -> None:
    app = start_app(WECHAT_TIMESTAMP_WINDOW="60")
    url = app.url + "/weixin"
    message = fixture("messages/text.xml")

    ahead = signed_query(TEST_TOKEN, timestamp=str(int(time.time()) + 120))
    response = deliver(url, ahead, with_fresh_ids(message))
    assert response.status_code == 403 and "timestamp" in response.text

    behind = signed_query(TEST_TOKEN, timestamp=str(int(time.time()) - 120))
    assert deliver(url, behind, with_fresh_ids(message)).status_code == 403

    inside = signed_query(TEST_TOKEN, timestamp=str(int(time.time()) - 30))
    response = deliver(url, inside, with_fresh_ids(message))
    assert response.status_code == 200 and "<MsgType><![CDATA[news]]></MsgType>" in response.text
