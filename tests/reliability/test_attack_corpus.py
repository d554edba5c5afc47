"""The attacks of issue 9 that had no fixture file of their own, each a fixture (tests/fixtures/attacks)
and a test named after it; and every hostile body also inside a validly encrypted safe-mode push."""

from __future__ import annotations

import gzip
import json
import socket
import time
from urllib.parse import urlencode

import pytest
import redis
import requests

import handle
from tests.conftest import TEST_AES_KEY, TEST_APPID, TEST_TOKEN
from tests.wechat_requests import FIXTURES, deliver, fixture, post, prepare, reply_fields, signed_query, with_fresh_ids
from utils import make_signature

LEAK_MARKERS = ("Traceback", "Error:", "Exception", 'File "', "internal server error")
# Hostile or malformed bodies the server must refuse with 400 wherever they appear.
REFUSED_BODIES = [
    "billion_laughs.xml", "quadratic_blowup.xml", "xxe_file.xml", "xxe_network.xml", "external_dtd.xml",
    "parameter_entities.xml", "lowercase_doctype.xml", "not_xml.json", "missing_msgtype.xml", "wrong_root.xml",
    "empty_root.xml", "unclosed_tag.xml", "invalid_utf8.xml", "control_characters.xml", "duplicated_tags.xml",
]  # deep_nesting.xml is 63 KB: encrypted it is over the 64 KB limit (413); the 100,000-deep test covers it


def attack(name: str) -> bytes:
    data = (FIXTURES / "attacks" / name).read_bytes()
    return gzip.decompress(data) if name.endswith(".gz") else data


def assert_refused(response: requests.Response, status: int, reason: str | None = None) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert len(response.text) < 200
    for marker in LEAK_MARKERS:
        assert marker not in response.text
    if reason is not None:
        assert response.text == reason


def send(url: str, body: bytes, mode: str = "plain", query: dict[str, str] | None = None) -> requests.Response:
    return post(url, body, TEST_TOKEN, mode, TEST_AES_KEY, TEST_APPID, query=query, timeout=30)


def still_answers(url: str) -> None:
    response = send(url, with_fresh_ids(fixture("messages/text.xml")))
    assert response.status_code == 200 and reply_fields(response.text)["MsgType"] == "news"


@pytest.fixture()
def weixin(counting_app) -> str:
    return counting_app.url + "/weixin"


def test_ten_megabyte_body_is_413_and_the_server_keeps_answering(weixin: str) -> None:
    body = attack("ten_megabyte_body.xml.gz")
    assert len(body) > 10 * 1024 * 1024
    assert_refused(send(weixin, body), 413, "body too large")
    still_answers(weixin)


def test_hundred_thousand_deep_nesting_is_413_under_the_default_body_limit(weixin: str) -> None:
    assert_refused(send(weixin, attack("deep_nesting_100000.xml.gz")), 413, "body too large")


def test_hundred_thousand_deep_nesting_is_400_when_the_body_limit_lets_it_in(start_app, counting_replies) -> None:
    app = start_app(REPLIES_FILE=str(counting_replies), MAX_BODY_BYTES=str(2 * 1024 * 1024))
    weixin = app.url + "/weixin"
    for mode in ("plain", "safe"):
        assert_refused(send(weixin, attack("deep_nesting_100000.xml.gz"), mode), 400)
    still_answers(weixin)
    assert "RecursionError" not in app.process.log_text()


def test_hundred_thousand_deep_nesting_is_refused_by_the_parser_without_recursion() -> None:
    with pytest.raises(handle.Rejected) as refused:
        handle.parse_xml(attack("deep_nesting_100000.xml.gz"))
    assert refused.value.status.startswith("400")


@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_replayed_query_string_with_another_body_is_403_and_runs_no_handler(
    weixin: str, redis_client: redis.Redis, mode: str
) -> None:
    query, body = prepare(with_fresh_ids(fixture("messages/text.xml")), TEST_TOKEN, mode, TEST_AES_KEY, TEST_APPID)
    assert deliver(weixin, query, body).status_code == 200
    # The attacker saw the query string (in a log, say) and sends it with a body of their own.
    other_query, other_body = prepare(
        with_fresh_ids(attack("replayed_query_other_body.xml")), TEST_TOKEN, mode, TEST_AES_KEY, TEST_APPID
    )
    replayed = {**query, **{key: value for key, value in other_query.items() if key not in query}}
    assert_refused(deliver(weixin, replayed, other_body), 403)
    assert redis_client.get("test:handler-runs:count-me") is None


def test_signature_from_another_token_is_403(weixin: str) -> None:
    captured = json.loads(attack("signature_from_another_token.json"))
    body = fixture(captured["body_fixture"])
    assert_refused(deliver(weixin, captured["query"], body), 403, "invalid signature")
    # The same token with a fresh timestamp: still the signature that refuses it.
    fresh = signed_query(captured["token_used"])
    assert_refused(deliver(weixin, fresh, body), 403, "invalid signature")


def test_encrypt_for_another_appid_is_403(weixin: str) -> None:
    body = attack("encrypt_for_another_appid.xml")
    encrypt = body.split(b"<Encrypt><![CDATA[")[1].split(b"]]>")[0].decode()
    query = signed_query(TEST_TOKEN)
    signature = make_signature(TEST_TOKEN, query["timestamp"], query["nonce"], encrypt)
    query.update(encrypt_type="aes", msg_signature=signature)
    assert_refused(deliver(weixin, query, body), 403, "message is for another AppID")


@pytest.mark.parametrize("name", REFUSED_BODIES)
def test_attack_inside_a_valid_encrypt_is_400(weixin: str, name: str) -> None:
    assert_refused(send(weixin, attack(name), "safe"), 400)


@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_xxe_network_makes_no_connection(weixin: str, mode: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        body = attack("xxe_network.xml").replace(b"127.0.0.1:9", f"127.0.0.1:{port}".encode())
        assert_refused(send(weixin, body, mode), 400)
        with pytest.raises(TimeoutError):
            listener.accept()


def test_xxe_file_never_shows_the_file(weixin: str) -> None:
    for mode in ("plain", "safe"):
        response = send(weixin, attack("xxe_file.xml"), mode)
        assert_refused(response, 400)
        assert "root:" not in response.text


def test_attacks_over_a_raw_connection_leave_the_server_answering(weixin: str) -> None:
    """A body that stops short of its Content-Length, then one sent in pieces: no hang, no crash."""
    port = int(weixin.split(":")[2].split("/")[0])
    query = urlencode(signed_query(TEST_TOKEN))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            f"POST /weixin?{query} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n<xml><Content>".encode()
        )
        connection.shutdown(socket.SHUT_WR)
        started = time.monotonic()
        answer = connection.recv(4096)
        assert time.monotonic() - started < 8
        assert not answer or not answer.startswith(b"HTTP/1.1 5")
    still_answers(weixin)
