"""The invariants every answer of POST /weixin must keep, judged as WeChat would (sandbox.checks)."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from urllib.parse import parse_qsl

from sandbox.checks import examine
from sandbox.delivery import Attempt, Delivery
from sandbox.messages import Account, Message, Push
from tests.conftest import TEST_AES_KEY, TEST_APPID, TEST_TOKEN

ACCOUNT = Account(token=TEST_TOKEN, appid=TEST_APPID, encoding_aes_key=TEST_AES_KEY)
# Text that means internals leaked into an answer.
LEAK_MARKERS = ("Traceback", "Error:", "Exception", 'File "', "internal server error")


def message_seen_by_server(xml: bytes) -> Message | None:
    """The header fields the server reads from `xml` (as the simulator needs them), or None if unparsable."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    fields = []
    for child in root:
        value = child.text or ""
        if child.tag == "MsgType":
            value = value.lower()  # the server dispatches case-insensitively
        fields.append((child.tag, value))
    return Message(kind="fuzzed", fields=tuple(fields))


def violations(
    sent_body: bytes,
    inner_xml: bytes,
    query_string: str,
    status: int,
    reason: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
) -> list[str]:
    """What is wrong with one answer: a 5xx, leaked internals, or a 200 body that is not `success`,
    empty, or a reply that passes the simulator's checks. An empty list means the answer is fine.

    `inner_xml` is the plaintext message inside `sent_body`'s Encrypt (the body itself in plaintext mode)."""
    problems = []
    text = body.decode("utf-8", "replace")
    if status >= 500:
        problems.append(f"HTTP {status}")
    for marker in LEAK_MARKERS:
        if marker in text and status != 200:
            problems.append(f"leaked {marker!r} in a {status} body")
    if status != 200:
        if len(body) > 200:
            problems.append(f"a {status} body of {len(body)} bytes")
        return problems
    if body.strip() in (b"", b"success"):
        return problems
    query = tuple(parse_qsl(query_string, keep_blank_values=True))
    values = dict(query)
    if values.get("encrypt_type", "raw").lower() == "aes":
        # Safe mode carries no plaintext MsgType outside the Encrypt; compatible mode does.
        mode = "compatible" if b"<MsgType>" in sent_body else "safe"
        message = message_seen_by_server(inner_xml)
    else:
        mode = "plain"
        message = message_seen_by_server(sent_body)
    if message is None:
        return [*problems, f"a reply to a message the server should have refused: {text[:200]!r}"]
    push = Push(message, mode, query, sent_body, values.get("timestamp", ""), values.get("nonce", ""))
    attempt = Attempt(1, 0.01, status, reason, tuple(headers), body)
    verdict = examine(push, Delivery((attempt,), 5.0), ACCOUNT)
    problems += [f"{problem.code}: {problem.message}" for problem in verdict.errors]
    return problems
