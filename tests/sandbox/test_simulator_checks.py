"""Reply checks as pure functions: a recorded answer in, one precise line per problem out."""

from __future__ import annotations

import pytest

from sandbox import platform_crypto
from sandbox.checks import XmlError, examine, parse_xml
from sandbox.delivery import Attempt, Delivery
from sandbox.messages import Account, build_message, build_push

ACCOUNT = Account("sandboxtoken", "wx0123456789abcdef", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
FOLLOWER, ME = "oFollower", "gh_account"


def answered(body: str | bytes, content_type: str = "text/xml") -> Delivery:
    payload = body.encode("utf-8") if isinstance(body, str) else body
    attempt = Attempt(1, 0.01, 200, "OK", (("Content-Type", content_type),), payload)
    return Delivery((attempt,), 5.0)


def reply_xml(inner: str, to_user: str = FOLLOWER, from_user: str = ME, create_time: str = "1700000000") -> str:
    return (
        f"<xml><ToUserName><![CDATA[{to_user}]]></ToUserName><FromUserName><![CDATA[{from_user}]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime>{inner}</xml>"
    )


def problems_for(body: str | bytes, kind: str = "text", mode: str = "plain", **delivery_options) -> list[str]:
    push = build_push(build_message(kind, from_user=FOLLOWER, to_user=ME), ACCOUNT, mode)
    return [str(problem) for problem in examine(push, answered(body, **delivery_options), ACCOUNT).problems]


def test_a_correct_text_reply_has_no_problems():
    assert problems_for(reply_xml("<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content>")) == []


def test_the_safe_parser_refuses_doctype_and_entities():
    with pytest.raises(XmlError, match="DOCTYPE"):
        parse_xml('<!DOCTYPE xml [<!ENTITY a "aaaa">]><xml>&a;</xml>')
    with pytest.raises(XmlError, match="undefined entity"):
        parse_xml("<xml>&external;</xml>")


def test_a_reply_with_a_doctype_is_reported():
    body = '<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + reply_xml("<MsgType>text</MsgType>")
    assert problems_for(body) == [
        "the reply is not well-formed XML: the body declares a DOCTYPE; WeChat's parsers refuse DTDs"
    ]


def test_a_root_other_than_xml_is_reported():
    assert problems_for("<reply><MsgType>text</MsgType></reply>") == [
        "the root element of the reply is <reply>, WeChat expects <xml>"
    ]


def test_create_time_must_be_an_integer():
    body = reply_xml("<MsgType>text</MsgType><Content>hi</Content>", create_time="2024-01-01")
    assert problems_for(body) == ["CreateTime must be an integer (Unix seconds), got '2024-01-01'"]


def test_an_unknown_msg_type_is_reported():
    assert problems_for(reply_xml("<MsgType>sticker</MsgType>")) == [
        "MsgType 'sticker' is not a reply type WeChat knows "
        "(text, image, voice, video, music, news, transfer_customer_service)"
    ]


def test_an_empty_text_is_reported_with_the_right_way_to_say_nothing():
    assert problems_for(reply_xml("<MsgType>text</MsgType><Content><![CDATA[]]></Content>")) == [
        "the text reply's Content is empty; to send nothing, answer `success` or an empty body"
    ]


def test_music_needs_a_thumb_media_id():
    assert problems_for(reply_xml("<MsgType>music</MsgType><Music><Title>t</Title></Music>")) == [
        "the music reply needs <Music><ThumbMediaId>; it is missing"
    ]


def test_article_count_must_match_the_items_and_items_need_their_fields():
    items = "<item><Title>a</Title><Description>d</Description><PicUrl>p</PicUrl></item>"
    body = reply_xml(f"<MsgType>news</MsgType><ArticleCount>2</ArticleCount><Articles>{items}</Articles>")
    assert problems_for(body, "click") == [
        "ArticleCount says 2 but Articles holds 1 item(s)",
        "article 1 lacks Url",
    ]


def test_a_long_text_is_a_warning_only():
    push = build_push(build_message("text", from_user=FOLLOWER, to_user=ME), ACCOUNT, "plain")
    body = reply_xml(f"<MsgType>text</MsgType><Content>{'字' * 700}</Content>")
    verdict = examine(push, answered(body), ACCOUNT)
    assert verdict.ok
    assert [str(problem) for problem in verdict.problems] == [
        "warning: Content is 2100 bytes; the old documented limit is 2048"
    ]


def test_a_plaintext_reply_is_fine_in_compatible_mode():
    assert problems_for(reply_xml("<MsgType>text</MsgType><Content>hi</Content>"), mode="compatible") == []


def test_an_encrypted_reply_to_a_plaintext_push_is_reported():
    encrypted = platform_crypto.encrypt(ACCOUNT.encoding_aes_key, "<xml/>", ACCOUNT.appid)
    assert problems_for(f"<xml><Encrypt>{encrypted}</Encrypt></xml>") == [
        "the reply is encrypted but the push was in plaintext mode; WeChat cannot read it"
    ]


def test_an_envelope_under_another_key_does_not_decrypt():
    other_key = "B" * 43
    encrypted = platform_crypto.encrypt(other_key, reply_xml("<MsgType>text</MsgType>"), ACCOUNT.appid)
    signature = platform_crypto.message_signature(ACCOUNT.token, "1", "2", encrypted)
    body = (
        f"<xml><Encrypt>{encrypted}</Encrypt><MsgSignature>{signature}</MsgSignature>"
        "<TimeStamp>1</TimeStamp><Nonce>2</Nonce></xml>"
    )
    assert problems_for(body, mode="safe") == [
        "Encrypt does not decrypt with the account's EncodingAESKey: "
        "bad PKCS#7 padding after decryption (wrong EncodingAESKey?)"
    ]


def test_success_needs_no_content_type_but_xml_does():
    assert problems_for("success", content_type="") == []
    assert problems_for(reply_xml("<MsgType>text</MsgType><Content>hi</Content>"), content_type="") == [
        "warning: no Content-Type on an XML reply; send text/xml"
    ]
