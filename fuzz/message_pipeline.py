"""What an incoming push goes through before a reply is sent (parse, decrypt, dispatch, match, render),
as one pure check for the fuzzer and the crash-regression tests; anything it raises is a bug."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import handle
from weixin import messages, render
from weixin.crypto import DecryptError, aes_key_from_encoding_key, decrypt_message, encrypt_message
from weixin.messages import Message
from weixin.rules import load_rules

PROJECT_ROOT = Path(__file__).resolve().parent.parent
APPID = "wx2c2769f8efd9abc2"
AES_KEY = aes_key_from_encoding_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
RULES = load_rules(PROJECT_ROOT / "replies.yaml")

# The first byte of an input picks the path; the rest is the payload.
PLAIN_XML, ENCRYPT_VALUE, ENCRYPTED_XML = 0, 1, 2


class PipelineBug(AssertionError):
    """An invariant of the request path does not hold for this input."""


def answer(xml: bytes) -> str | None:
    """The reply the server would render for this plaintext push (None: refused, or nothing to say)."""
    try:
        message = handle.parse_message(handle.parse_xml(xml))
    except handle.Rejected:
        return None
    key = messages.retry_key(APPID, message)
    if not key.startswith("wechat:msg:") or len(key) > 200:
        raise PipelineBug(f"unexpected retry-cache key {key[:100]!r}")
    messages.describe(message)
    match = RULES.find_reply(message)
    if match.reply is None or match.reply.kind == "handler":  # handlers are the operator's code, not ours
        return None
    reply = render.render_reply(match.reply, message)
    if reply is not None:
        check_reply(reply, message)
    return reply


def check_reply(reply: str, message: Message) -> None:
    try:
        root = ElementTree.fromstring(reply.encode("utf-8"))
    except ElementTree.ParseError as error:
        raise PipelineBug(f"the reply is not well-formed XML ({error}): {reply[:300]!r}") from None
    if root.findtext("ToUserName") != message.fields.get("FromUserName") or root.findtext(
        "FromUserName"
    ) != message.fields.get("ToUserName"):
        raise PipelineBug(f"the reply is not addressed back to the sender: {reply[:300]!r}")
    if not (root.findtext("MsgType") or ""):
        raise PipelineBug("the reply has no MsgType")


def check_one_input(data: bytes) -> None:
    """Run one fuzz input; expected refusals (malformed XML, undecryptable Encrypt) are fine."""
    if not data:
        return
    path, payload = data[0] % 3, data[1:]
    if path == PLAIN_XML:
        answer(payload)
    elif path == ENCRYPT_VALUE:
        try:
            inner = decrypt_message(payload, AES_KEY, APPID)
        except DecryptError:
            return
        answer(inner)
    else:
        encrypt = encrypt_message(payload, AES_KEY, APPID, random_prefix=bytes(16))
        if decrypt_message(encrypt, AES_KEY, APPID) != payload:
            raise PipelineBug("decrypt(encrypt(x)) != x")
        answer(payload)


def seed_inputs(fixtures: Path) -> dict[str, bytes]:
    """Corpus seeds from the test fixtures: each push in plain form, as an Encrypt value and encrypted."""
    seeds = {}
    for path in sorted(fixtures.glob("*/*")):
        if not path.is_file():
            continue
        xml = path.read_bytes()
        name = f"{path.parent.name}-{path.stem}"
        seeds[f"{name}-plain"] = bytes([PLAIN_XML]) + xml
        seeds[f"{name}-encrypted"] = bytes([ENCRYPTED_XML]) + xml
        seeds[f"{name}-encrypt"] = bytes([ENCRYPT_VALUE]) + encrypt_message(xml, AES_KEY, APPID, bytes(16)).encode()
    return seeds
