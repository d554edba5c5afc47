"""Signatures, the timestamp window and XML hygiene: small pure helpers shared by the request path."""

from __future__ import annotations

import hashlib
import hmac
import re
import time

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
