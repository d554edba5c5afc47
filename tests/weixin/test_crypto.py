"""Message encryption: protocol.md vectors A and B, and every way a bad Encrypt is refused cleanly."""

from __future__ import annotations

import base64
import struct

import pytest

from utils import make_signature
from weixin.crypto import (
    AppIdMismatch,
    DecryptError,
    aes_key_from_encoding_key,
    decrypt_message,
    encrypt_message,
    encrypted_reply,
)

KEY = aes_key_from_encoding_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")

VECTOR_A_ENCRYPT = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2Ld"
    "JF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5"
    "VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgC"
    "SUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9Gh"
    "glF2PE="
)
VECTOR_A_PLAIN = (
    b"<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n"
    b"<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n"
    b"<CreateTime>1409735668</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n"
    b"<Content><![CDATA[abcdteT]]></Content>\n<MsgId>6054768590064713728</MsgId>\n</xml>"
)

VECTOR_B_APPID = "wxb11529c136998cb6"
VECTOR_B_REPLY = (
    "<xml><ToUserName><![CDATA[oia2Tj我是中文jewbmiOUlr6X-1crbLOvLw]]></ToUserName><FromUserName><![CDATA[gh_7f083739789a]]>"
    "</FromUserName><CreateTime>1407743423</CreateTime><MsgType><![CDATA[video]]></MsgType><Video><MediaId><![CDATA["
    "eYJ1MbwPRJtOvIEabaxHs7TX2D-HV71s79GUxqdUkjm6Gs2Ed1KF3ulAOA9H1xG0]]></MediaId><Title><![CDATA[testCallBackReplyVideo]]>"
    "</Title><Description><![CDATA[testCallBackReplyVideo]]></Description></Video></xml>"
)
VECTOR_B_ENCRYPT2 = (
    "jn1L23DB+6ELqJ+6bruv23M2GmYfkv0xBh2h+XTBOKVKcgDFHle6gqcZ1cZrk3e1qjPQ1F4RsLWzQRG9udbKWesxlkupqcEcW7ZQweImX9+wLMa0"
    "GaUzpkycA8+IamDBxn5loLgZpnS7fVAbExOkK5DYHBmv5tptA9tklE/fTIILHR8HLXa5nQvFb3tYPKAlHF3rtTeayNf0QuM+UW/wM9enGIDIJHF7CL"
    "HiDNAYxr+r+OrJCmPQyTy8cVWlu9iSvOHPT/77bZqJucQHQ04sq7KZI27OcqpQNSto2OdHCoTccjggX5Z9Mma0nMJBU+jLKJ38YB1fBIz+vBzsYjrT"
    "mFQ44YfeEuZ+xRTQwr92vhA9OxchWVINGC50qE/6lmkwWTwGX9wtQpsJKhP+oS7rvTY8+VdzETdfakjkwQ5/Xka042OlUb1/slTwo4RscuQ+RdxSGv"
    "DahxAJ6+EAjLt9d8igHngxIbf6YyqqROxuxqIeIch3CssH/LqRs+iAcILvApYZckqmA7FNERspKA5f8GoJ9sv8xmGvZ9Yrf57cExWtnX8aCMMaBrop"
    "U/1k+hKP5LVdzbWCG0hGwx/dQudYR/eXp3P0XxjlFiy+9DMlaFExWUZQDajPkdPrEeOwofJb"
)


def test_aes_key_of_the_official_sample() -> None:
    assert KEY.hex() == "69b71d79f8218a39259a7a29aabb2dbafc31cb3d35db7e39ebbf3d0010831051"


def test_vector_a_decrypts_to_the_official_plaintext() -> None:
    assert decrypt_message(VECTOR_A_ENCRYPT, KEY, "wx2c2769f8efd9abc2") == VECTOR_A_PLAIN


def test_vector_a_re_encrypts_exactly_with_its_random_prefix() -> None:
    assert encrypt_message(VECTOR_A_PLAIN, KEY, "wx2c2769f8efd9abc2", b"89465c840c5f116f") == VECTOR_A_ENCRYPT


def test_vector_b_short_chinese_text_encrypts_exactly() -> None:
    expected = "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
    assert encrypt_message("我是中文abcd123", KEY, VECTOR_B_APPID, b"aaaabbbbccccdddd") == expected


def test_vector_b_reply_encrypts_exactly_and_decrypts_back() -> None:
    assert encrypt_message(VECTOR_B_REPLY, KEY, VECTOR_B_APPID, b"aaaabbbbccccdddd") == VECTOR_B_ENCRYPT2
    assert decrypt_message(VECTOR_B_ENCRYPT2, KEY, VECTOR_B_APPID).decode() == VECTOR_B_REPLY


def test_vector_b_derived_msg_signature() -> None:
    encrypt = "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
    assert make_signature("pamtest", "1409304348", "xxxxxx", encrypt) == "82c962d39941aa48552f90ef55aa323dc620cc10"


def test_message_for_another_appid_is_refused() -> None:
    with pytest.raises(AppIdMismatch):
        decrypt_message(VECTOR_A_ENCRYPT, KEY, "wx0000000000000000")


def _encrypt_raw(plain: bytes) -> str:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    encryptor = Cipher(algorithms.AES(KEY), modes.CBC(KEY[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


@pytest.mark.parametrize(
    "encrypt",
    [
        "not base64 at all!!",
        "",
        base64.b64encode(b"short").decode(),
        base64.b64encode(b"x" * 17).decode(),  # not a whole number of blocks
        _encrypt_raw(b"\x00" * 32),  # padding byte 0
        _encrypt_raw(b"A" * 31 + b"\x21"),  # padding byte 33 > 32
        _encrypt_raw(b"A" * 30 + b"\x01\x02"),  # inconsistent padding
        _encrypt_raw(b"0123456789abcdef" + struct.pack(">I", 10**6) + b"x" * 11 + b"\x01"),  # length beyond data
        VECTOR_A_ENCRYPT[:-8] + "AAAAAAA=",  # tampered last block
    ],
)
def test_corrupt_encrypt_raises_decrypt_error_only(encrypt: str) -> None:
    with pytest.raises(DecryptError):
        decrypt_message(encrypt, KEY, "wx2c2769f8efd9abc2")


@pytest.mark.parametrize("key", ["short", "a" * 44, ""])
def test_encoding_key_must_be_43_characters(key: str) -> None:
    with pytest.raises(ValueError):
        aes_key_from_encoding_key(key)


def test_encrypted_reply_envelope_verifies_and_decrypts() -> None:
    import xmltodict

    envelope = xmltodict.parse(encrypted_reply("<xml>你好</xml>", KEY, "wxappid", "tok123", "1409735669", "42"))["xml"]
    assert envelope["TimeStamp"] == "1409735669" and envelope["Nonce"] == "42"
    assert envelope["MsgSignature"] == make_signature("tok123", "1409735669", "42", envelope["Encrypt"])
    assert decrypt_message(envelope["Encrypt"], KEY, "wxappid").decode() == "<xml>你好</xml>"
