"""The simulator builds, signs and encrypts pushes exactly as WeChat does (protocol.md §1, §2, §4)."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto

from sandbox import platform_crypto
from sandbox.checks import parse_xml
from sandbox.messages import KINDS, Account, MessageError, build_message, build_push, cdata

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
VECTOR_A_ENCRYPT = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJ"
    "F9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTj"
    "g3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUd"
    "Uue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
)
VECTOR_A_XML = (
    "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n"
    "<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n"
    "<CreateTime>1409735668</CreateTime>\n"
    "<MsgType><![CDATA[text]]></MsgType>\n"
    "<Content><![CDATA[abcdteT]]></Content>\n"
    "<MsgId>6054768590064713728</MsgId>\n"
    "</xml>"
)

# What wechatpy calls each kind once parsed: the simulator's XML must be what real libraries expect.
WECHATPY_CLASSES = {
    "text": "TextMessage", "image": "ImageMessage", "voice": "VoiceMessage", "video": "VideoMessage",
    "shortvideo": "ShortVideoMessage", "location": "LocationMessage", "link": "LinkMessage",
    "subscribe": "SubscribeEvent", "unsubscribe": "UnsubscribeEvent", "scan": "ScanEvent",
    "location_event": "LocationEvent", "click": "ClickEvent", "view": "ViewEvent",
    "scancode_push": "ScanCodePushEvent", "scancode_waitmsg": "ScanCodeWaitMsgEvent",
    "pic_sysphoto": "PicSysPhotoEvent", "pic_photo_or_album": "PicPhotoOrAlbumEvent",
    "pic_weixin": "PicWeChatEvent", "location_select": "LocationSelectEvent",
    "templatesendjobfinish": "TemplateSendJobFinishEvent", "masssendjobfinish": "MassSendJobFinishEvent",
    "event": "UnknownMessage",
}  # fmt: skip


def test_every_kind_is_covered_by_the_wechatpy_table():
    assert set(WECHATPY_CLASSES) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_every_message_and_event_parses_in_wechatpy_as_its_own_type(kind):
    message = build_message(kind, event_name="brand_new_event_2030")
    parsed = parse_message(message.xml)
    assert type(parsed).__name__ == WECHATPY_CLASSES[kind]
    assert parsed.source == message.from_user
    assert parsed.target == message.to_user


def test_subscribe_with_a_scene_is_a_qrscene_event_key_with_a_ticket():
    message = build_message("subscribe", scene="1001")
    parsed = parse_message(message.xml)
    assert type(parsed).__name__ == "SubscribeScanEvent"
    assert parsed.scene_id == "1001"
    assert message.get("EventKey") == "qrscene_1001"
    assert parsed.ticket


def test_scan_carries_the_scene_without_prefix():
    assert build_message("scan", scene="poster_2026").get("EventKey") == "poster_2026"


def test_event_names_are_spelled_as_wechat_sends_them():
    spelled = {kind: build_message(kind).event for kind in ("scan", "location_event", "click", "view")}
    assert spelled == {"scan": "SCAN", "location_event": "LOCATION", "click": "CLICK", "view": "VIEW"}
    assert build_message("templatesendjobfinish").event == "TEMPLATESENDJOBFINISH"


def test_job_finish_events_use_capital_d_msgid_and_standard_messages_msgid():
    assert "<MsgID>" in build_message("masssendjobfinish").xml
    assert "<MsgId>" in build_message("text").xml
    assert "MsgId" not in build_message("click").xml


def test_voice_recognition_is_sent_only_when_given():
    assert parse_message(build_message("voice", recognition="明天会下雨吗").xml).recognition == "明天会下雨吗"
    assert "Recognition" not in build_message("voice").xml


def test_a_given_msgid_is_kept_and_fresh_ones_differ():
    assert build_message("text", msgid=1234567890123456).get("MsgId") == "1234567890123456"
    assert build_message("text").get("MsgId") != build_message("text").get("MsgId")


def test_dedupe_key_is_msgid_for_messages_and_sender_time_event_key_for_events():
    assert build_message("text", msgid=42).dedupe_key == "msgid:42"
    click = build_message("click", key="K", from_user="oA", create_time=1700000000)
    assert click.dedupe_key == "event:oA|1700000000|CLICK|K"


def test_article_limit_is_one_for_messages_and_eight_for_events():
    assert build_message("text").max_articles == 1
    assert build_message("location").max_articles == 1
    assert build_message("subscribe").max_articles == 8


def test_text_with_the_cdata_terminator_stays_well_formed():
    message = build_message("text", content="a]]>b<c>&")
    assert parse_xml(message.xml).findtext("Content") == "a]]>b<c>&"
    assert cdata("]]>") == "<![CDATA[]]]]><![CDATA[>]]>"


def test_extra_fields_replace_or_add_top_level_tags():
    message = build_message("text", extra={"Content": "x", "MsgDataId": "7"})
    assert message.get("Content") == "x"
    assert message.get("MsgDataId") == "7"


def test_unknown_kind_and_nameless_event_are_refused():
    with pytest.raises(MessageError, match="unknown message type 'sticker'"):
        build_message("sticker")
    with pytest.raises(MessageError, match="--event NAME"):
        build_message("event")


# -- signatures and encryption: protocol.md vectors -------------------------------------------------


@pytest.mark.parametrize(
    ("token", "timestamp", "nonce", "expected"),
    [
        ("AAAAA", "1714036504", "1514711492", "f464b24fc39322e44b38aa78f5edd27bd1441696"),
        ("AAAAA", "1714037059", "486452656", "899cf89e464efb63f54ddac96b0a0a235f53aa78"),
        ("spamtest", "1409735669", "1320562132", "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a"),
    ],
)
def test_signature_reproduces_the_official_examples(token, timestamp, nonce, expected):
    assert platform_crypto.signature(token, timestamp, nonce) == expected


def test_message_signature_reproduces_vector_a_and_b():
    assert (
        platform_crypto.message_signature("spamtest", "1409735669", "1320562132", VECTOR_A_ENCRYPT)
        == "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
    )
    vector_b = "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
    assert (
        platform_crypto.message_signature("pamtest", "1409304348", "xxxxxx", vector_b)
        == "82c962d39941aa48552f90ef55aa323dc620cc10"
    )


def test_decrypts_vector_a_to_the_official_plaintext_and_appid():
    xml, appid = platform_crypto.decrypt(AES_KEY, VECTOR_A_ENCRYPT)
    assert xml.decode("utf-8") == VECTOR_A_XML
    assert len(xml) == 280
    assert appid == "wx2c2769f8efd9abc2"


def test_encryption_with_the_same_random_prefix_reproduces_vector_a_and_b():
    encrypted = platform_crypto.encrypt(AES_KEY, VECTOR_A_XML, "wx2c2769f8efd9abc2", b"89465c840c5f116f")
    assert encrypted == VECTOR_A_ENCRYPT
    assert (
        platform_crypto.encrypt(AES_KEY, "我是中文abcd123", "wxb11529c136998cb6", b"aaaabbbbccccdddd")
        == "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
    )


@pytest.mark.parametrize(
    ("encrypted", "reason"),
    [
        ("not base64!!", "not valid base64"),
        ("AAAA", "not a non-empty multiple of 16"),
        ("A" * 42 + "==", "not a non-empty multiple of 16"),
        ("A" * 43 + "=", "bad PKCS#7 padding"),
    ],
)
def test_decrypt_names_the_broken_rule(encrypted, reason):
    with pytest.raises(platform_crypto.CryptoError, match=reason):
        platform_crypto.decrypt(AES_KEY, encrypted)


def test_a_key_that_is_not_43_characters_is_refused():
    with pytest.raises(platform_crypto.CryptoError, match="43 characters"):
        platform_crypto.aes_key_bytes("short")


# -- the HTTP request -----------------------------------------------------------------------------


ACCOUNT = Account(token="sandboxtoken", appid="wx0123456789abcdef", encoding_aes_key=AES_KEY)


def test_plain_push_query_is_signature_timestamp_nonce_openid():
    message = build_message("text", content="hi")
    push = build_push(message, ACCOUNT, "plain", timestamp="1714037059", nonce="486452656")
    query = dict(push.query)
    assert list(query) == ["signature", "timestamp", "nonce", "openid"]
    assert query["signature"] == platform_crypto.signature("sandboxtoken", "1714037059", "486452656")
    assert query["openid"] == message.from_user
    assert push.body == message.xml.encode("utf-8")
    assert push.headers["Content-Type"] == "text/xml"


@pytest.mark.parametrize("mode", ["compatible", "safe"])
def test_encrypted_push_is_read_by_wechatpy_crypto(mode):
    message = build_message("text", content="你好 ]]> 世界")
    push = build_push(message, ACCOUNT, mode)
    query = {key: values[0] for key, values in parse_qs(push.query_string).items()}
    assert query["encrypt_type"] == "aes"
    crypto = WeChatCrypto(ACCOUNT.token, ACCOUNT.encoding_aes_key, ACCOUNT.appid)
    plain = crypto.decrypt_message(push.body, query["msg_signature"], query["timestamp"], query["nonce"])
    assert parse_message(plain).content == "你好 ]]> 世界"


def test_safe_body_shows_only_to_user_and_encrypt_and_compatible_shows_everything():
    message = build_message("text", content="secret words")
    safe = parse_xml(build_push(message, ACCOUNT, "safe").body)
    assert [child.tag for child in safe] == ["ToUserName", "Encrypt"]
    compatible = parse_xml(build_push(message, ACCOUNT, "compatible").body)
    assert compatible.findtext("Content") == "secret words"
    assert compatible.find("Encrypt") is not None


def test_encrypted_modes_need_the_key_and_appid():
    with pytest.raises(MessageError, match="needs the EncodingAESKey and the AppID"):
        build_push(build_message("text"), Account("sandboxtoken"), "safe")
