"""weixin/messages.py: one parse, the raw fields beside wechatpy's object, the reply type of an answer."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from tests.wechat_requests import fixture, parsed_message
from weixin import messages

ROOT = Path(__file__).resolve().parents[2]


def test_parse_keeps_the_fields_wechatpy_was_built_from_and_describes_once() -> None:
    message = parsed_message(fixture("events/subscribe_qrscene.xml"))
    assert messages.describe(message) == ("event", "subscribe_scan")
    assert message.fields["EventKey"] == message.wechat.scene_id == "1001"  # qrscene_ taken off, as wechatpy does
    assert message.sender == message.wechat.source and message.account == message.wechat.target
    assert message.text("ScanCodeInfo") == "" and message.group("Content") == {}


def test_a_type_wechatpy_does_not_know_is_described_from_its_fields() -> None:
    fields = {"ToUserName": "gh_a", "FromUserName": "o_b", "MsgType": "Miniprogrampage", "Title": "t"}
    assert messages.describe(messages.parse(fields)) == ("message", "miniprogrampage")


@pytest.mark.parametrize("missing", messages.REQUIRED_FIELDS)
def test_a_message_without_its_addressing_is_malformed(missing: str) -> None:
    fields = {"ToUserName": "gh_a", "FromUserName": "o_b", "MsgType": "text", "Content": "hi"}
    with pytest.raises(messages.MalformedMessage, match=f"missing {missing}"):
        messages.parse({**fields, missing: ""})


def test_reply_type_reads_the_msgtype_of_a_reply() -> None:
    assert messages.reply_type(None) == "none"
    assert messages.reply_type("<xml><MsgType><![CDATA[news]]></MsgType></xml>") == "news"
    assert messages.reply_type("<xml></xml>") == "?"


def _python_files() -> list[Path]:
    """Every tracked module outside tests/ (a test may look inside anything)."""
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / name for name in listed.stdout.split() if not name.startswith("tests/")]


def test_no_module_reads_wechatpys_private_fields() -> None:
    readers = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in _python_files()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute) and node.attr == "_data"
    ]
    assert readers == []
