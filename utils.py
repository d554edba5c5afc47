"""Signatures, the timestamp window and XML hygiene: small pure helpers shared by the request path."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import xml.etree.ElementTree as ElementTree
from typing import Any

# XML 1.0 allows tab, LF, CR and these ranges; anything else (NUL, most C0 controls, lone surrogates,
# U+FFFE/U+FFFF) makes a reply ill-formed, and WeChat then drops it.
_XML_ILLEGAL_CHARACTERS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_FORBIDDEN_MARKUP = re.compile(rb"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)", re.IGNORECASE)
# The only prolog tolerated before `<xml>`: an XML 1.0 declaration that names UTF-8, or no encoding at all
# (which XML defines as UTF-8). WeChat sends none.
_UTF8_DECLARATION = re.compile(
    rb"""<\?xml\s+version\s*=\s*(["'])1\.0\1"""
    rb"""(?:\s+encoding\s*=\s*(["'])(?i:utf-8)\2)?"""
    rb"""(?:\s+standalone\s*=\s*(["'])(?:yes|no)\3)?\s*\?>"""
)
_XML_BLANKS = b" \t\r\n"


def make_signature(*parts: str) -> str:
    """WeChat's signature: SHA-1 (lower-case hex) of the parts sorted and concatenated."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def signatures_match(expected: str, received: str | None) -> bool:
    """Constant-time comparison, so that timing does not leak how much of a guess was right."""
    if not received:
        return False
    return hmac.compare_digest(expected.encode("ascii", "replace"), received.strip().lower().encode("ascii", "replace"))


def check_signature(token: str, timestamp: str, nonce: str, signature: str | None) -> bool:
    """The 3-value query signature that WeChat puts on every GET and POST."""
    return signatures_match(make_signature(token, timestamp, nonce), signature)


def check_msg_signature(token: str, timestamp: str, nonce: str, encrypt: str, msg_signature: str | None) -> bool:
    """The 4-value signature over the `Encrypt` field in compatible and safe mode."""
    return signatures_match(make_signature(token, timestamp, nonce, encrypt), msg_signature)


def timestamp_is_fresh(timestamp: str, window_seconds: int, now: float | None = None) -> bool:
    """True when `timestamp` is a Unix time within `window_seconds` of now (0 turns the check off)."""
    try:
        value = int(timestamp)
    except (TypeError, ValueError):
        return False
    if window_seconds <= 0:
        return True
    if now is None:
        now = time.time()
    return abs(now - value) <= window_seconds


def xml_policy_problem(body: bytes) -> str | None:
    """Why `body` is not shaped like a WeChat push, as a short reason (None when it is): a push is UTF-8
    whose first non-blank bytes are `<xml>`, after at most a UTF-8 XML declaration, without NUL bytes.

    Expat takes the encoding from a byte-order mark or a declaration, so without this a UTF-16 body hides
    its DOCTYPE from `has_forbidden_markup` (an ASCII scan) and a multi-byte declared encoding makes
    ElementTree raise ValueError. Only the start of the body is looked at, plus one scan for NUL."""
    if b"\x00" in body:
        return "NUL byte in body"
    if body.startswith(b"<xml>"):  # every push WeChat sends
        return None
    start = body.lstrip(_XML_BLANKS)
    if start.startswith(b"<?xml"):
        declaration = _UTF8_DECLARATION.match(start)
        if declaration is None:
            return "only a UTF-8 XML declaration is accepted"
        start = start[declaration.end():].lstrip(_XML_BLANKS)
    if not start.startswith(b"<xml>"):
        return "body must be UTF-8 XML starting with <xml>"
    return None


def has_forbidden_markup(body: bytes) -> bool:
    """A DOCTYPE or entity declaration: WeChat never sends one, and it is how XXE and billion laughs start."""
    return _FORBIDDEN_MARKUP.search(body) is not None


class MalformedXml(ValueError):
    """The body is not a WeChat-shaped XML document; the message is safe to show."""


MAX_XML_DEPTH = 8  # the deepest WeChat push (SendPicsInfo/PicList/item/PicMd5Sum) is 5 levels


def _element_value(element: ElementTree.Element, depth: int) -> Any:
    if len(element) == 0:
        return element.text or None
    if depth >= MAX_XML_DEPTH:
        raise MalformedXml("XML nested deeper than any WeChat message")
    value: dict[str, Any] = {}
    for child in element:
        item = _element_value(child, depth + 1)
        if child.tag in value:  # repeated tags become a list, as xmltodict (and so wechatpy) expects
            existing = value[child.tag]
            if isinstance(existing, list):
                existing.append(item)
            else:
                value[child.tag] = [existing, item]
        else:
            value[child.tag] = item
    return value


def xml_fields(body: bytes) -> dict[str, Any]:
    """The children of the `<xml>` root as a dict (nested dicts, lists for repeated tags, None when empty).

    ElementTree's C parser is several times faster than xmltodict; callers check `xml_policy_problem` and
    reject DTDs first (ValueError is what ElementTree raises for a multi-byte declared encoding)."""
    try:
        root = ElementTree.fromstring(body)
    except (ElementTree.ParseError, ValueError):
        raise MalformedXml("body is not well-formed XML (or not UTF-8)") from None
    if root.tag != "xml" or len(root) == 0:
        raise MalformedXml("root element must be <xml> with fields")
    return _element_value(root, 1)


def xml_safe_text(value: object) -> str:
    """Text that stays well-formed inside a CDATA section: no XML-illegal characters, `]]>` split."""
    text = value if isinstance(value, str) else str(value)
    if _XML_ILLEGAL_CHARACTERS.search(text):
        text = _XML_ILLEGAL_CHARACTERS.sub("", text)
    if "]]>" in text:
        text = text.replace("]]>", "]]]]><![CDATA[>")
    return text


def mask_secret(value: str, keep: int = 6) -> str:
    """For logs: the first few characters of a token, never the whole."""
    if not value:
        return ""
    return value[:keep] + "..."
