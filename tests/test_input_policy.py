"""Issue 13, items 4, 5 and 11: what /weixin accepts as input, under real uWSGI on loopback.

- Only UTF-8 bodies starting with `<xml>` (after blanks and an optional UTF-8 declaration) are parsed, in
  the outer body and in the decrypted inner XML; other encodings and NUL bytes are 400, never a traceback.
- GET echoes only an echostr of ASCII letters and digits (at most 128); every /weixin answer says nosniff.
- A negative or malformed Content-Length is 400 without the stream being read.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests

from tests.conftest import TEST_AES_KEY, TEST_APPID, TEST_TOKEN
from tests.wechat_requests import FIXTURES, deliver, fixture, post, signed_query, with_fresh_ids

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
    """Handle.POST without the direct route (index.app.wsgifunc()) sets the same header."""
    script = textwrap.dedent(
        """
        import io
        import index
        from tests.wechat_requests import fixture, signed_query, with_fresh_ids
        from urllib.parse import urlencode

        body = with_fresh_ids(fixture("messages/text.xml"))
        for name, application in (("web.py", index.app.wsgifunc()), ("direct", index.application)):
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


