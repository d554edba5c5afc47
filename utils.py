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

    ElementTree's C parser is several times faster than xmltodict; callers reject DTDs first."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
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
