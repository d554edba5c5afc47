"""Hypothesis strategies for what can reach POST /weixin: mutated WeChat pushes, random bytes, random
query strings, in every mode (plain, compatible, safe)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from hypothesis import strategies as st

from sandbox.messages import cdata
from tests.conftest import TEST_AES_KEY, TEST_APPID, TEST_TOKEN
from tests.wechat_requests import FIXTURES, encrypted_body, signed_query
from utils import make_signature

MODES = ("plain", "compatible", "safe")
FIXTURE_NAMES = sorted(
    path.relative_to(FIXTURES).as_posix()
    for folder in ("messages", "events")
    for path in (FIXTURES / folder).glob("*.xml")
)
FIXTURE_BYTES = {name: (FIXTURES / name).read_bytes() for name in FIXTURE_NAMES}
# Bytes that tend to matter to an XML parser, a CDATA writer, a number parser or the replies file.
INTERESTING = [
    b"<![CDATA[", b"]]>", b"&amp;", b"&lt;", b"&#0;", b"&#x1F;", b"&#xD800;", b"&unknown;", b"<!DOCTYPE xml>",
    b"<!ENTITY a 'b'>", b"<?xml version='1.0'?>", b"\x00", b"\x1f", b"\xff\xfe", b"\xc3", b"\xed\xa0\x80",
    b"</xml>", b"<xml>", b"<a>", b"</a>", b"<a/>", b"99999999999999999999999", b"-1", b"1e9", "微博".encode(),
    "帮助".encode(), b"count-me", b"qrscene_", b"scanbarcode|", b"<Encrypt>x</Encrypt>", b"\r\n", b" ",
    b"event", b"text", b"EVENT", b"subscribe", b"CLICK", b"V1001_TODAY", b"{content}", b"{0}", b"%s", "🎉".encode(),
]
TOP_LEVEL_FIELD = re.compile(rb"<(\w+)>(.*?)</\1>", re.S)
QUERY_KEYS = ("signature", "timestamp", "nonce", "openid", "encrypt_type", "msg_signature", "echostr")


@dataclass(frozen=True)
class Push:
    """One request as sent: the query string, the body, and the plaintext message inside it."""

    query_string: str
    body: bytes
    inner_xml: bytes
    mode: str

    def __repr__(self) -> str:
        return f"Push(mode={self.mode!r}, query={self.query_string!r}, body={self.body[:400]!r})"


def field_values() -> st.SearchStrategy[bytes]:
    """A new value for a field: text of any kind (as CDATA), a number, raw bytes or nothing."""
    return st.one_of(
        st.text(max_size=60).map(lambda text: cdata(text).encode("utf-8")),
        st.text(max_size=60).map(lambda text: text.encode("utf-8")),
        st.integers(min_value=-(2**70), max_value=2**70).map(lambda number: str(number).encode()),
        st.sampled_from(INTERESTING),
        st.just(b""),
    )


@st.composite
def field_mutated_xml(draw: st.DrawFn) -> bytes:
    """A fixture push with some fields given new values, dropped, repeated or added: mostly well-formed."""
    xml = FIXTURE_BYTES[draw(st.sampled_from(FIXTURE_NAMES))]
    fields = [(match.group(1), match.group(2)) for match in TOP_LEVEL_FIELD.finditer(xml)]
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["value", "value", "value", "drop", "repeat", "add"]))
        index = draw(st.integers(0, len(fields) - 1)) if fields else 0
        if action == "value" and fields:
            fields[index] = (fields[index][0], draw(field_values()))
        elif action == "drop" and fields:
            fields.pop(index)
        elif action == "repeat" and fields:
            fields.insert(index, fields[index])
        else:
            tag = draw(st.sampled_from([b"Content", b"Event", b"EventKey", b"MsgType", b"Recognition", b"Extra", b"x"]))
            fields.insert(index, (tag, draw(field_values())))
    return b"<xml>" + b"".join(b"<%s>%s</%s>" % (tag, value, tag) for tag, value in fields) + b"</xml>"


@st.composite
def byte_mutated_xml(draw: st.DrawFn) -> bytes:
    """A fixture push with bytes deleted, inserted, replaced or duplicated: mostly malformed."""
    xml = bytearray(FIXTURE_BYTES[draw(st.sampled_from(FIXTURE_NAMES))])
    for _ in range(draw(st.integers(1, 5))):
        position = draw(st.integers(0, len(xml)))
        action = draw(st.sampled_from(["delete", "insert", "replace", "duplicate", "interesting"]))
        if action == "delete":
            del xml[position : position + draw(st.integers(1, 16))]
        elif action == "insert":
            xml[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif action == "replace" and position < len(xml):
            xml[position] = draw(st.integers(0, 255))
        elif action == "duplicate":
            xml[position:position] = xml[position : position + draw(st.integers(1, 64))]
        else:
            xml[position:position] = draw(st.sampled_from(INTERESTING))
    return bytes(xml)


def messages() -> st.SearchStrategy[bytes]:
    """Plaintext pushes: every fixture type, unmodified, field-mutated, byte-mutated, or random bytes."""
    return st.one_of(
        st.sampled_from(FIXTURE_NAMES).map(FIXTURE_BYTES.__getitem__),
        field_mutated_xml(),
        byte_mutated_xml(),
        st.binary(max_size=600),
    )


@st.composite
def broken_query(draw: st.DrawFn, query: dict[str, str]) -> str:
    """A correctly signed query string with keys dropped, changed, repeated or added; or random text."""
    if draw(st.integers(0, 5)) == 0:
        return quote(draw(st.text(max_size=120)), safe="=&%+;")
    pairs = list(query.items())
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["drop", "value", "repeat", "add", "case"]))
        index = draw(st.integers(0, len(pairs) - 1)) if pairs else 0
        if action == "drop" and pairs:
            pairs.pop(index)
        elif action == "value" and pairs:
            value = draw(st.one_of(st.text(max_size=40), st.sampled_from(["", "aes", "AES", "raw"])))
            pairs[index] = (pairs[index][0], value)
        elif action == "repeat" and pairs:
            pairs.append((pairs[index][0], draw(st.text(max_size=20))))
        elif action == "case" and pairs:
            pairs[index] = (pairs[index][0], pairs[index][1].upper())
        else:
            pairs.insert(index, (draw(st.sampled_from(QUERY_KEYS)), draw(st.text(max_size=40))))
    return urlencode(pairs)


def sign(inner_xml: bytes, mode: str) -> tuple[dict[str, str], bytes]:
    """The query and body WeChat sends for `inner_xml` in `mode` (the fixture's own encryption helper)."""
    query = signed_query(TEST_TOKEN)
    if mode == "plain":
        return query, inner_xml
    body, encrypt = encrypted_body(inner_xml, TEST_AES_KEY, TEST_APPID, compatible=mode == "compatible")
    query.update(encrypt_type="aes", msg_signature=msg_signature(query, encrypt))
    return query, body


def msg_signature(query: dict[str, str], encrypt: str) -> str:
    return make_signature(TEST_TOKEN, query["timestamp"], query["nonce"], encrypt)


@st.composite
def pushes(draw: st.DrawFn, query_mutations: bool = True) -> Push:
    """A push in any mode with a valid signature, or (sometimes) a broken query string."""
    mode = draw(st.sampled_from(MODES))
    inner = draw(messages())
    query, body = sign(inner, mode)
    if query_mutations and draw(st.integers(0, 3)) == 0:
        return Push(draw(broken_query(query)), body, inner, mode)
    return Push(urlencode(query), body, inner, mode)


@st.composite
def random_encrypt_pushes(draw: st.DrawFn) -> Push:
    """Safe-mode pushes whose Encrypt is random base64-ish text, correctly signed: decryption must fail cleanly."""
    alphabet = st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
    encrypt = draw(st.one_of(st.text(alphabet, max_size=300), st.text(max_size=50)))
    query = signed_query(TEST_TOKEN)
    query.update(encrypt_type="aes", msg_signature=msg_signature(query, encrypt))
    body = b"<xml><ToUserName>gh_10f6c3c3ac5a</ToUserName><Encrypt>" + cdata(encrypt).encode() + b"</Encrypt></xml>"
    return Push(urlencode(query), body, b"", "safe")
