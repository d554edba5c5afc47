"""Issue 13, items 4, 5 and 11: what /weixin accepts as input, under real uWSGI on loopback.

- Only UTF-8 bodies starting with `<xml>` (after blanks and an optional UTF-8 declaration) are parsed, in
  the outer body and in the decrypted inner XML; other encodings and NUL bytes are 400, never a traceback.
- GET echoes only an echostr of ASCII letters and digits (at most 128); every /weixin answer says nosniff.
- A negative or malformed Content-Length is 400 without the stream being read.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

import handle
import utils
from devstack.processes import NginxServer, UwsgiServer
from tests.conftest import TEST_AES_KEY, TEST_APPID, TEST_TOKEN
from tests.wechat_requests import FIXTURES, deliver, fixture, post, prepare, reply_fields, signed_query, with_fresh_ids

ROOT = Path(__file__).resolve().parent.parent
REPLIES = FIXTURES / "replies" / "url_placeholders.yaml"
# Bodies in another encoding (or with a NUL byte): each is 400 in plaintext and inside a valid Encrypt.
OTHER_ENCODINGS = [
    "utf16_internal_entity.xml", "utf16le_without_bom.xml", "declared_utf16le.xml", "declared_latin1.xml",
    "utf8_bom.xml", "nul_byte.xml",
]
BAD_CONTENT_LENGTHS = ["-5", "-1", "+10", "1_0", "0x10", "abc", "1e3", "10 10"]


@pytest.fixture(scope="module")
def app(start_app):
    return start_app(REPLIES_FILE=str(REPLIES))


@pytest.fixture()
def weixin(app) -> str:
    return app.url + "/weixin"


def send(url: str, body: bytes, mode: str = "plain") -> requests.Response:
    return post(url, body, TEST_TOKEN, mode, TEST_AES_KEY, TEST_APPID)


def assert_refused(response: requests.Response, status: int = 400) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert len(response.text) < 200 and "Traceback" not in response.text
    assert response.headers.get("X-Content-Type-Options") == "nosniff"


def assert_no_traceback(app) -> None:
    log = app.process.log_text()
    assert "Traceback" not in log, log[-3000:]


def text_message(content: str) -> bytes:
    return with_fresh_ids(fixture("messages/text.xml").replace("微博".encode(), content.encode()))


# --- item 4: bodies in another encoding --------------------------------------------------------------


@pytest.mark.parametrize("mode", ["plain", "safe"])
@pytest.mark.parametrize("name", OTHER_ENCODINGS)
def test_a_body_in_another_encoding_is_400_without_a_traceback(weixin: str, app, name: str, mode: str) -> None:
    response = send(weixin, fixture(f"attacks/{name}"), mode)
    assert_refused(response)
    assert "ENTITY-EXPANDED" not in response.text
    assert_no_traceback(app)


def test_the_utf16_entity_is_never_expanded_into_a_reply(weixin: str) -> None:
    body = fixture("attacks/utf16_internal_entity.xml")
    assert b"<!DOCTYPE" not in body  # UTF-16 hides the ASCII markup the old check looked for
    for mode in ("plain", "safe", "compatible"):
        response = send(weixin, body, mode)
        assert_refused(response)
        assert "ENTITY-EXPANDED" not in response.text


def test_a_utf8_declaration_and_blanks_before_the_root_are_accepted(weixin: str) -> None:
    for prolog in (b'<?xml version="1.0" encoding="utf-8"?>\n', b"<?xml version='1.0' encoding='UTF-8'?>",
                   b'<?xml version="1.0"?>\r\n', b" \r\n\t"):
        for mode in ("plain", "safe"):
            response = send(weixin, prolog + text_message("ping"), mode)
            assert response.status_code == 200, (prolog, mode, response.text)


def test_a_plain_message_still_gets_its_reply(weixin: str) -> None:
    response = send(weixin, text_message("ping"))
    assert response.status_code == 200 and reply_fields(response.text)["Content"] == "pong"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "body",
    [
        b"",  # empty
        b"\xff\xfe<\x00x\x00m\x00l\x00>\x00",  # UTF-16 with a BOM
        b"\xef\xbb\xbf<xml><a>1</a></xml>",  # UTF-8 BOM: WeChat never sends one
        b"<xml\x00><a>1</a></xml>",
        b"<xml><a>1</a></xml>\x00",
        b"<message><a>1</a></message>",
        b"<xmlx><a>1</a></xmlx>",
        b"<!-- hi --><xml><a>1</a></xml>",
        b'<?xml version="1.0" encoding="utf-16"?><xml><a>1</a></xml>',
        b'<?xml version="1.0" encoding="utf-16-le"?><xml><a>1</a></xml>',
        b'<?xml version="1.0" encoding="latin-1"?><xml><a>1</a></xml>',
        b'<?xml version="1.0" encoding="utf-8"?><!DOCTYPE xml []><xml><a>1</a></xml>',
        b'<?xml version="1.1" encoding="utf-8"?><xml><a>1</a></xml>',
        b'<?xml version="1.0" encoding="utf-8"?><?xml version="1.0"?><xml><a>1</a></xml>',
        b"<?xml-stylesheet href='x'?><xml><a>1</a></xml>",
    ],
)
def test_parse_xml_refuses_everything_but_utf8_starting_with_xml(body: bytes) -> None:
    with pytest.raises(handle.Rejected) as refused:
        handle.parse_xml(body)
    assert refused.value.status.startswith("400")
    assert len(refused.value.reason) < 80


@pytest.mark.parametrize(
    "body",
    [
        b"<xml><a>1</a></xml>",
        b"\r\n <xml><a>1</a></xml>",
        b'<?xml version="1.0" encoding="utf-8"?><xml><a>1</a></xml>',
        b"<?xml version='1.0' encoding='UTF-8' ?>\n<xml><a>1</a></xml>",
        b'<?xml version="1.0"?>\n<xml><a>1</a></xml>',
        b'<?xml version="1.0" encoding="utf-8" standalone="yes"?><xml><a>1</a></xml>',
    ],
)
def test_parse_xml_accepts_utf8_starting_with_xml(body: bytes) -> None:
    assert handle.parse_xml(body) == {"a": "1"}


def test_the_check_is_a_prefix_check_that_never_looks_at_the_whole_body() -> None:
    assert utils.xml_policy_problem(b"<xml>" + b"x" * 1_000_000) is None
    assert utils.xml_policy_problem(b"\x00<xml>") is not None


# --- item 5: echostr and nosniff ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "echostr",
    [
        "<script>alert(document.domain)</script>",
        "1234<b>",
        "a" * 129,
        "١٢٣٤",  # Arabic-Indic digits: str.isdigit() says yes, WeChat never sends them
        "12 34",
        "12-34",
        "",
    ],
)
def test_get_with_an_echostr_that_is_not_letters_and_digits_is_400(weixin: str, echostr: str) -> None:
    response = requests.get(weixin, params=signed_query(TEST_TOKEN, echostr=echostr), timeout=5)
    assert_refused(response)
    assert "<" not in response.text


@pytest.mark.parametrize("echostr", ["4375120948345356249", "a" * 128, "AbC123xyz"])
def test_get_echoes_letters_and_digits_up_to_128_with_nosniff(weixin: str, echostr: str) -> None:
    response = requests.get(weixin, params=signed_query(TEST_TOKEN, echostr=echostr), timeout=5)
    assert response.status_code == 200 and response.text == echostr
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_every_weixin_answer_says_nosniff(weixin: str) -> None:
    now_signed = signed_query(TEST_TOKEN)
    answers = {
        "status page": requests.get(weixin, timeout=5),
        "GET bad signature": requests.get(weixin, params={**now_signed, "signature": "0" * 40}, timeout=5),
        "GET missing echostr": requests.get(weixin, params=signed_query(TEST_TOKEN), timeout=5),
        "POST reply": send(weixin, text_message("ping")),
        "POST success": send(weixin, with_fresh_ids(fixture("events/templatesendjobfinish.xml"))),
        "POST 400": send(weixin, b"<message/>"),
        "POST 403": deliver(weixin, {**now_signed, "signature": "0" * 40}, text_message("ping")),
        "POST 413": send(weixin, b"<xml>" + b"a" * 70_000 + b"</xml>"),
        "PUT": requests.put(weixin, data=b"x", timeout=5),
        "HEAD": requests.head(weixin, timeout=5),
    }
    for name, response in answers.items():
        assert response.headers.get("X-Content-Type-Options") == "nosniff", (name, response.status_code)
    assert answers["POST success"].status_code == 200 and answers["POST success"].text == "success"


def test_web_py_view_alone_says_nosniff_too(redis_server) -> None:
    """Handle.POST without the direct route (index.web_py_app.wsgifunc()) sets the same header."""
    script = textwrap.dedent(
        """
        import io
        import index
        from tests.wechat_requests import fixture, signed_query, with_fresh_ids
        from urllib.parse import urlencode

        body = with_fresh_ids(fixture("messages/text.xml"))
        for name, application in (("web.py", index.web_py_app.wsgifunc()), ("direct", index.application)):
            for method in ("GET", "POST"):
                environ = {"REQUEST_METHOD": method, "PATH_INFO": "/weixin", "SERVER_NAME": "t",
                           "QUERY_STRING": urlencode(signed_query("routetoken", echostr="12")),
                           "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
                           "SERVER_PORT": "80", "wsgi.url_scheme": "http", "SCRIPT_NAME": ""}
                seen = {}
                b"".join(application(environ, lambda status, headers: seen.update(status=status, headers=headers)))
                print(name, method, seen["status"], [value for key, value in seen["headers"]
                                                     if key.lower() == "x-content-type-options"])
        """
    )
    env = {**os.environ, "WECHAT_TOKEN": "routetoken", "REDIS_URL": redis_server.url, "DOTENV_FILE": "/dev/null"}
    env.pop("WECHAT_ENCODING_AES_KEY", None)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    for name in ("web.py", "direct"):
        for method in ("GET", "POST"):
            assert f"{name} {method} 200 OK ['nosniff']" in result.stdout, result.stdout


# --- item 11: Content-Length -------------------------------------------------------------------------


class RecordingStream:
    """A wsgi.input that records every read (a unit test of read_body/drain_body, pure functions)."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)
        self.reads: list[Any] = []

    def read(self, size: int = -1) -> bytes:
        self.reads.append(size)
        return self.data.read(size)


