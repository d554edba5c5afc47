"""Hold mode's pure decisions: which delivery is WeChat's last, and the harakiri a hold needs."""

from __future__ import annotations

import pytest

from slow_replies.hold import WECHAT_DELIVERIES, is_last_delivery
from weixin.config import ConfigError, check_deadline_under_harakiri, load_settings


@pytest.mark.parametrize(("number", "since_first", "last"), [
    (1, 0.0, False),
    (2, 5.2, False),
    (3, 10.3, True),
    (2, 10.1, True),  # the second delivery never reached us: this one comes when the last would
    (4, 15.0, True),  # more than WeChat sends: still the last
])
def test_the_last_delivery_is_the_third_or_one_as_late_as_the_third(number: int, since_first: float,
                                                                    last: bool) -> None:
    assert WECHAT_DELIVERIES == 3
    assert is_last_delivery(number, since_first) is last


@pytest.mark.parametrize("delivery", ["hold", "auto"])
def test_a_hold_needs_harakiri_eight(delivery: str) -> None:
    check_deadline_under_harakiri(3.5, 8, delivery)
    with pytest.raises(ConfigError, match=rf"SLOW_REPLY_DELIVERY={delivery} holds a delivery for 5.5 s.*at least 8"):
        check_deadline_under_harakiri(3.5, 6, delivery)


def test_custom_delivery_needs_only_the_deadline() -> None:
    check_deadline_under_harakiri(3.5, 6, "custom")


def test_slow_reply_delivery_is_auto_custom_or_hold() -> None:
    base = {"WECHAT_TOKEN": "token123", "DOTENV_FILE": "/dev/null"}
    assert load_settings(base, dotenv_path=None).slow_reply_delivery == "auto"
    assert load_settings({**base, "SLOW_REPLY_DELIVERY": "Hold"}).slow_reply_delivery == "hold"
    with pytest.raises(ConfigError, match="SLOW_REPLY_DELIVERY must be auto, custom or hold"):
        load_settings({**base, "SLOW_REPLY_DELIVERY": "later"})
    settings = load_settings(base)
    assert (settings.held_result_keyword, settings.more_keyword, settings.held_result_ttl) == ("结果", "更多", 600)
