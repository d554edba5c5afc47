"""What WeChat pushes to a callback URL: every message and event XML, signed and (optionally) encrypted.

`build_message` makes the XML a follower's action produces (protocol.md §2); `build_push` turns it into
the HTTP request WeChat sends in plaintext, compatible or safe mode (§1.2, §4.2).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

from sandbox import platform_crypto

MODES = ("plain", "compatible", "safe")
DEFAULT_FOLLOWER = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"
DEFAULT_ACCOUNT = "gh_5ab0c1d2e3f4"

# A nested value (ScanCodeInfo, SendPicsInfo, ...) is a tuple of (tag, value) pairs.
Value = str | int | float | tuple
Fields = tuple[tuple[str, Value], ...]

STANDARD_MESSAGES = ("text", "image", "voice", "video", "shortvideo", "location", "link")
EVENTS = (
    "subscribe",
    "unsubscribe",
    "scan",
    "location_event",
    "click",
    "view",
    "scancode_push",
    "scancode_waitmsg",
    "pic_sysphoto",
    "pic_photo_or_album",
    "pic_weixin",
    "location_select",
    "templatesendjobfinish",
    "masssendjobfinish",
    "event",
)
KINDS = STANDARD_MESSAGES + EVENTS
PUSH_HEADERS = (("Content-Type", "text/xml"), ("User-Agent", "Mozilla/4.0"), ("Accept", "*/*"))

# The Event value exactly as WeChat spells it (case-mixed, protocol.md §2.2).
EVENT_NAMES = {
    "subscribe": "subscribe",
    "unsubscribe": "unsubscribe",
    "scan": "SCAN",
    "location_event": "LOCATION",
    "click": "CLICK",
    "view": "VIEW",
    "scancode_push": "scancode_push",
    "scancode_waitmsg": "scancode_waitmsg",
    "pic_sysphoto": "pic_sysphoto",
    "pic_photo_or_album": "pic_photo_or_album",
    "pic_weixin": "pic_weixin",
    "location_select": "location_select",
    "templatesendjobfinish": "TEMPLATESENDJOBFINISH",
    "masssendjobfinish": "MASSSENDJOBFINISH",
}

PLACE = {"latitude": "23.134521", "longitude": "113.358803", "label": "广州市天河区体育西路 191 号"}


class MessageError(ValueError):
    """A message that cannot be built as asked (unknown kind, missing option)."""


def fresh_msgid() -> int:
    """A random positive 64-bit id, as WeChat's MsgId is."""
    return secrets.randbelow(2**63 - 10**15) + 10**15


def _nonce() -> str:
    return str(secrets.randbelow(9 * 10**9) + 10**9)


def cdata(text: str) -> str:
    """A CDATA section that stays well-formed even when the text contains `]]>`."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def render_fields(fields: Fields) -> str:
    parts = []
    for tag, value in fields:
        if isinstance(value, tuple):
            parts.append(f"<{tag}>{render_fields(value)}</{tag}>")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            parts.append(f"<{tag}>{value}</{tag}>")
        else:
            parts.append(f"<{tag}>{cdata(str(value))}</{tag}>")
    return "".join(parts)


@dataclass(frozen=True)
class Message:
    """One push as a follower's action produces it, before signing and encryption."""

    kind: str
    fields: Fields

    def get(self, tag: str, default: str = "") -> str:
        for name, value in self.fields:
            if name == tag:
                return str(value)
        return default

    @property
    def xml(self) -> str:
        return "<xml>" + render_fields(self.fields) + "</xml>"

    @property
    def from_user(self) -> str:
        return self.get("FromUserName")

    @property
    def to_user(self) -> str:
        return self.get("ToUserName")

    @property
    def create_time(self) -> int:
        return int(self.get("CreateTime", "0"))

    @property
    def msg_type(self) -> str:
        return self.get("MsgType")

    @property
    def event(self) -> str:
        return self.get("Event")

    @property
    def is_event(self) -> bool:
        return self.msg_type == "event"

    @property
    def dedupe_key(self) -> str:
        """What a server should de-duplicate retries on (protocol.md §2.3)."""
        if not self.is_event:
            return f"msgid:{self.get('MsgId')}"
        return f"event:{self.from_user}|{self.create_time}|{self.event}|{self.get('EventKey')}"

    @property
    def max_articles(self) -> int:
        """How many news articles WeChat delivers in reply: 1 to a follower's message, 8 to an event."""
        return 8 if self.is_event else 1