def environ_with(content_length: str, body: bytes = b"<xml><a>1</a></xml>") -> dict[str, Any]:
    return {"CONTENT_LENGTH": content_length, "wsgi.input": RecordingStream(body)}


@pytest.mark.parametrize("content_length", [*BAD_CONTENT_LENGTHS, " 12", "١٢", "²"])
def test_a_bad_content_length_is_400_and_neither_read_nor_drained(content_length: str) -> None:
    environ = environ_with(content_length)
    with pytest.raises(handle.Rejected) as refused:
        handle.read_body(environ, 65536)
    assert refused.value.status.startswith("400") and refused.value.reason == "invalid Content-Length"
    handle.drain_body(environ)
    assert environ["wsgi.input"].reads == []


def test_a_valid_content_length_still_reads_exactly_that_many_bytes() -> None:
    environ = environ_with("19")
    assert handle.read_body(environ, 65536) == b"<xml><a>1</a></xml>"
    assert environ["wsgi.input"].reads == [19]


def raw_post(port: int, content_length: str, body: bytes, timeout: float = 10) -> bytes:
    """A POST over a raw socket; the connection stays open for writing, so a server that waits for the
    body it was promised would not answer until its own timeout."""
    query = urlencode(signed_query(TEST_TOKEN))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(
            f"POST /weixin?{query} HTTP/1.1\r\nHost: x\r\nContent-Length: {content_length}\r\n"
            "Connection: close\r\n\r\n".encode() + body
        )
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        return answer


