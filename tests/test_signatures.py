"""The query signature, the msg_signature, the timestamp window and XML hygiene (protocol.md §0, §1, §4)."""

from __future__ import annotations

import xml.dom.minidom

import pytest

from utils import (
    check_msg_signature,
    check_signature,
    has_forbidden_markup,
    make_signature,
    mask_secret,
    timestamp_is_fresh,
    xml_safe_text,
)


@pytest.mark.parametrize(
    ("token", "timestamp", "nonce", "signature"),
    [
        ("AAAAA", "1714036504", "1514711492", "f464b24fc39322e44b38aa78f5edd27bd1441696"),
        ("AAAAA", "1714037059", "486452656", "899cf89e464efb63f54ddac96b0a0a235f53aa78"),
        ("spamtest", "1409735669", "1320562132", "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a"),
    ],
)
def test_official_signature_examples_verify(token: str, timestamp: str, nonce: str, signature: str) -> None:
    assert make_signature(token, timestamp, nonce) == signature
    assert check_signature(token, timestamp, nonce, signature)
    assert check_signature(token, timestamp, nonce, signature.upper())


def test_signature_from_another_token_is_refused() -> None:
    assert not check_signature("othertoken", "1714036504", "1514711492", "f464b24fc39322e44b38aa78f5edd27bd1441696")


@pytest.mark.parametrize("signature", [None, "", "0" * 40, "f464b24f", "非ascii签名"])
def test_missing_or_garbage_signature_is_refused(signature: str | None) -> None:
    assert not check_signature("AAAAA", "1714036504", "1514711492", signature)


def test_msg_signature_of_vector_a_verifies() -> None:
    encrypt = (
        "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2Ld"
        "JF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5"
        "VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgC"
        "SUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9Gh"
        "glF2PE="
    )
    assert check_msg_signature(
        "spamtest", "1409735669", "1320562132", encrypt, "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
    )
    signature = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
    assert not check_msg_signature("spamtest", "1409735669", "1320562132", encrypt + "x", signature)


def test_timestamp_window() -> None:
    assert timestamp_is_fresh("1000", 300, now=1200)
    assert not timestamp_is_fresh("1000", 300, now=1301)
    assert not timestamp_is_fresh("1000", 300, now=699)
    assert timestamp_is_fresh("1000", 0, now=10**9)  # 0 turns the check off
    assert not timestamp_is_fresh("soon", 300)
    assert not timestamp_is_fresh("", 0)


@pytest.mark.parametrize(
    "body",
    [b"<!DOCTYPE x>", b"<!doctype x>", b'<!ENTITY a "b">', b"<! DOCTYPE x>", b"<!ELEMENT x ANY>",
     b"<!ATTLIST a b CDATA>"],
)
def test_dtd_markup_is_detected(body: bytes) -> None:
    assert has_forbidden_markup(b"<?xml version='1.0'?>" + body + b"<xml/>")


def test_cdata_sections_are_not_mistaken_for_dtd() -> None:
    assert not has_forbidden_markup(b"<xml><Content><![CDATA[<!-- hi -->]]></Content></xml>")


@pytest.mark.parametrize(
    "text", ["a]]>b", "]]>", "x]]>]]>y", "nul\x00bell\x07", "lone\ud800surrogate", "\ufffe\uffff", "ok 中文 😀"]
)
def test_xml_safe_text_survives_a_cdata_round_trip(text: str) -> None:
    document = f"<xml><Content><![CDATA[{xml_safe_text(text)}]]></Content></xml>"
    parsed = xml.dom.minidom.parseString(document.encode("utf-8", "surrogatepass"))
    content = "".join(node.data for node in parsed.getElementsByTagName("Content")[0].childNodes)
    expected = "".join(
        c for c in text if c in "\t\n\r" or (" " <= c <= "\ud7ff") or ("\ue000" <= c <= "\ufffd") or c > "\uffff"
    )
    assert content == expected


def test_mask_secret_keeps_only_a_prefix() -> None:
    assert mask_secret("ACCESS_TOKEN_VALUE_1234567890") == "ACCESS..."
    assert mask_secret("") == ""