def build_message(
    kind: str,
    *,
    content: str | None = None,
    key: str | None = None,
    scene: str | None = None,
    event_name: str | None = None,
    recognition: str | None = None,
    msgid: int | None = None,
    from_user: str = DEFAULT_FOLLOWER,
    to_user: str = DEFAULT_ACCOUNT,
    create_time: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> Message:
    """The XML fields WeChat pushes for `kind` (one of KINDS); `extra` overrides or adds top-level tags."""
    if kind not in KINDS:
        raise MessageError(f"unknown message type {kind!r}; known: {', '.join(KINDS)}")
    header: list[tuple[str, Value]] = [
        ("ToUserName", to_user),
        ("FromUserName", from_user),
        ("CreateTime", int(create_time if create_time is not None else time.time())),
    ]
    if kind in STANDARD_MESSAGES:
        body = _standard_fields(kind, content, recognition)
        fields = [*header, ("MsgType", kind), *body, ("MsgId", msgid if msgid is not None else fresh_msgid())]
    else:
        event, body = _event_fields(kind, key, scene, event_name, msgid)
        fields = [*header, ("MsgType", "event"), ("Event", event), *body]
    for tag, value in (extra or {}).items():
        replaced = [(name, value if name == tag else old) for name, old in fields]
        fields = replaced if any(name == tag for name, _ in fields) else [*fields, (tag, value)]
    return Message(kind=kind, fields=tuple(fields))


def _standard_fields(kind: str, content: str | None, recognition: str | None) -> list[tuple[str, Value]]:
    media = "media_" + secrets.token_hex(8)
    if kind == "text":
        return [("Content", content if content is not None else "你好")]
    if kind == "image":
        return [("PicUrl", "http://mmbiz.qpic.cn/sandbox/photo.jpg"), ("MediaId", media)]
    if kind == "voice":
        fields: list[tuple[str, Value]] = [("MediaId", media), ("Format", "amr")]
        if recognition is not None:
            fields.append(("Recognition", recognition))
        return fields
    if kind in ("video", "shortvideo"):
        return [("MediaId", media), ("ThumbMediaId", "thumb_" + media)]
    if kind == "location":
        return [
            ("Location_X", PLACE["latitude"]),
            ("Location_Y", PLACE["longitude"]),
            ("Scale", 20),
            ("Label", content if content is not None else PLACE["label"]),
        ]
    return [  # link
        ("Title", content if content is not None else "公众平台官网链接"),
        ("Description", "公众平台官网链接"),
        ("Url", "https://mp.weixin.qq.com/"),
    ]


def _event_fields(
    kind: str, key: str | None, scene: str | None, event_name: str | None, msgid: int | None
) -> tuple[str, list[tuple[str, Value]]]:
    ticket = (
        "Ticket",
        "gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL2taZ2Z3TVRtNzJXV1Brb3ZhYmJJAAIEZ23sUwMEmm3sUw==",
    )
    if kind == "event":
        if not event_name:
            raise MessageError("--type event needs --event NAME (the Event value to send)")
        return event_name, [("EventKey", key)] if key is not None else []
    event = EVENT_NAMES[kind]
    if kind == "subscribe":
        if scene is not None:
            return event, [("EventKey", "qrscene_" + scene), ticket]
        return event, [("EventKey", key)] if key else []
    if kind == "unsubscribe":
        return event, []
    if kind == "scan":
        return event, [("EventKey", scene if scene is not None else (key or "123")), ticket]
    if kind == "location_event":
        return event, [
            ("Latitude", PLACE["latitude"]),
            ("Longitude", PLACE["longitude"]),
            ("Precision", "65.0"),
        ]
    if kind == "click":
        return event, [("EventKey", key if key is not None else "V1001_TODAY_MUSIC")]
    if kind == "view":
        return event, [("EventKey", key if key is not None else "https://mp.weixin.qq.com/"), ("MenuId", "0")]
    if kind in ("scancode_push", "scancode_waitmsg"):
        info = (("ScanType", "qrcode"), ("ScanResult", "https://mp.weixin.qq.com/"))
        return event, [("EventKey", key if key is not None else "rselfmenu_0_1"), ("ScanCodeInfo", info)]
    if kind in ("pic_sysphoto", "pic_photo_or_album", "pic_weixin"):
        pictures = (
            ("Count", 1),
            ("PicList", (("item", (("PicMd5Sum", "1b5f7c23b5bf75682a53e7b6d163e185"),)),)),
        )
        return event, [("EventKey", key if key is not None else "rselfmenu_1_0"), ("SendPicsInfo", pictures)]
    if kind == "location_select":
        place = (
            ("Location_X", PLACE["latitude"]),
            ("Location_Y", PLACE["longitude"]),
            ("Scale", "15"),
            ("Label", PLACE["label"]),
            ("Poiname", ""),
        )
        return event, [("EventKey", key if key is not None else "rselfmenu_2_0"), ("SendLocationInfo", place)]
    job = msgid if msgid is not None else fresh_msgid()
    if kind == "templatesendjobfinish":
        return event, [("MsgID", job), ("Status", "success")]
    return event, [  # masssendjobfinish
        ("MsgID", job),
        ("Status", "send success"),
        ("TotalCount", 100),
        ("FilterCount", 80),
        ("SentCount", 75),
        ("ErrorCount", 5),
    ]


@dataclass(frozen=True)
class Account:
    """What the console holds for the account: Token, AppID and EncodingAESKey."""

    token: str
    appid: str = ""
    encoding_aes_key: str = field(default="", repr=False)


@dataclass(frozen=True)
class Push:
    """The exact HTTP request WeChat makes: POST to url?query with body."""

    message: Message
    mode: str
    query: tuple[tuple[str, str], ...]
    body: bytes
    timestamp: str
    nonce: str

    @property
    def headers(self) -> dict[str, str]:
        return dict(PUSH_HEADERS)

    @property
    def query_string(self) -> str:
        return urlencode(self.query)


def build_push(
    message: Message,
    account: Account,
    mode: str = "plain",
    *,
    timestamp: str | None = None,
    nonce: str | None = None,
    random_prefix: bytes | None = None,
) -> Push:
    """Sign (and in compatible/safe mode encrypt) `message` the way WeChat does before POSTing it."""
    if mode not in MODES:
        raise MessageError(f"unknown mode {mode!r}; use plain, compatible or safe")
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or _nonce()
    query = [
        ("signature", platform_crypto.signature(account.token, timestamp, nonce)),
        ("timestamp", timestamp),
        ("nonce", nonce),
        ("openid", message.from_user),
    ]
    if mode == "plain":
        body = message.xml
    else:
        if not account.encoding_aes_key or not account.appid:
            raise MessageError(f"{mode} mode needs the EncodingAESKey and the AppID")
        encrypted = platform_crypto.encrypt(account.encoding_aes_key, message.xml, account.appid, random_prefix)
        query += [
            ("encrypt_type", "aes"),
            ("msg_signature", platform_crypto.message_signature(account.token, timestamp, nonce, encrypted)),
        ]
        visible = message.fields if mode == "compatible" else (("ToUserName", message.to_user),)
        body = "<xml>" + render_fields((*visible, ("Encrypt", encrypted))) + "</xml>"
    return Push(message, mode, tuple(query), body.encode("utf-8"), timestamp, nonce)