@pytest.mark.parametrize("content_length", BAD_CONTENT_LENGTHS)
def test_a_bad_content_length_over_a_raw_socket_is_400_from_the_app(app, content_length: str) -> None:
    answer = raw_post(app.port, content_length, text_message("ping"))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:300]
    assert body == b"invalid Content-Length"
    assert b"X-Content-Type-Options: nosniff" in head
    assert_no_traceback(app)
    # The server keeps answering.
    assert send(app.url + "/weixin", text_message("ping")).status_code == 200


@pytest.fixture(scope="module")
def behind_nginx(tmp_path_factory: pytest.TempPathFactory, redis_server):
    directory = tmp_path_factory.mktemp("input-nginx")
    env = {"WECHAT_TOKEN": TEST_TOKEN, "WECHAT_APPID": TEST_APPID, "REDIS_URL": redis_server.url,
           "DOTENV_FILE": "/dev/null", "REPLIES_FILE": str(REPLIES)}
    uwsgi = UwsgiServer(directory / "uwsgi", env, workers=1).start()
    try:
        nginx = NginxServer(directory / "nginx", uwsgi.socket_path).start()
        try:
            yield nginx
        finally:
            nginx.stop()
    finally:
        uwsgi.stop()


def test_a_bad_content_length_through_nginx_is_400(behind_nginx: NginxServer) -> None:
    for content_length in ("-5", "1_0", "abc"):
        answer = raw_post(behind_nginx.http_port, content_length, text_message("ping"))
        assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
    query, body = prepare(text_message("ping"), TEST_TOKEN)
    assert deliver(behind_nginx.url + "/weixin", query, body).status_code == 200
