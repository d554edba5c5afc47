"""Signatures and message encryption as WeChat's servers compute them (protocol.md §1, §4).

Written on its own, with `cryptography`, so that the simulator does not share a bug with the message
server's crypto module: both sides must agree with the protocol, not with each other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

PAD_BLOCK = 32  # WeChat pads to 32 bytes although AES blocks are 16


class CryptoError(ValueError):
    """Ciphertext or key that does not follow the protocol; the message says which rule broke."""


def sha1_of_sorted(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def signature(token: str, timestamp: str, nonce: str) -> str:
    """The `signature` query parameter of every push and of the GET handshake."""
    return sha1_of_sorted(token, timestamp, nonce)


def message_signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """`msg_signature` (request) or `MsgSignature` (reply envelope) over the Encrypt value."""
    return sha1_of_sorted(token, timestamp, nonce, encrypt)


def aes_key_bytes(encoding_aes_key: str) -> bytes:
    if len(encoding_aes_key) != 43:
        raise CryptoError(f"EncodingAESKey must be 43 characters, got {len(encoding_aes_key)}")
    try:
        key = base64.b64decode(encoding_aes_key + "=")
    except binascii.Error as error:
        raise CryptoError(f"EncodingAESKey is not base64: {error}") from None
    if len(key) != 32:
        raise CryptoError(f"EncodingAESKey decodes to {len(key)} bytes, not 32")
    return key


def _cipher(key: bytes) -> Cipher:
    return Cipher(algorithms.AES(key), modes.CBC(key[:16]))


def encrypt(encoding_aes_key: str, xml: str | bytes, appid: str, random_prefix: bytes | None = None) -> str:
    """The base64 `Encrypt` value for `xml`: random16 | len | xml | appid, PKCS#7 to 32, AES-256-CBC."""
    key = aes_key_bytes(encoding_aes_key)
    body = xml.encode("utf-8") if isinstance(xml, str) else xml
    prefix = random_prefix if random_prefix is not None else os.urandom(16)
    if len(prefix) != 16:
        raise CryptoError("the random prefix must be 16 bytes")
    plain = prefix + struct.pack(">I", len(body)) + body + appid.encode("utf-8")
    pad = PAD_BLOCK - len(plain) % PAD_BLOCK
    plain += bytes([pad]) * pad
    encryptor = _cipher(key).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode("ascii")


def decrypt(encoding_aes_key: str, encrypted: str) -> tuple[bytes, str]:
    """(xml bytes, receiveid) from an `Encrypt` value; CryptoError names the broken rule."""
    key = aes_key_bytes(encoding_aes_key)
    try:
        data = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError("Encrypt is not valid base64") from None
    if not data or len(data) % 16:
        raise CryptoError(f"Encrypt decodes to {len(data)} bytes, not a non-empty multiple of 16")
    decryptor = _cipher(key).decryptor()
    plain = decryptor.update(data) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= PAD_BLOCK or plain[-pad:] != bytes([pad]) * pad:
        raise CryptoError("bad PKCS#7 padding after decryption (wrong EncodingAESKey?)")
    plain = plain[:-pad]
    if len(plain) < 20:
        raise CryptoError("decrypted data is too short to hold the 16-byte prefix and the length")
    (length,) = struct.unpack(">I", plain[16:20])
    if 20 + length > len(plain):
        raise CryptoError(f"the length field says {length} bytes but only {len(plain) - 20} follow")
    xml = plain[20 : 20 + length]
    try:
        receiveid = plain[20 + length :].decode("utf-8")
    except UnicodeDecodeError:
        raise CryptoError("the AppID after the message is not UTF-8") from None
    return xml, receiveid
