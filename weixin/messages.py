"""One incoming message or event: parsed once from its fields, described, keyed for the retry cache; and the
reply type of the XML we answer with.

wechatpy keeps a message's fields private (`_data`), so `parse` keeps them beside wechatpy's object in a
`Message`; the rest of the request path reads fields there and never inside wechatpy.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import wechatpy
from wechatpy.messages import BaseMessage

# WeChat's MsgId: ASCII digits (a 64-bit number). str.isdigit() would also accept '٤' or '４'.
MSG_ID_PATTERN = re.compile(r"[0-9]{1,24}")
# What may stand in a key name as the account when no AppID is configured (an original id: gh_...).
ACCOUNT_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
REQUIRED_FIELDS = ("ToUserName", "FromUserName", "MsgType")
_MSG_TYPE_START = "<MsgType><![CDATA["


class MalformedMessage(ValueError):
    """The fields are not a WeChat message (a required field is missing); the text is safe to show."""


@dataclass(frozen=True, eq=False)
class Message:
    """A message or event as the request path sees it.

    `fields` is the dict wechatpy's object was built from (the same object: wechatpy writes a field's
    default into it when a missing field is read, as it always has); `wechat` is what handlers receive;
    `category` and `kind` are what `describe` says."""

    fields: dict[str, Any]
    wechat: BaseMessage
    category: str  # "message" or "event"
    kind: str  # "text", "voice", ... or "subscribe", "click", ... lower-cased as wechatpy dispatches them

    def text(self, name: str) -> str:
        """A field as text: empty when it is missing, empty, or a nested element."""
        value = self.fields.get(name)
        return "" if value is None or isinstance(value, dict | list) else str(value)

    def group(self, name: str) -> Mapping[str, Any]:
        """A nested element (ScanCodeInfo, SendPicsInfo, SendLocationInfo) as a mapping, empty when absent."""
        value = self.fields.get(name)
        return value if isinstance(value, dict) else {}

    @property
    def sender(self) -> str:
        """The follower's openid (FromUserName)."""
        return str(self.fields.get("FromUserName") or "")

    @property
    def account(self) -> str:
        """The official account's original id (ToUserName)."""
        return str(self.fields.get("ToUserName") or "")


def parse(fields: dict[str, Any]) -> Message:
    """The message for the fields of a push (wechatpy's UnknownMessage for types wechatpy does not know).

    The dispatch mirrors wechatpy.parse_message, which would parse the XML a second time. Raises
    MalformedMessage when ToUserName, FromUserName or MsgType is missing."""
    for name in REQUIRED_FIELDS:
        if not isinstance(fields.get(name), str) or not fields[name]:
            raise MalformedMessage(f"missing {name}")
    message_type = fields["MsgType"].lower()
    if message_type == "event":
        event = fields.get("Event")
        event_type = event.lower() if isinstance(event, str) else ""
        if event_type == "subscribe" and isinstance(fields.get("EventKey"), str):
            key = fields["EventKey"]
            if key.startswith(("scanbarcode|", "scanimage|")):
                event_type = "subscribe_scan_product"
            elif key.startswith("qrscene_"):
                event_type = "subscribe_scan"
                fields = {**fields, "Event": event_type, "EventKey": key[len("qrscene_"):]}
        message_class = wechatpy.events.EVENT_TYPES.get(event_type, wechatpy.messages.UnknownMessage)
    else:
        message_class = wechatpy.messages.MESSAGE_TYPES.get(message_type, wechatpy.messages.UnknownMessage)
    wechat = message_class(fields)
    category, kind = _category_and_kind(wechat, fields)
    return Message(fields, wechat, category, kind)


def _category_and_kind(wechat: BaseMessage, fields: Mapping[str, Any]) -> tuple[str, str]:
    message_type = str(getattr(wechat, "type", "unknown") or "unknown").lower()
    if message_type == "event":
        return "event", str(wechat.event or "unknown").lower()
    if message_type == "unknown" and str(fields.get("MsgType", "")).lower() == "event":
        return "event", str(fields.get("Event") or "unknown").lower()
    if message_type == "unknown":
        return "message", str(fields.get("MsgType") or "unknown").lower()
    return "message", message_type


def describe(message: Message) -> tuple[str, str]:
    """("message", "text") or ("event", "subscribe"...), lower-cased as wechatpy dispatches them."""
    return message.category, message.kind


def retry_key(appid: str, message: Message) -> str:
    """The retry-cache key for a message: its account, its sender and the message itself, so that a
    stored reply only ever answers a delivery of the message it was made for (another follower's request
    carrying the same MsgId gets its own). Messages: `<account>:id:<MsgId>:<digest of To and From>`;
    events (and a MsgId that is not ASCII digits): `<account>:ev:<digest>` of To, From, CreateTime, Event,
    EventKey... Digests keep the key short and free of openids and of whatever a field contains."""
    data = message.fields
    to_user = str(data.get("ToUserName") or "")
    from_user = str(data.get("FromUserName") or "")
    account = appid or (to_user if ACCOUNT_PATTERN.fullmatch(to_user) else "to-" + _digest(to_user)[:16])
    msg_id = str(data.get("MsgId") or "")
    if MSG_ID_PATTERN.fullmatch(msg_id):
        return f"wechat:msg:{account}:id:{msg_id}:{_digest(to_user, from_user)}"
    parts = [to_user, from_user] + [
        str(data.get(name) or "") for name in ("CreateTime", "MsgType", "Event", "EventKey", "MsgID", "MsgId")
    ]
    return f"wechat:msg:{account}:ev:{_digest(*parts)}"


def _digest(*values: str) -> str:
    # \x1f cannot occur in a field: XML 1.0 has no such character.
    return hashlib.sha1("\x1f".join(values).encode("utf-8", "surrogatepass")).hexdigest()


def reply_type(xml: str | None) -> str:
    """The MsgType of a reply's XML for the request log: "none" for no reply, "?" when it has none."""
    if xml is None:
        return "none"
    start = xml.find(_MSG_TYPE_START)
    if start < 0:
        return "?"
    start += len(_MSG_TYPE_START)
    return xml[start:xml.find("]]>", start)]
