"""WeChat shows one article in a reply to a follower's message and up to eight in a reply to an event; the
replies checker refuses more at load time, in every section, with the file's line."""

from __future__ import annotations

from pathlib import Path

import pytest

from weixin.rules import RulesError, load_rules

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "replies"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("two_articles_for_default.yaml", "line 3 (default): news has 2 articles but WeChat shows only 1"),
        ("two_articles_for_an_image.yaml", "line 4 (messages.image): news has 2 articles but WeChat shows only 1"),
    ],
)
def test_two_articles_in_a_reply_to_a_followers_message_are_refused(name: str, expected: str) -> None:
    with pytest.raises(RulesError) as error:
        load_rules(FIXTURES / name)
    assert expected in str(error.value)


def test_eight_articles_are_accepted_for_events_menu_clicks_and_qr_scenes() -> None:
    rules = load_rules(FIXTURES / "eight_articles_everywhere_events_allow.yaml")
    for reply in (rules.events["subscribe"], rules.menu["V1001_TODAY"], rules.scenes["1001"]):
        assert reply is not None and reply.kind == "news" and len(reply.value) == 8
