"""Message encryption for compatible and safe mode (AES-256-CBC, PKCS#7 to 32 bytes), as pure functions.

Every failure is a `DecryptError` (or its subclass `AppIdMismatch`) with a short reason, never a raw
binascii/struct/Unicode error: the caller maps it to an HTTP answer without leaking internals.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from utils import make_signature, xml_safe_text

BLOCK_SIZE = 32


class DecryptError(ValueError):
    """The `Encrypt` value is not something our key and AppID produced."""


class AppIdMismatch(DecryptError):
    """It decrypted, but for another AppID: a message for another account, or a forgery."""


@functools.lru_cache(maxsize=8)
def aes_key_from_encoding_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key behind the 43-character EncodingAESKey (lenient base64, as WeChat's own code)."""
    if len(encoding_aes_key) != 43:
        raise ValueError("EncodingAESKey must be 43 characters")
    key = base64.b64decode(encoding_aes_key + "=")
    if len(key) != 32:
        raise ValueError("EncodingAESKey does not decode to 32 bytes")
    return key


@functools.lru_cache(maxsize=8)
def _cipher(key: bytes) -> Cipher:
    # The IV is the key's first 16 bytes, so one Cipher serves every message (each call of .encryptor()
    # or .decryptor() starts a fresh context), and no message pays for building one.
    return Cipher(algorithms.AES(key), modes.CBC(key[:16]))


def _pad(data: bytes) -> bytes:
    amount = BLOCK_SIZE - len(data) % BLOCK_SIZE
    return data + bytes([amount]) * amount


def encrypt_message(xml: str | bytes, key: bytes, appid: str, random_prefix: bytes | None = None) -> str:
    """The base64 `Encrypt` value for `xml`: random(16) | length(4, big-endian) | xml | appid."""
    body = xml.encode("utf-8") if isinstance(xml, str) else xml
    if random_prefix is None:
        random_prefix = os.urandom(16)
    plain = random_prefix + struct.pack(">I", len(body)) + body + appid.encode("utf-8")
    encryptor = _cipher(key).encryptor()
    return base64.b64encode(encryptor.update(_pad(plain)) + encryptor.finalize()).decode("ascii")


def decrypt_message(encrypt: str | bytes, key: bytes, expected_appid: str) -> bytes:
    """The XML bytes inside an `Encrypt` value; checks padding, length and the AppID."""
    try:
        cipher_text = base64.b64decode(encrypt, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptError("Encrypt is not valid base64") from None
    if not cipher_text or len(cipher_text) % 16:
        raise DecryptError("Encrypt is not a whole number of AES blocks")
    decryptor = _cipher(key).decryptor()
    plain = decryptor.update(cipher_text) + decryptor.finalize()
    amount = plain[-1]
    if not 1 <= amount <= BLOCK_SIZE or plain[-amount:] != bytes([amount]) * amount:
        raise DecryptError("bad padding (wrong EncodingAESKey?)")
    plain = plain[:-amount]
    if len(plain) < 20:
        raise DecryptError("decrypted data too short")
    (length,) = struct.unpack(">I", plain[16:20])
    if 20 + length > len(plain):
        raise DecryptError("length prefix longer than the data")
    xml = plain[20 : 20 + length]
    appid = plain[20 + length :]
    if appid != expected_appid.encode("utf-8"):
        raise AppIdMismatch("the message was encrypted for another AppID")
    return xml


def encrypted_reply(xml: str, key: bytes, appid: str, token: str, timestamp: str, nonce: str) -> str:
    """The safe-mode reply envelope whose MsgSignature covers its own TimeStamp, Nonce and Encrypt."""
    encrypt = encrypt_message(xml, key, appid)
    signature = make_signature(token, timestamp, nonce, encrypt)
    return (
        f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt>"
        f"<MsgSignature><![CDATA[{signature}]]></MsgSignature>"
        f"<TimeStamp>{int(timestamp)}</TimeStamp>"
        f"<Nonce><![CDATA[{xml_safe_text(nonce)}]]></Nonce></xml>"
    )
