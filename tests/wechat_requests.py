"""Build and send requests the way WeChat does (signed query, optional encryption), for the tests."""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path
from typing import Any

import requests
import xmltodict

from utils import make_signature, xml_fields
from weixin import messages
from weixin.crypto import aes_key_from_encoding_key, decrypt_message, encrypt_message

FIXTURES = Path(__file__).resolve().parent / "fixtures"
_message_ids = itertools.count(int(time.time() * 1000) * 1000)


def fixture(name: str) -> bytes:
    """A fixture file such as "messages/text.xml" or "attacks/xxe_file.xml"."""
    return (FIXTURES / name).read_bytes()


def parsed_message(xml: str | bytes) -> messages.Message:
    """A push's XML parsed as the endpoint parses it (weixin/messages.py)."""
    return messages.parse(xml_fields(xml.encode("utf-8") if isinstance(xml, str) else xml))


def fresh_id() -> int:
    return next(_message_ids)


def with_fresh_ids(xml: bytes) -> bytes:
    """The same message with a new MsgId and CreateTime, so that dedupe treats it as new."""
    new_id = fresh_id()
    xml = re.sub(rb"<MsgId>\d+</MsgId>", b"<MsgId>%d</MsgId>" % new_id, xml)
    return re.sub(rb"<CreateTime>\d+</CreateTime>", b"<CreateTime>%d</CreateTime>" % new_id, xml)


def signed_query(token: str, timestamp: str | None = None, nonce: str | None = None, **extra: str) -> dict[str, str]:
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or str(fresh_id() % 10**10)
    return {"signature": make_signature(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce, **extra}


def encrypted_body(xml: bytes, encoding_aes_key: str, appid: str, compatible: bool = False) -> tuple[bytes, str]:
    """The safe-mode (or compatible-mode) envelope for `xml`, and its Encrypt value."""
    encrypt = encrypt_message(xml, aes_key_from_encoding_key(encoding_aes_key), appid)
    to_user = re.search(rb"<ToUserName>(.*?)</ToUserName>", xml, re.S)
    inner = xml.strip()[len(b"<xml>") : -len(b"</xml>")] if compatible else (to_user.group(0) if to_user else b"")
    body = b"<xml>" + inner + b"<Encrypt><![CDATA[" + encrypt.encode() + b"]]></Encrypt></xml>"
    return body, encrypt


def prepare(
    xml: bytes,
    token: str,
    mode: str = "plain",
    encoding_aes_key: str = "",
    appid: str = "",
    query: dict[str, str] | None = None,
) -> tuple[dict[str, str], bytes]:
    """The query and body WeChat would send for `xml` in `mode` (plain, compatible or safe)."""
    query = dict(query or signed_query(token))
    body = xml
    if mode in ("safe", "compatible"):
        body, encrypt = encrypted_body(xml, encoding_aes_key, appid, compatible=mode == "compatible")
        query["encrypt_type"] = "aes"
        query["msg_signature"] = make_signature(token, query["timestamp"], query["nonce"], encrypt)
    return query, body


def deliver(url: str, query: dict[str, str], body: bytes, timeout: float = 10) -> requests.Response:
    return requests.post(url, params=query, data=body, headers={"Content-Type": "text/xml"}, timeout=timeout)


def post(
    url: str,
    xml: bytes,
    token: str,
    mode: str = "plain",
    encoding_aes_key: str = "",
    appid: str = "",
    query: dict[str, str] | None = None,
    timeout: float = 10,
) -> requests.Response:
    """POST `xml` as WeChat would in `mode` (plain, compatible or safe)."""
    prepared_query, body = prepare(xml, token, mode, encoding_aes_key, appid, query)
    return deliver(url, prepared_query, body, timeout)


def reply_fields(text: str) -> dict[str, Any]:
    return xmltodict.parse(text)["xml"]


def open_encrypted_reply(text: str, token: str, encoding_aes_key: str, appid: str) -> dict[str, Any]:
    """Check the envelope's MsgSignature and return the decrypted reply's fields."""
    envelope = reply_fields(text)
    expected = make_signature(token, envelope["TimeStamp"], envelope["Nonce"], envelope["Encrypt"])
    assert envelope["MsgSignature"] == expected, "MsgSignature does not verify"
    inner = decrypt_message(envelope["Encrypt"], aes_key_from_encoding_key(encoding_aes_key), appid)
    return reply_fields(inner.decode("utf-8"))
